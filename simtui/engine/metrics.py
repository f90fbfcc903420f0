"""A job's metrics, taken from its local log copy as it grows (see simtui.metrics for
what counts as a metric) into the store: each point once, whatever re-reads.

The copy is read from where the last line with metrics starts (``Store.metrics_end``):
after a restart of the server that line is parsed again and its points, stored
already (same key, same line), are left as they are. Parsing runs off the event
loop; the store is written on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from simtui.errors import UsageError
from simtui.metrics import MetricParser, Point, load_patterns
from simtui.model import JobSpec, Record
from simtui.store.logs import LocalLog
from simtui.store.records import Store

PATTERNS = Path(".simtui") / "metrics"  # in the project the job was asked for from
EVERY = 0.5  # seconds between takes while a job's log grows

log = logging.getLogger("simtui.engine")


class MetricsIngest:
    """One job's metrics from its local log copy, taken in pieces (``take``)."""

    def __init__(self, store: Store, record: Record) -> None:
        self.store, self.label = store, record.label
        self.at = store.metrics_end(record.label) or 0
        self.parser = MetricParser(project_patterns(record), offset=self.at)
        self.last = 0.0  # monotonic time of the last take

    def due(self) -> bool:
        return time.monotonic() - self.last >= EVERY

    async def take(self, copy: LocalLog, *, final: bool = False) -> None:
        """Parse what the copy got since the last take (with ``final``, its last line
        too) and store the points."""
        self.last = time.monotonic()
        points = await asyncio.to_thread(self._parse, copy, final)
        self.store.add_metrics(self.label, [(p.key, p.step, p.value, p.offset) for p in points], time.time())

    def _parse(self, copy: LocalLog, final: bool) -> list[Point]:
        points: list[Point] = []
        for chunk in copy.chunks(self.at):
            self.at += len(chunk)
            points += self.parser.feed(chunk)
        if final:
            points += self.parser.flush()
        return points


def project_patterns(record: Record) -> list[str]:
    """The patterns of ``.simtui/metrics`` in the project the run was asked for from
    (none when there is no such file, or it cannot be read: said in the server's log)."""
    spec = JobSpec.from_dict(record.spec) if record.spec else None
    root = spec and (spec.project_root or spec.cwd)
    if not root:
        return []
    path = Path(root) / PATTERNS
    try:
        return load_patterns(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, UsageError) as err:
        log.warning("%s: %s: %s; metrics of the usual shapes only", record.label, path, err)
        return []
