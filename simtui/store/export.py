"""Records out as JSON (a list of whole records: ``export``, and ``list --json``) or CSV
(one row a record in the flat columns of simtui.store.frame, the same rows
simtui.records() gives), written as they are read: memory stays flat whatever the count. ``open_output`` opens where ``-o``
points: a regular file atomically, a device or a pipe as it is."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import fcntl
import functools
import json
import math
import operator
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from json.encoder import encode_basestring_ascii
from typing import IO, Any, TextIO

from simtui.errors import FileFault, NoSpace, UsageError
from simtui.model import Record
from simtui.store.frame import BOOLEANS_AT, COLUMNS, METRICS, PICKED, TIMES_AT, flat_columns, iso_time, param_values
from simtui.store.records import COLUMNS as RECORD_COLUMNS, JSON_COLUMNS, Store
from simtui.textfmt import json_list, to_json

FORMATS = ("json", "csv")
CHUNK = 1 << 16  # characters (or bytes) gathered before a write: see Chunked

# A record's fields as Record.to_dict() orders them, each as SQL giving its JSON
# text, as json.dumps(..., ensure_ascii=False) writes it: a JSON column's text as it
# is stored (records.json_text), or its default for NULL; json_quote() of any other
# value (SQLite escapes text as Python does), but for floats: SQLite writes 15
# digits where Python writes as many as it takes, so those come as they are.
_FIELDS = dataclasses.fields(Record)
_PREFIXES = [f'"{f.name}": ' for f in _FIELDS]
_FLOATS = [i for i, f in enumerate(_FIELDS) if f.type.startswith("float")]
_ENVIRONMENT = RECORD_COLUMNS.index("environment")


def _as_json(field: dataclasses.Field[Any]) -> str:
    """SQL for the JSON text of a record's field (a float: its value, or 'null')."""
    if field.name in JSON_COLUMNS:
        return f"coalesce({field.name}, '{json.dumps(_default(field))}')"
    if field.type.startswith("float"):
        return f"coalesce({field.name}, 'null')"
    return f"case when {field.name} is null then 'null' else json_quote({field.name}) end"  # faster on NULL


def _default(field: dataclasses.Field[Any]) -> Any:
    """What a record holds for a field whose column is NULL."""
    return None if field.default_factory is dataclasses.MISSING else field.default_factory()


def write_json(store: Store, out: TextIO) -> None:
    """Every record, newest first, as ``json.dumps(record.to_dict(), ensure_ascii=False)``
    writes it (package list included), one a line inside a list. SQLite gives each
    field's JSON text (see above); a package list is encoded once, then copied into
    each record that has it."""
    packages: dict[str, str] = {}
    selected = [*map(_as_json, _FIELDS), "json_extract(environment, '$.packages_sha256')"]
    with Chunked(out) as chunks:
        chunks.write("[")
        start = "\n{"
        for *fields, digest in store.select(selected, limit=None):
            for n in _FLOATS:
                value = fields[n]
                if type(value) is float:  # _number, inline: five a record
                    fields[n] = repr(value) if value - value == 0 else json.dumps(value)
            prefixed = list(map(operator.add, _PREFIXES, fields))
            if digest is None:
                chunks.write(f"{start}{', '.join(prefixed)}}}")
            else:  # the package list written as it is, not copied into the record's text
                if digest not in packages:
                    packages[digest] = json.dumps(store.packages(digest), ensure_ascii=False)
                chunks.write(f"{start}{', '.join(prefixed[:_ENVIRONMENT + 1])[:-1]}, \"packages\": ")
                chunks.write(packages[digest])
                chunks.write(f"}}, {', '.join(prefixed[_ENVIRONMENT + 1:])}}}")  # environment is not the last field
            start = ",\n{"
        chunks.write("\n]\n")


def write_list(store: Store, out: TextIO, **filters: Any) -> None:
    """The records ``filters`` select (see Store.find) as ``simtui list --json`` prints
    them: ``textfmt.to_json`` of the list of their Record.to_dict(), written a record at
    a time. A JSON column's text is decoded and indented once while it keeps coming
    (an environment and its package list, parameters, tags), then copied."""

    @functools.lru_cache(maxsize=1024)
    def indented(field: dataclasses.Field[Any], text: str | None) -> str:
        value = _default(field) if text is None else json.loads(text)
        if field.name == "environment" and value and "packages_sha256" in value:
            value["packages"] = store.packages(value["packages_sha256"])
        return to_json(value).replace("\n", "\n  ")  # as a field of a record

    def record(values: Sequence[Any]) -> str:
        fields = (indented(field, value) if field.name in JSON_COLUMNS else _scalar(value)
                  for field, value in zip(_FIELDS, values))
        return "{\n  " + ",\n  ".join(map(operator.add, _PREFIXES, fields)) + "\n}"

    with Chunked(out) as chunks:
        chunks.writelines(json_list(map(record, store.select(RECORD_COLUMNS, **filters))))
        chunks.write("\n")


def _scalar(value: str | float | None) -> str:
    """A column's value as ``textfmt.to_json`` writes it (non-ASCII escaped)."""
    return encode_basestring_ascii(value) if type(value) is str else "null" if value is None else _number(value)


def _number(value: float) -> str:
    """A number as json.dumps writes it: its repr, but for NaN and the infinities."""
    return repr(value) if type(value) is int or math.isfinite(value) else json.dumps(value)


_BOOLEANS = {None: None, 0: "false", 1: "true"}  # SQLite's booleans as CSV cells


def write_csv(store: Store, out: TextIO) -> None:
    """One row a record: frame.COLUMNS, then a ``params.<dotted.path>`` column for every
    parameter of any record, then a ``metrics.<key>`` column for every metric of any
    record (its last value); both found first, from each distinct parameters text and
    list of metric keys (frame.flat_columns). Times are ISO 8601 in UTC; a text
    value is its cell as it is, any other value its JSON (``0.1``, ``true``, tags as
    ``["a", "b"]``); None, or a parameter or metric a record lacks, is empty."""
    params, metric_names = flat_columns(store, limit=None)  # one pass over the records
    metrics = [name.removeprefix(METRICS) for name in metric_names]
    no_metrics = [""] * len(metrics)

    @functools.lru_cache(maxsize=4096)  # a sweep's runs share few parameter sets
    def param_cells(text: str | None) -> list[str]:
        values = param_values(text)
        return [_cell(values.get(name)) for name in params]

    def metric_cells(text: str) -> list[Any]:  # the last values: each record's own, not cached
        values = json.loads(text)  # a finite float as it is: the csv module writes its repr, as _cell would
        return [value if type(value) is float and value - value == 0 else _cell(value)
                for value in map(values.get, metrics)]

    def row(values: Sequence[Any]) -> list[Any]:  # None is written as "", a number as its JSON
        *cells, text, metrics_text = values
        for i in TIMES_AT:
            cells[i] = iso_time(cells[i])
        for i in BOOLEANS_AT:
            cells[i] = _BOOLEANS[cells[i]]
        cells += param_cells(text)
        cells += no_metrics if metrics_text is None else metric_cells(metrics_text)
        return cells

    with Chunked(out) as chunks:
        writer = csv.writer(chunks)
        writer.writerow([*COLUMNS, *params, *(METRICS + key for key in metrics)])
        writer.writerows(map(row, store.select(PICKED, limit=None)))


def _cell(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value
    if value is None:
        return ""
    return _number(value) if kind is int or kind is float else json.dumps(value, ensure_ascii=False)


def write(store: Store, out: TextIO, fmt: str) -> None:
    {"json": write_json, "csv": write_csv}[fmt](store, out)


class Chunked:
    """Writes to ``out`` (text or bytes) gathered into chunks of about CHUNK, written
    when one is full and on leaving ``with``: a line-buffered or unbuffered stream
    (stdout through click, or under PYTHONUNBUFFERED) then costs a system call a
    chunk, not one a write. After an error nothing more is written."""

    def __init__(self, out: IO[Any]) -> None:
        self.out = out
        self.pieces: list[Any] = []
        self.size = 0

    def write(self, piece: Any) -> None:
        self.pieces.append(piece)
        self.size += len(piece)
        if self.size >= CHUNK:
            self.flush()

    def writelines(self, pieces: Iterable[Any]) -> None:
        for piece in pieces:
            self.write(piece)

    def flush(self) -> None:
        if self.pieces:
            self.out.write(self.pieces[0][:0].join(self.pieces))  # "" or b"": as the pieces are
            self.pieces.clear()
            self.size = 0

    def __enter__(self) -> Chunked:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        if kind is None:
            self.flush()


def widen_pipe(out: IO[Any] | int) -> None:
    """Where ``out`` (a stream or a descriptor) is a pipe, give it a 1 MiB buffer
    (Linux; what any process may ask): a big output then costs its reader and writer
    a switch a MiB, not one each 64 KiB, about a quarter of an export's time into a
    pipe. Nothing happens where it cannot (no descriptor, not a pipe, not Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = out if isinstance(out, int) else out.fileno()
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)


@contextlib.contextmanager
def open_output(target: str | os.PathLike[str], *, binary: bool = False) -> Iterator[IO[Any]]:
    """The file to write an export or a feed to (UTF-8 text, or bytes with ``binary``).

    ``-`` is stdout. A device, FIFO or socket (``/dev/null``, ``/dev/stdout``, a named
    pipe) is written directly: it is never replaced, whoever runs this. A regular file
    or a new path is written atomically: into a file beside it, renamed over it only
    when the writing ended well (an error leaves the old file as it was); an existing
    file keeps its mode (and, run as root, its owner). A symlink's target is written.
    Opening fails with a one-line UsageError naming the path; a full disk is NoSpace.
    """
    mode = "wb" if binary else "w"
    encoding = None if binary else "utf-8"
    if os.fspath(target) == "-":
        import click

        widen_pipe(1)
        with click.open_file("-", mode, encoding=encoding) as out:
            yield out
        return
    path = os.path.realpath(target)
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise _open_error(err, target) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{target} is a folder: give a file name")
    if st is not None and not stat.S_ISREG(st.st_mode):  # a device or a pipe: write, never replace
        try:
            out = open(path, mode, encoding=encoding)  # noqa: SIM115 - closed below
        except OSError as err:
            raise _open_error(err, target) from None
        widen_pipe(out)
        with _written(target), out:
            yield out
        return
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)  # the umask applies
    except OSError as err:
        if st is not None and err.errno in (errno.EACCES, errno.EPERM) and os.access(path, os.W_OK):
            with _written(target), open(path, mode, encoding=encoding) as out:  # a file we may write, in a
                yield out  # folder we may not: in place
            return
        raise _open_error(err, target) from None
    try:
        if st is not None:
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0:
                with contextlib.suppress(OSError):
                    os.fchown(fd, st.st_uid, st.st_gid)
        with _written(target), open(fd, mode, encoding=encoding, closefd=True) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _written(target: str | os.PathLike[str]) -> Iterator[None]:
    """A write that fails: NoSpace for a full disk, else a one-line FileFault."""
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(target, f"nothing was written to {target}; free some space and run it again") from None
        raise FileFault.of(target, err.strerror or str(err)) from None


def _open_error(err: OSError, target: str | os.PathLike[str]) -> Exception:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(target)
    if err.errno == errno.ENOENT:
        return UsageError(f"{target}: no such folder {os.path.dirname(os.path.abspath(target))}")
    return UsageError(f"{target}: cannot write there ({err.strerror or err})")
