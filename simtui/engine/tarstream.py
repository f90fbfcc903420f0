"""A tar stream of local files, made while it is sent: never the whole archive in
memory; a worker thread makes it a few chunks ahead of the sender, so reading the
files overlaps sending them. Modes are kept; owners are not.

Headers: the common member (an ASCII name and link target of at most 100 bytes,
sizes and times that fit their octal fields) gets its ustar header written here,
byte for byte what ``tarfile`` writes for it, in a fifth of the time; any other
member goes through ``tarfile`` (a PAX header before it)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import stat
import tarfile
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path

from simtui.engine.trees import link_digest
from simtui.hosts.base import CHUNK

BLOCK = 512
AHEAD = 4  # chunks made ahead of the sender
OCTAL_LIMIT = 8**11  # sizes and times at or past this need a PAX header
USTAR_TAIL = b"ustar\x0000" + bytes(BLOCK - 265)  # magic, version; no owner names, devices, prefix
ZEROS = bytes(BLOCK)
Progress = Callable[[int], None]  # called with the file bytes sent so far
# local path, name in the archive (, mode to give it), or with what an lstat said: st_mode, size, mtime_ns
Member = tuple[Path | str, str] | tuple[Path | str, str, int] | tuple[Path | str, str, int, int, int]


def header(name: str, mode: int, size: int, mtime: int, link: str | None = None) -> bytes:
    """The header of a file (``link``: of a symlink to that target) in the archive;
    of ``mode``, the permission bits."""
    mode &= 0o7777
    if _fits(name) and (link is None or _fits(link)) and size < OCTAL_LIMIT and 0 <= mtime < OCTAL_LIMIT:
        return _ustar(name.encode(), mode, size, mtime, b"0" if link is None else b"2", (link or "").encode())
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = mode, mtime
    if link is None:
        info.size = size
    else:
        info.type, info.linkname = tarfile.SYMTYPE, link
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _fits(text: str) -> bool:
    return text.isascii() and len(text) <= 100


def _ustar(name: bytes, mode: int, size: int, mtime: int, kind: bytes, link: bytes) -> bytes:
    head = b"%s%07o\x000000000\x000000000\x00%011o\x00%011o\x00        %s%s%s" % (  # uid, gid 0; chksum blank
        name.ljust(100, b"\0"), mode, size, mtime, kind, link.ljust(100, b"\0"), USTAR_TAIL)
    return b"%s%06o\0 %s" % (head[:148], sum(head), head[156:])


def _described(members: Iterable[Member]) -> Iterator[tuple[Path | str, str, int, int, int]]:
    """Each member with its st_mode, size and mtime_ns: as given (five items), else
    from an ``lstat`` now, with the mode given (three items) in place of the file's."""
    for member in members:
        if len(member) == 5:
            yield member
            continue
        local, name, *mode = member
        st = os.lstat(local)
        bits = st.st_mode & ~0o7777 | mode[0] & 0o7777 if mode else st.st_mode
        yield local, name, bits, st.st_size, st.st_mtime_ns


def tar_chunks(members: Iterable[Member], progress: Progress | None = None,
               digests: dict[str, str] | None = None) -> Iterator[bytes]:
    """The archive of the members, in chunks of about CHUNK bytes: each file's first
    ``size`` bytes (padded with zeros where it ends early: the next sync sees its
    new mtime and sends it again), each link's target, read now; mtimes in whole
    seconds (no PAX header per file). ``digests``: filled with each member's sha256
    as sync and trees hash it (a link's: trees.link_digest), of what the
    archive holds, as each is read."""
    buffer = bytearray()
    sent = 0
    for local, name, mode, size, mtime_ns in _described(members):
        if stat.S_ISLNK(mode):
            buffer += _link(local, name, mode, mtime_ns, digests)
            continue
        buffer += header(name, mode, size, mtime_ns // 10**9)
        digest = hashlib.sha256()
        if size:
            fd = os.open(local, os.O_RDONLY)
            try:
                left = size
                while left:
                    data = os.read(fd, min(CHUNK, left)) or bytes(left)
                    left -= len(data)
                    buffer += data
                    digest.update(data)
                    if len(buffer) >= CHUNK:
                        yield bytes(buffer)
                        buffer.clear()
            finally:
                os.close(fd)
            buffer += ZEROS[: -size % BLOCK]
            sent += size
            if progress:
                progress(sent)
        if digests is not None:
            digests[name] = digest.hexdigest()
    buffer += bytes(2 * BLOCK)  # the end of the archive
    yield bytes(buffer)


def _link(local: Path | str, name: str, mode: int, mtime_ns: int, digests: dict[str, str] | None) -> bytes:
    """A symlink's header, its target read now (and hashed, with ``digests``)."""
    target = os.readlink(local)
    if digests is not None:
        digests[name] = link_digest(target)
    return header(name, mode, 0, mtime_ns // 10**9, target)


async def tar_stream(members: Iterable[Member], progress: Progress | None = None,
                     digests: dict[str, str] | None = None) -> AsyncIterator[bytes]:
    """tar_chunks, made by a worker thread at most AHEAD chunks ahead (file reads
    never block the loop); an error making them is raised here. ``digests`` is
    complete once the stream has ended."""
    chunks: queue.Queue = queue.Queue(AHEAD)
    stop = threading.Event()

    def make() -> None:
        try:
            for chunk in tar_chunks(members, progress, digests):
                chunks.put(chunk)
                if stop.is_set():
                    return
            chunks.put(None)
        except BaseException as err:  # handed to the sender, raised there
            chunks.put(err)

    threading.Thread(target=make, name="tar-stream", daemon=True).start()
    try:
        while (chunk := await asyncio.to_thread(chunks.get)) is not None:
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk
    finally:
        stop.set()
        _drain(chunks)  # the maker's last put goes through, then it sees stop


def _drain(chunks: queue.Queue) -> None:
    while True:
        try:
            chunks.get_nowait()
        except queue.Empty:
            return
