"""Records for tests, made through the store's library API (no jobs are launched)."""

from __future__ import annotations

import itertools
from typing import Any

from simtui.model import JobState, Record

T0 = 1_700_000_000.0  # a fixed creation time; each new record is one minute newer
_serial = itertools.count()


def make_record(label: str | None = None, **fields: Any) -> Record:
    """A finished local run; ``fields`` override any attribute."""
    n = next(_serial)
    values: dict[str, Any] = {
        "label": label or f"{n:012x}",
        "host": "local",
        "command": "python train.py",
        "argv": ["python", "train.py"],
        "state": JobState.SUCCEEDED,
        "exit_code": 0,
        "created": T0 + 60 * n,
        "started": T0 + 60 * n + 1,
        "ended": T0 + 60 * n + 11,
        "duration": 10.0,
    }
    return Record(**{**values, **fields})
