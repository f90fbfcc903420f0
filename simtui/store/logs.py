"""Local copies of job logs: ``$SIMTUI_HOME/logs/<label>.log``, gzipped when done.

The local size is the resume point for following a remote log: after a
reconnect, ``tail -c +<size+1>`` continues exactly where the copy ends. An
append that cannot be stored whole (a full disk) leaves the copy as it was, so
the size stays a true resume point. The folder is 0700, its files 0600; the
``.lock`` file of a claim is gone once the claim is given up.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from simtui.config import simtui_home
from simtui.errors import FileFault, NoSpace

READ_CHUNK = 1 << 18  # big reads keep the cost per piece low; one protocol message (DATA_CHUNK) each


class LocalLog:
    def __init__(self, label: str, home: Path | None = None) -> None:
        self.label = label
        self.dir = (home or simtui_home()) / "logs"
        self.path = self.dir / f"{label}.log"
        self.gz_path = self.dir / f"{label}.log.gz"
        self.lock_path = self.dir / f"{self.path.name}.lock"
        self._file: int | None = None  # the descriptor appends go to
        self._lock: int | None = None  # the descriptor of the held lock file

    @classmethod
    def unfinished(cls, home: Path | None = None) -> list[str]:
        """Labels whose local copy is not compressed yet (still being written, or left)."""
        folder = (home or simtui_home()) / "logs"
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        return sorted(name[: -len(".log")] for name in names if name.endswith(".log"))

    def claim(self) -> bool:
        """Become the one process that writes this copy (until close()); False when
        another simtui process already does. Two writers would store bytes twice.

        The lock file is removed when the claim is given up; so a lock taken on a
        file that was removed meanwhile (its holder let go) is taken again on the
        file now at the path."""
        while self._lock is None:
            self._make_dir()
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as err:
                raise _fault(err, self.lock_path) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            if _same_file(fd, self.lock_path):
                self._lock = fd
            else:
                os.close(fd)  # removed by the writer before us as it let go: try the new one
        if not self.gz_path.exists():  # a copy begun shows until it is finished (see unfinished())
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            except OSError as err:
                raise _fault(err, self.path) from None
        return True

    def _make_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as err:
            raise _fault(err, self.dir) from None

    def size(self) -> int:
        """Bytes held so far (of the uncompressed log)."""
        if self.path.exists():
            return self.path.stat().st_size
        if self.gz_path.exists():
            with gzip.open(self.gz_path, "rb") as f:
                return sum(len(chunk) for chunk in iter(lambda: f.read(READ_CHUNK), b""))
        return 0

    @property
    def compressed(self) -> bool:
        return self.gz_path.exists() and not self.path.exists()

    def append(self, data: bytes) -> None:
        """Add bytes at the end, written through, so other processes see them at once.

        All or nothing: a write that fails (NoSpace on a full disk, else FileFault)
        is undone, so the copy still ends where it did and size() is the resume point."""
        if self._file is None:
            if self.compressed:
                raise RuntimeError(f"{self.gz_path} is finished; it takes no more data")
            self._make_dir()
            try:
                self._file = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as err:
                raise _fault(err, self.path) from None
        start = os.fstat(self._file).st_size
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._file, view):]
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(self._file, start)
            raise _fault(err, self.path) from None

    def close(self) -> None:
        """Stop writing and give up the claim (its lock file goes)."""
        if self._file is not None:
            os.close(self._file)
            self._file = None
        if self._lock is not None:
            if _same_file(self._lock, self.lock_path):  # ours: no one else removes it while we hold it
                with contextlib.suppress(OSError):
                    self.lock_path.unlink()
            os.close(self._lock)  # releases the claim
            self._lock = None

    def compress(self) -> None:
        """Gzip the finished log (atomically: the plain file goes only once the .gz is
        whole), then give up the claim. Only the writer (claim()) may: two processes
        never compress one log at once. Where the .gz cannot be written (NoSpace,
        FileFault) the plain copy stays as it is and the claim is kept: try again."""
        if self._lock is None:
            raise RuntimeError(f"{self.path}: compress() needs the claim")
        if self._file is not None:
            os.close(self._file)
            self._file = None
        if self.path.exists():
            tmp = self.gz_path.with_suffix(".gz.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                with open(self.path, "rb") as src, open(fd, "wb") as raw, \
                        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as dst:
                    shutil.copyfileobj(src, dst, READ_CHUNK)
                os.replace(tmp, self.gz_path)
            except OSError as err:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise _fault(err, err.filename or tmp) from None
            self.path.unlink()
        self.close()

    def tail(self, limit: int) -> tuple[int, bytes]:
        """The last ``limit`` bytes (or fewer) and where they start. A compressed copy
        is read through once (slow for a big log: call it off the event loop)."""
        if self.compressed:
            kept, offset = b"", 0
            for chunk in self.chunks():
                kept += chunk
                if len(kept) > 2 * limit:
                    offset += len(kept) - limit
                    kept = kept[-limit:]
            cut = max(len(kept) - limit, 0)
            return offset + cut, kept[cut:]
        start = max(self.size() - limit, 0)
        return start, b"".join(self.chunks(start))

    def chunks(self, offset: int = 0) -> Iterator[bytes]:
        """The log's bytes from ``offset``, plain or compressed (the plain copy is
        opened first: it may be compressed and removed meanwhile)."""
        try:
            opened = open(self.path, "rb")
        except FileNotFoundError:
            try:
                opened = gzip.open(self.gz_path, "rb")
            except FileNotFoundError:
                return
        with opened as f:
            f.seek(offset)
            yield from iter(lambda: f.read(READ_CHUNK), b"")


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _fault(err: OSError, path: object) -> FileFault:
    """A local log file that cannot be written: NoSpace on a full disk."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(path, "the job goes on on its host, and its log is copied here once there is space")
    return FileFault.of(path, err.strerror or str(err), "the job goes on on its host; its log stays there")
