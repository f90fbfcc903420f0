"""Files in and out of a project's folder on a host: push, pull, and data downloaded
there. Every path on the host is relative to the project folder; one that would
leave it (``..``, absolute, through a symlink: its parent's realpath on the host)
is refused with a UsageError before anything is copied."""

from __future__ import annotations

import asyncio
import os
import posixpath
import shutil
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from simtui.engine.project import Project, inside
from simtui.engine.tarstream import tar_stream
from simtui.errors import CommandFailed, SimtuiError, UsageError
from simtui.hosts import Host, scripts
from simtui.hosts.local import this_machine
from simtui.hosts.project import Place, run_live, where
from simtui.hosts.project_helper import count_files
from simtui.secret import mask

Progress = Callable[[int, int], None]  # (bytes so far, bytes in all)


async def _checked(host: Host, project: Project, path: str) -> tuple[str, Place]:
    """The path, normalised, and what is there; a UsageError when it leaves the folder."""
    rel = inside(path)
    found = await where(host, project.folder_arg(host.spec), rel)
    if not found.inside:
        raise UsageError(f"{path!r} leads outside the project folder {project.folder(host.spec)} on {host.name} "
                         "(through a symlink)")
    return rel, found


def _local_files(local: Path, name: str) -> Iterator[tuple[Path, str]]:
    """``(path, name in the archive)`` of a file, or of every file and link in a folder."""
    if not local.is_dir() or local.is_symlink():
        yield local, name
        return
    for folder, dirs, files in os.walk(local):
        for entry in sorted(files) + sorted(d for d in dirs if os.path.islink(os.path.join(folder, d))):
            path = Path(folder, entry)
            yield path, posixpath.join(name, path.relative_to(local).as_posix())


async def push(host: Host, project: Project, local: Path, remote: str, progress: Progress | None = None) -> str:
    """Copy a local file or folder to ``remote`` in the project folder (into it, when
    that is a folder); returns where it went, relative to the project folder."""
    if not os.path.lexists(local):
        raise UsageError(f"{local} does not exist")
    rel, found = await _checked(host, project, remote)
    if found.kind == "dir":
        rel, _ = await _checked(host, project, posixpath.join(rel, local.resolve().name))
    members = list(_local_files(local, rel))
    total = sum(path.lstat().st_size for path, _ in members)
    tar = tar_stream(members, progress and (lambda done: progress(done, total)))
    result = await host.run_with_input(["sh", "-c", scripts.UNTAR, "sh", project.folder_arg(host.spec)], tar)
    if not result.ok:
        raise CommandFailed(host.name, f"tar -x in {project.folder(host.spec)}", result.exit_status, result.stderr)
    return rel


async def pull(host: Host, project: Project, remote: str, local: Path, progress: Progress | None = None) -> Path:
    """Copy ``remote`` (a file or folder in the project folder) to ``local`` (into
    it, when that is a folder); returns the local path written. It is unpacked
    beside its destination first and moved into place once complete."""
    rel, found = await _checked(host, project, remote)
    if found.kind == "missing":
        raise UsageError(f"{rel} does not exist in {project.folder(host.spec)} on {host.name}")
    target = local / posixpath.basename(rel) if local.is_dir() else local
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent} does not exist")
    if target.exists() and (target.is_dir() or found.kind == "dir"):
        raise UsageError(f"{target} already exists")
    staging = Path(tempfile.mkdtemp(prefix=".simtui-pull-", dir=target.parent))
    try:
        archive = host.stream(["tar", "-c", "-f", "-", "-C", project.folder_arg(host.spec), f"./{rel}"])
        untar = ["tar", "-x", "-p", "--no-same-owner", "-f", "-", "-C", str(staging)]
        result = await this_machine().run_with_input(
            untar, _counted(archive, found.bytes, progress))
        unpacked = staging / rel
        got = await asyncio.to_thread(count_files, str(unpacked)) if os.path.lexists(unpacked) else (0, 0)
        if not result.ok or got[0] < found.files:
            raise SimtuiError(f"{host.name}: pulling {rel} got {got[0]} of {found.files} files "
                              f"({result.stderr.strip() or 'unreadable files there?'})")
        os.replace(unpacked, target)
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    return target


async def _counted(chunks: AsyncIterator[bytes], total: int, progress: Progress | None) -> AsyncIterator[bytes]:
    done = 0
    async for chunk in chunks:
        done += len(chunk)
        if progress:
            progress(min(done, total), total)
        yield chunk


def data_name(url: str) -> str:
    """The file name a URL's download gets in data/: the last part of its path."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "ftp"):
        raise UsageError(f"{url!r}: expected an http, https or ftp URL")
    name = urllib.parse.unquote(parts.path.rstrip("/").rpartition("/")[2])
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise UsageError(f"{url!r} names no file to save in data/ (its path must end with a file name)")
    return name


async def download(host: Host, project: Project, url: str, on_output: Callable[[bytes], None],
                   progress: bool = False) -> str:
    """Download ``url`` on the host into the project's ``data/``; returns the path
    there, relative to the project folder. The downloader's messages (and progress,
    when asked) go to ``on_output``."""
    name = data_name(url)
    argv = ["sh", "-c", scripts.DOWNLOAD, "sh", project.folder_arg(host.spec), name, url, "1" if progress else ""]
    status = await run_live(host, argv, on_output)
    if status:
        raise SimtuiError(f"{host.name}: downloading {mask(url)} failed (exit {status}); nothing was kept")
    return f"data/{name}"
