"""Records out as JSON (a list of whole records, written as they are read) or CSV (one
row a record in the flat columns of simtui.store.frame, the same rows simtui.records()
gives). ``open_output`` opens where ``-o`` points: a regular file atomically, a
device or a pipe as it is."""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import stat
from collections.abc import Iterable, Iterator
from typing import IO, Any, TextIO

from simtui.errors import FileFault, NoSpace, UsageError
from simtui.model import Record
from simtui.store.frame import columns, flat_record

FORMATS = ("json", "csv")


def write_json(records: Iterable[Record], out: TextIO) -> None:
    out.write("[")
    for i, record in enumerate(records):
        out.write(",\n" if i else "\n")
        out.write(json.dumps(record.to_dict(), ensure_ascii=False))
    out.write("\n]\n")


def write_csv(records: Iterable[Record], out: TextIO) -> None:
    """One row a record: frame.COLUMNS, then a ``params.<dotted.path>`` column for every
    parameter of any record (so the rows are flattened first, then written). Times are
    ISO 8601 in UTC; a text value is its cell as it is, any other value its JSON (``0.1``,
    ``true``, tags as ``["a", "b"]``); None, or a parameter a record lacks, is empty."""
    rows = [flat_record(record) for record in records]
    names = columns(rows)
    writer = csv.writer(out)
    writer.writerow(names)
    for row in rows:
        writer.writerow(_cell(row.get(name)) for name in names)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def write(records: Iterable[Record], out: TextIO, fmt: str) -> None:
    {"json": write_json, "csv": write_csv}[fmt](records, out)


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
