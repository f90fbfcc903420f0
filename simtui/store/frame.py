"""Records as flat rows: one dict a record, for a CSV file, a script or a pandas DataFrame.

A flat row mixes a run's metadata, its parameters and what it produced in one place
(Sumatra's "parameters, metadata and output data in a dataframe"): the record's scalar
fields, a few ``git.`` and ``env.`` facts, ``outputs.count``, whether a reproduction
reproduced, one ``params.<dotted.path>`` column a parameter, then one ``metrics.<key>``
column a metric (its last value, as the record keeps it). ``simtui.records()`` returns
such rows (or a DataFrame of them); ``simtui export --format csv`` writes them.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simtui.errors import UsageError
from simtui.model import JobState
from simtui.store.db import default_path
from simtui.store.diff import flatten
from simtui.store.records import Store, parse_since

if TYPE_CHECKING:
    import pandas

# Every flat row has these keys, in this order; the ``params.`` columns follow them,
# then the ``metrics.`` ones.
COLUMNS = (
    "label", "state", "host", "command", "workdir", "project", "exit_code",
    "created", "started", "ended", "duration", "tags",
    "git.commit", "git.branch", "git.dirty", "git.tree_sha256",
    "env.python", "env.hostname", "env.packages_sha256",
    "outputs.count", "peak_rss", "peak_gpu_mem", "repeat_of", "sweep", "reason", "notes", "reproduced",
    "machine.provider", "machine.size", "machine.cost",
)
TIMES = ("created", "started", "ended")
PARAMS = "params."
METRICS = "metrics."
NO_PANDAS = "pandas is not installed (pip install pandas)"

# DataFrame column types where pandas' guess would be worse (ints with a gap become floats)
_DTYPES = {"exit_code": "Int64", "outputs.count": "Int64", "peak_rss": "Int64", "peak_gpu_mem": "Int64",
           "duration": "float64", "git.dirty": "boolean", "reproduced": "boolean", "machine.cost": "float64"}


def iso_time(seconds: float | None) -> str | None:
    """Unix seconds as ISO 8601 in UTC (``2023-11-14T22:13:20+00:00``); None stays None."""
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc).isoformat()


def utc_time(seconds: float | None) -> datetime | None:
    """Unix seconds as a timezone-aware datetime in UTC; None stays None."""
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)


# Each of COLUMNS in SQL over one record, in order, then its parameters and its
# metrics (JSON text).
# JSON fields are picked out by SQLite, so the bulky JSON (a git diff, outputs, the
# environment) is never decoded here; tags stay JSON text, booleans come as 1 or 0.
PICKED = (
    "label", "state", "host", "command", "workdir", "project", "exit_code", "created", "started", "ended",
    "duration", "coalesce(tags, '[]')",
    *(f"json_extract(git, '$.{name}')" for name in ("commit", "branch", "dirty", "tree_sha256")),
    *(f"json_extract(environment, '$.{name}')" for name in ("python", "hostname", "packages_sha256")),
    "coalesce(json_array_length(outputs), 0)", "peak_rss", "peak_gpu_mem", "repeat_of", "sweep", "reason",
    "notes", "json_extract(reproduction, '$.reproduced')",
    *(f"json_extract(machine, '$.{name}')" for name in ("provider", "size", "cost")), "params", "metrics",
)
TIMES_AT = tuple(COLUMNS.index(name) for name in TIMES)
BOOLEANS_AT = (COLUMNS.index("git.dirty"), COLUMNS.index("reproduced"))
TAGS_AT = COLUMNS.index("tags")


def flat_rows(store: Store, when: Callable[[float | None], Any] = iso_time,
              **filters: Any) -> Iterator[tuple[list[Any], dict[str, Any], dict[str, Any]]]:
    """The records ``filters`` select (as for Store.find), newest first, read as
    iterated, each as the values of COLUMNS in order, its parameters by column
    (``params.<dotted.path>``, nested ones as diff.flatten gives them) and the last
    value of each of its metrics by column (``metrics.<key>``). ``when`` turns the
    created, started and ended times (unix seconds) into what the row holds."""
    for *values, params, metrics in store.select(PICKED, **filters):
        for i in TIMES_AT:
            values[i] = when(values[i])
        for i in BOOLEANS_AT:
            values[i] = None if values[i] is None else bool(values[i])
        values[TAGS_AT] = json.loads(values[TAGS_AT])
        yield values, param_values(params), metric_values(metrics)


def param_values(params: str | None) -> dict[str, Any]:
    """Parameters as stored (JSON text) by their flat column, ``params.<dotted.path>``."""
    return {PARAMS + path: value for path, value in flatten(json.loads(params)).items()} if params else {}


def metric_values(metrics: str | None) -> dict[str, float]:
    """The last value of each metric, as stored (JSON text), by its flat column, ``metrics.<key>``."""
    return {METRICS + key: value for key, value in json.loads(metrics).items()} if metrics else {}


# The keys of a record's metrics, as a JSON list, in SQL over one record: records
# that ran the same code print the same metrics, so a few distinct lists stand for
# every record (the last values themselves are all different). Metrics that SQLite
# cannot read (a NaN written by json.dumps) come whole, for Python to read.
METRIC_KEYS = ("case when json_valid(records.metrics) "
               "then (select json_group_array(key) from json_each(records.metrics)) else records.metrics end")
# A record's parameters text and its list of metric keys as one text: "\x01" is no
# part of a JSON text (json.dumps escapes control characters).
_PARAMS_AND_KEYS = f"coalesce(params, '') || char(1) || coalesce({METRIC_KEYS}, '')"


def flat_columns(store: Store, **filters: Any) -> tuple[list[str], list[str]]:
    """The ``params.`` and the ``metrics.`` columns of the records ``filters`` select,
    each in order of first appearance; one pass over the records, each distinct
    parameters text with its list of metric keys read once."""
    params: dict[str, None] = {}
    metrics: dict[str, None] = {}
    for both in store.distinct(_PARAMS_AND_KEYS, **filters):
        text, _, keys = both.partition("\x01")
        params.update(dict.fromkeys(param_values(text)))
        if keys:
            metrics.update((METRICS + key, None) for key in json.loads(keys))  # a list of keys, or the metrics
    return list(params), list(metrics)


def flat_dict(values: list[Any], params: dict[str, Any], metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """A flat row (of flat_rows) as one dict: COLUMNS, then ``params.<path>`` for each
    parameter, then ``metrics.<key>`` for each metric."""
    return {**dict(zip(COLUMNS, values)), **params, **(metrics or {})}


def columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """COLUMNS, then every ``params.`` column of ``rows``, then every ``metrics.`` one,
    each in order of first appearance."""
    params: dict[str, None] = {}
    metrics: dict[str, None] = {}
    for row in rows:
        for name in row:
            if name.startswith(PARAMS):
                params[name] = None
            elif name.startswith(METRICS):
                metrics[name] = None
    return [*COLUMNS, *params, *metrics]


def data_frame(rows: list[dict[str, Any]], pd: Any = None) -> pandas.DataFrame:
    """A DataFrame of flat rows (made with ``when=utc_time``): one row a record, every
    column of ``columns(rows)``; times are datetime64 in UTC, counts and sizes nullable
    Int64, ``git.dirty`` and ``reproduced`` nullable booleans, ``tags`` lists, metrics
    float64 (NaN where a record lacks one)."""
    if pd is None:
        pd = importlib.import_module("pandas")
    data: dict[str, Any] = {}
    for name in columns(rows):
        values = [row.get(name) for row in rows]
        if name in TIMES:
            data[name] = pd.to_datetime(pd.Series(values, dtype=object), utc=True)
        elif name in _DTYPES:
            data[name] = pd.Series(values, dtype=_DTYPES[name])
        elif name.startswith(METRICS):
            data[name] = pd.Series(values, dtype="float64")
        else:
            data[name] = pd.Series(values, dtype=object if name == "tags" or not rows else None)
    return pd.DataFrame(data, columns=list(data))


def records(
    tags: Iterable[str] | str = (),
    state: JobState | str | None = None,
    host: str | None = None,
    search: str | None = None,
    since: float | str | datetime | timedelta | None = None,
    limit: int | None = None,
    *,
    home: str | Path | None = None,
    frame: bool | None = None,
) -> list[dict[str, Any]] | pandas.DataFrame:
    """The records, newest first, each a flat row (see flat_rows), with the filters of
    ``simtui list``: every tag of ``tags``, ``state``, ``host``, full-text ``search``
    (words or "quoted phrases" in command, tags, reason, notes), created ``since`` (unix
    seconds, a datetime, a timedelta ago, or text as ``--since`` takes: ``2d``,
    ``2024-05-01``), at most ``limit`` (None: all).

    ``home`` is a simtui home folder (default ``$SIMTUI_HOME``); its ``records.db`` is only
    read. ``frame``: None gives a pandas DataFrame when pandas can be imported, else a list
    of dicts; True a DataFrame (UsageError without pandas); False the list. In the dicts
    times are ISO 8601 strings in UTC; in the DataFrame timezone-aware datetimes.
    """
    pd = _pandas(frame)
    filters = {"tags": (tags,) if isinstance(tags, str) else tuple(tags), "state": _state(state),
               "host": host, "search": search, "since": _since(since), "limit": _limit(limit)}
    path = _database(home)
    rows: list[dict[str, Any]] = []
    if path is not None:
        when = utc_time if pd is not None else iso_time
        store = Store.open(path)
        try:
            rows = [flat_dict(*flat) for flat in flat_rows(store, when, **filters)]
        finally:
            store.close()
    return rows if pd is None else data_frame(rows, pd)


def _pandas(frame: bool | None) -> Any:
    """pandas when a DataFrame is wanted and to be had, else None."""
    if frame is False:
        return None
    try:
        return importlib.import_module("pandas")
    except ImportError:
        if frame:
            raise UsageError(NO_PANDAS) from None
        return None


def _database(home: str | Path | None) -> Path | None:
    """The records database to read: None when the default one has never been made (no
    records yet; nothing is created); a ``home`` given without one is a mistake."""
    if home is None:
        path = default_path()
        return path if path.is_file() else None
    path = Path(home).expanduser() / "records.db"
    if not path.is_file():
        raise UsageError(f"{path}: no records database there (is {home} a simtui home?)")
    return path


def _state(state: JobState | str | None) -> JobState | None:
    if state is None:
        return None
    try:
        return JobState(state)
    except ValueError:
        choices = ", ".join(s.value for s in JobState)
        raise UsageError(f"state: expected one of {choices}, got {state!r}") from None


def _since(since: float | str | datetime | timedelta | None) -> float | None:
    if since is None or isinstance(since, (int, float)) and not isinstance(since, bool):
        return since
    if isinstance(since, str):
        return parse_since(since)
    if isinstance(since, datetime):
        return since.timestamp()  # a naive one is local time, as --since takes it
    if isinstance(since, timedelta):
        return datetime.now(timezone.utc).timestamp() - since.total_seconds()
    raise UsageError(f"since: expected unix seconds, a datetime, a timedelta or text (2d, 2024-05-01), got {since!r}")


def _limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise UsageError(f"limit: expected a count (0 or more) or None, got {limit!r}")
    return limit
