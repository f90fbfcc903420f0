"""A job's metrics, taken from its local log copy as it grows (see simtui.metrics for
what counts as a metric) into the store: each point once, whatever re-reads.

The copy is read from where the last line with metrics starts (``Store.metrics_end``):
after a restart of the server that line is parsed again and its points, stored
already (same key, same line), are left as they are.

The stream of the log never waits for them: a take runs beside it, in a thread of
its own with its own connection to the records (parsing and storing are CPU work
that must not hold the event loop), piece by piece (a piece's points are stored
and dropped before the next is read). At the job's end the rest is taken before
its record settles (its notification's plot has every point), unless the log ran
far ahead (a flood: more than AT_ONCE bytes behind): then after (``behind``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from simtui.errors import SimtuiError, UsageError
from simtui.metrics import MetricParser, load_patterns
from simtui.model import JobSpec, Record
from simtui.store.logs import LocalLog
from simtui.store.records import Store

PATTERNS = Path(".simtui") / "metrics"  # in the project the job was asked for from
EVERY = 0.5  # seconds between takes while a job's log grows
AT_ONCE = 4 << 20  # bytes: at a job's end, a rest up to this is taken before its record settles

log = logging.getLogger("simtui.engine")


class MetricsIngest:
    """One job's metrics from its local log copy: ``kick`` while it grows, ``finish``
    at its end."""

    def __init__(self, store: Store, record: Record) -> None:
        self.records, self.label = store.path, record.label
        self.at = store.metrics_end(record.label) or 0
        self.parser = MetricParser(project_patterns(record), offset=self.at)
        self.last = 0.0  # monotonic time of the last take's start
        self._taking: asyncio.Future | None = None

    def kick(self, copy: LocalLog) -> None:
        """Take what the copy got since the last take, in the background, at most every
        EVERY seconds and never two at once."""
        if (self._taking is None or self._taking.done()) and time.monotonic() - self.last >= EVERY:
            self.last = time.monotonic()
            self._taking = asyncio.ensure_future(asyncio.to_thread(self._take, copy, False))
            self._taking.add_done_callback(self._said)

    def behind(self, copy: LocalLog) -> int:
        """Bytes of the copy not taken yet."""
        return max(copy.size() - self.at, 0)

    async def finish(self, copy: LocalLog) -> None:
        """The rest of the copy, its last line too, once the take under way is done."""
        if self._taking is not None:
            with contextlib.suppress(SimtuiError):
                await self._taking
        await asyncio.to_thread(self._take, copy, True)

    def _take(self, copy: LocalLog, final: bool) -> None:
        store = Store.open(self.records)  # this thread's own connection
        try:
            for chunk in copy.chunks(self.at):
                self.at += len(chunk)
                self._store(store, self.parser.feed(chunk))
            if final:
                self._store(store, self.parser.flush())
        finally:
            store.close()

    def _store(self, store: Store, points: list) -> None:
        if points:
            store.add_metrics(self.label, [(p.key, p.step, p.value, p.offset) for p in points], time.time())

    def _said(self, done: asyncio.Future) -> None:
        """A background take that failed (a full disk): said in the server's log; the
        next take goes on from where this one stopped."""
        if not done.cancelled() and done.exception() is not None:
            log.warning("%s: metrics: %s", self.label, done.exception())


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
