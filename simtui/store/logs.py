"""Local copies of job logs: ``$SIMTUI_HOME/logs/<label>.log``, gzipped when done.

The local size is the resume point for following a remote log: after a
reconnect, ``tail -c +<size+1>`` continues exactly where the copy ends.
"""

from __future__ import annotations

import fcntl
import gzip
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from simtui.config import simtui_home

READ_CHUNK = 1 << 16


class LocalLog:
    def __init__(self, label: str, home: Path | None = None) -> None:
        self.label = label
        self.dir = (home or simtui_home()) / "logs"
        self.path = self.dir / f"{label}.log"
        self.gz_path = self.dir / f"{label}.log.gz"
        self._file = None
        self._lock = None

    def claim(self) -> bool:
        """Become the one process that writes this copy (until close()); False when
        another simtui process already does. Two writers would store bytes twice."""
        if self._lock is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            lock = open(self.dir / f"{self.path.name}.lock", "wb")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                return False
            self._lock = lock
        return True

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
        """Add bytes at the end and flush, so other processes see them at once."""
        if self._file is None:
            if self.compressed:
                raise RuntimeError(f"{self.gz_path} is finished; it takes no more data")
            self.dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")
        self._file.write(data)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock is not None:
            self._lock.close()  # releases the claim
            self._lock = None

    def compress(self) -> None:
        """Gzip the finished log (atomically: the plain file goes only once the .gz is
        whole), then give up the claim. Only the writer (claim()) may: two processes
        never compress one log at once."""
        if self._lock is None:
            raise RuntimeError(f"{self.path}: compress() needs the claim")
        if self._file is not None:
            self._file.close()
            self._file = None
        try:
            if self.path.exists():
                tmp = self.gz_path.with_suffix(".gz.tmp")
                with open(self.path, "rb") as src, gzip.open(tmp, "wb", compresslevel=1) as dst:
                    shutil.copyfileobj(src, dst, READ_CHUNK)
                os.replace(tmp, self.gz_path)
                self.path.unlink()
        finally:
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
        """The log's bytes from ``offset``, plain or compressed."""
        if self.path.exists():
            opener = open(self.path, "rb")
        elif self.gz_path.exists():
            opener = gzip.open(self.gz_path, "rb")
        else:
            return
        with opener as f:
            f.seek(offset)
            yield from iter(lambda: f.read(READ_CHUNK), b"")
