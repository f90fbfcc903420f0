"""Sync a project to its folder on a host: only what changed crosses, in one tar stream.

Each end keeps a manifest, path -> ``[size, mtime_ns, st_mode, sha256]``. Here a
file is hashed again only when its size or mtime changed since the last scan
(kept in ``$SIMTUI_HOME/sync/`` with a copy of the host's manifest), and then
only where the host holds that path (to compare); a file the host lacks is
hashed as it is read for the tar stream, so a first sync reads every file once.
The host keeps its own manifest, with its own sizes and mtimes, and says which
files no longer match it (changed behind our back): those are sent again. A sync
is two commands on the host (project_helper.py), started at once: one says what
went stale, and sends the manifest unless our copy is of its version; the other
then takes the deletions, a tar stream of the files to send, and their sha256
(or ends, when there is nothing to do). Only files sync put there are ever
deleted: outputs, ``data/`` and ``.venv`` are left alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import marshal
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simtui.config import simtui_home
from simtui.engine.project import Project
from simtui.engine.selection import project_files
from simtui.engine.tarstream import tar_stream
from simtui.engine.trees import link_digest, tree_digest
from simtui.hosts import Host
from simtui.hosts import project_helper as helper
from simtui.hosts.project import Receiver, tree_state
from simtui.model import to_dict
from simtui.provenance import hash_file

Manifest = dict[str, list]  # path -> [size, mtime_ns, st_mode, sha256]
SIZE, MTIME, MODE, SHA = range(4)
RACY_NS = 2_000_000_000  # a file changed this close before a scan may change again unseen


@dataclass(frozen=True)
class Plan:
    send: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()  # synced files gone here: deleted there
    forget: tuple[str, ...] = ()  # gone here, and changed there since: left there, forgotten

    def __bool__(self) -> bool:
        return bool(self.send or self.delete or self.forget)


@dataclass(frozen=True)
class SyncResult:
    host: str
    folder: str
    files: int  # in the project
    sent: tuple[str, ...]
    deleted: tuple[str, ...]
    bytes_sent: int  # file contents
    tree_sha256: str
    tree: tuple[tuple[str, int, str], ...] = field(default=(), repr=False)  # (path, st_mode, sha256) a file

    def to_dict(self) -> dict[str, Any]:
        data = to_dict(self)
        del data["tree"]
        return data


# -- manifests (pure) -------------------------------------------------------------


def scan(root: Path, paths: list[str], known: Manifest, since_ns: int) -> Manifest:
    """The manifest of ``paths`` under ``root``: sizes, mtimes and modes from
    ``lstat``; hashes from ``known`` where size and mtime are unchanged and the file
    had not changed close before ``since_ns`` (the last scan's start), else None
    (see ``hash_missing``)."""
    found: Manifest = {}
    prefix = f"{root}{os.sep}"
    for path in paths:
        try:
            st = os.lstat(prefix + path)
        except FileNotFoundError:  # git still lists a tracked file deleted here
            continue
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            continue
        old = known.get(path)
        trusted = (old is not None and old[SIZE] == st.st_size and old[MTIME] == st.st_mtime_ns
                   and st.st_mtime_ns < since_ns - RACY_NS)
        found[path] = [st.st_size, st.st_mtime_ns, st.st_mode, old[SHA] if trusted else None]
    return found


def hash_missing(root: Path, manifest: Manifest, paths: Iterable[str]) -> None:
    """Fill in the sha256 of these paths of the manifest, read from under ``root``."""
    prefix = f"{root}{os.sep}"
    for path in paths:
        entry = manifest[path]
        entry[SHA] = _hash(prefix + path, entry[MODE])


def _hash(path: str, mode: int) -> str:
    if stat.S_ISLNK(mode):
        return link_digest(os.readlink(path))
    return hash_file(path)


def host_mode(mode: int, share: bool) -> int:
    """The mode a file sent with ``mode`` has on a host: the same where the host's
    config says ``share = true``, else its owner's bits alone (project_helper
    --private); a link's mode is a link's."""
    return mode if share or not stat.S_ISREG(mode) else mode & ~0o7077


def plan(local: Manifest, remote: Manifest, stale: set[str] | frozenset[str] = frozenset(),
         share: bool = True) -> Plan:
    """What to send (new, changed in content or mode, or stale there) and what to
    delete there (synced before, gone here). ``share``: the host keeps modes whole
    (else it keeps the owner's bits: those are compared)."""
    send = tuple(sorted(
        path for path, entry in local.items()
        if path in stale or path not in remote or remote[path][SHA] != entry[SHA]
        or remote[path][MODE] != host_mode(entry[MODE], share)
    ))
    gone = sorted(path for path in remote if path not in local)
    return Plan(send, tuple(p for p in gone if p not in stale), tuple(p for p in gone if p in stale))


def tree_entries(manifest: Manifest) -> list[tuple[str, int, str]]:
    """``(path, st_mode, sha256)`` of each file: what a tree is (see simtui.engine.trees)."""
    return [(path, entry[MODE], entry[SHA]) for path, entry in manifest.items()]


def tree_sha256(manifest: Manifest) -> str:
    """The synced tree's identity: sha256 over every file's path, mode and sha256."""
    return tree_digest(tree_entries(manifest))


# -- what this machine remembers of the last sync ------------------------------------


@dataclass
class Memory:
    """The last scan here and the host's manifest after the last sync (and that
    sync's version token), per project and host. A cache read and written on every
    sync, so in marshal's format, the fastest to load; one that cannot be read
    costs only time (every file hashed again, the host's manifest asked for)."""

    path: Path
    scanned_ns: int = 0
    local: Manifest = field(default_factory=dict)
    remote: Manifest = field(default_factory=dict)
    remote_version: str = ""

    @classmethod
    def load(cls, project: Project, host: str, folder: str) -> Memory:
        key = hashlib.sha256(f"{project.root}\0{host}\0{folder}".encode()).hexdigest()[:24]
        path = simtui_home() / "sync" / f"{key}.marshal"
        try:
            return cls(path, **marshal.loads(path.read_bytes()))
        except (OSError, ValueError, EOFError, TypeError):
            return cls(path)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        state = {"scanned_ns": self.scanned_ns, "local": self.local, "remote": self.remote,
                 "remote_version": self.remote_version}
        tmp.write_bytes(marshal.dumps(state))
        tmp.replace(self.path)


# -- the sync ------------------------------------------------------------------------


async def sync(host: Host, project: Project, progress: Callable[[int, int], None] | None = None) -> SyncResult:
    """Make the project's folder on ``host`` hold what ``project_files`` lists here.

    ``progress(bytes_sent, bytes_to_send)`` is called as file contents go out."""
    folder = project.folder(host.spec)
    where = project.folder_arg(host.spec)
    memory = Memory.load(project, host.name, folder)
    started_ns = time.time_ns()

    def look_here() -> Manifest:
        return scan(project.root, project_files(project.root), memory.local, memory.scanned_ns)

    # The host and the local disk are asked at once, and the receiving end starts
    # meanwhile: none of the three waits for another.
    receiver = Receiver(host, where)
    try:
        there, local = await asyncio.gather(tree_state(host, where, memory.remote_version),
                                            asyncio.to_thread(look_here))
        if there.manifest is not None:
            memory.remote, memory.remote_version = there.manifest, there.version or ""
        stale = set(there.stale)
        compare = [path for path, entry in local.items()
                   if entry[SHA] is None and path in memory.remote and path not in stale]
        await asyncio.to_thread(hash_missing, project.root, local, compare)
    except BaseException:
        await receiver.nothing()
        raise
    todo = plan(local, memory.remote, stale, share=getattr(host.spec, "share", False))
    total = sum(local[path][SIZE] for path in todo.send)
    if not todo:
        await receiver.nothing()
    else:
        await _send(receiver, project, local, todo, memory, progress and (lambda done: progress(done, total)))
    newest = max((entry[MTIME] for entry in local.values()), default=0)
    racy = newest >= memory.scanned_ns - RACY_NS  # files were hashed again only for being recent
    if todo or racy or there.manifest is not None or local != memory.local:
        memory.local, memory.scanned_ns = local, started_ns
        await asyncio.to_thread(memory.save)
    return SyncResult(host.name, folder, len(local), todo.send, todo.delete, total, tree_sha256(local),
                      tuple(tree_entries(local)))


async def _send(receiver: Receiver, project: Project, local: Manifest, todo: Plan, memory: Memory,
                progress: Callable[[int], None] | None) -> None:
    """Send the plan: each file as scanned (its size then; no second ``lstat``),
    hashed as it is read for the tar stream; ``local`` and ``memory`` keep that
    sha256: what the host now holds."""
    version = secrets.token_hex(8)
    sent: dict[str, str] = {}
    gone = {**dict.fromkeys(todo.delete, "D"), **dict.fromkeys(todo.forget, "F")}
    prefix = f"{project.root}{os.sep}"
    members = [(prefix + path, path, local[path][MODE], local[path][SIZE], local[path][MTIME]) for path in todo.send]
    tar = tar_stream(members, progress, sent) if members else None
    stats = await receiver.send(version, gone, tar, sent)
    for path, sha in sent.items():
        local[path][SHA] = sha
    memory.remote = helper.updated(memory.remote, list(gone), sent, stats)
    memory.remote_version = version
