"""Synced trees kept here, content-addressed, so that a rerun sends exactly the tree
a run ran, to any host, whatever the checkout holds by then.

``$SIMTUI_HOME/trees/<tree sha256>.json`` maps each path of a synced tree to its
``[st_mode, sha256]``; ``$SIMTUI_HOME/trees/blobs/<sha[:2]>/<sha>`` holds each
distinct content once (a symlink's is ``b"symlink\\0" + target``, as sync hashes
it). A blob is written only after its bytes were hashed again on the way in, so a
file edited during a sync cannot slip into a tree under another file's hash.
Its folders are 0700 and its files 0600 (a blob's own mode is in its tree).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from simtui.config import simtui_home
from simtui.errors import UsageError

Tree = dict[str, list]  # path -> [st_mode, sha256]
LINK_PREFIX = b"symlink\0"


def link_digest(target: str) -> str:
    """A symlink's sha256, as sync and trees hash it: of LINK_PREFIX and its target."""
    return hashlib.sha256(LINK_PREFIX + os.fsencode(target)).hexdigest()


def tree_digest(entries: Iterable[tuple[str, int, str]]) -> str:
    """A tree's identity: sha256 over every ``(path, st_mode, sha256)``, sorted by path."""
    digest = hashlib.sha256()
    for path, mode, sha in sorted(entries):
        digest.update(f"{mode:o} {sha} {path}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _home() -> Path:
    return simtui_home() / "trees"


def blob(sha: str) -> Path:
    return _home() / "blobs" / sha[:2] / sha


def keep(root: Path, entries: Iterable[tuple[str, int, str]]) -> str:
    """Keep the tree of ``(path, st_mode, sha256)`` under ``root`` (blobs it lacks are
    copied from there); returns its digest. Blocking: call it in a thread."""
    tree: Tree = {path: [mode, sha] for path, mode, sha in entries}
    digest = tree_digest((path, mode, sha) for path, (mode, sha) in tree.items())
    file = _home() / f"{digest}.json"
    if file.exists():
        return digest
    for path, (mode, sha) in tree.items():
        if not blob(sha).exists():
            _store(root / path, mode, sha, path)
    _write(file, json.dumps(tree, sort_keys=True).encode())
    return digest


def _store(source: Path, mode: int, sha: str, path: str) -> None:
    digest = hashlib.sha256()
    target = blob(sha)
    _private_dirs(target.parent)
    tmp = target.with_name(f".{sha}.{os.getpid()}.tmp")
    try:
        with open(_private_file(tmp), "wb") as out:
            if stat.S_ISLNK(mode):
                data = LINK_PREFIX + os.fsencode(os.readlink(source))
                digest.update(data)
                out.write(data)
            else:
                with open(source, "rb") as file:
                    for chunk in iter(lambda: file.read(1 << 20), b""):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != sha:
            raise UsageError(f"{path} changed while it was being synced; run again")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write(file: Path, data: bytes) -> None:
    _private_dirs(file.parent)
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    try:
        with open(_private_file(tmp), "wb") as out:
            out.write(data)
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)


def _private_dirs(folder: Path) -> None:
    """``folder`` and each folder above it that is missing, made 0700."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir(mode=0o700, exist_ok=True)


def _private_file(path: Path) -> int:
    """A new file (truncated if left by an earlier try), 0600: its descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)


def load(digest: str) -> Tree:
    """The kept tree; a UsageError when this machine does not have it."""
    try:
        return json.loads((_home() / f"{digest}.json").read_bytes())
    except (OSError, ValueError):
        raise UsageError(f"the code tree {digest[:12]} is not kept in {_home()}: it cannot be sent again "
                         "(it was synced by an older simtui, or from another machine)") from None


def link_target(sha: str) -> str:
    """The target of a kept symlink."""
    return os.fsdecode(blob(sha).read_bytes()[len(LINK_PREFIX):])
