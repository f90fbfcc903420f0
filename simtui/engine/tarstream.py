"""A tar stream of local files, made while it is sent: never the whole archive in
memory, one thread hop per megabyte. Modes are kept; owners are not."""

from __future__ import annotations

import asyncio
import os
import stat
import tarfile
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path

from simtui.hosts.base import CHUNK

BLOCK = 512
Progress = Callable[[int], None]  # called with the file bytes sent so far


Member = tuple[Path, str] | tuple[Path, str, int]  # local path, name in the archive (, mode)


def tar_chunks(members: Iterable[Member], progress: Progress | None = None) -> Iterator[bytes]:
    """The archive of ``(local path, name in the archive)`` pairs (a third item: the
    mode to give it instead of the local file's), in chunks of about CHUNK bytes. A file that shrinks while it is read is padded with zeros
    (the next sync sees its new mtime and sends it again)."""
    buffer = bytearray()
    sent = 0
    for local, name, *mode in members:
        st = os.lstat(local)
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(mode[0] if mode else st.st_mode)
        info.mtime = int(st.st_mtime)  # whole seconds: no extended header per file
        if stat.S_ISLNK(st.st_mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(local)
        else:
            info.size = st.st_size
        buffer += info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        if info.size:
            with open(local, "rb") as file:
                left = info.size
                while left:
                    data = file.read(min(CHUNK, left)) or bytes(left)
                    buffer += data
                    left -= len(data)
                    sent += len(data)
                    if len(buffer) >= CHUNK:
                        yield bytes(buffer)
                        buffer.clear()
            buffer += bytes(-info.size % BLOCK)
            if progress:
                progress(sent)
    buffer += bytes(2 * BLOCK)  # the end of the archive
    yield bytes(buffer)


async def tar_stream(members: Iterable[Member], progress: Progress | None = None) -> AsyncIterator[bytes]:
    """tar_chunks, each chunk made in a worker thread (file reads do not block the loop)."""
    chunks = tar_chunks(members, progress)
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        yield chunk
