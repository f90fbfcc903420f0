"""Runs ON the host, as ``python3 -S -c <this file> COMMAND ARGS``: the project
folder's side of sync, path checks and ports. Stdlib only, Python 3.8.

The folder keeps ``.simtui-manifest``: for every file sync put there, its
``[size, mtime_ns, st_mode, sha256]`` as this host sees it, so a file changed
behind sync's back (size, mtime or mode differ) is noticed with one ``lstat``;
and the version token of the sync that wrote it, so that a caller holding that
version's copy is not sent it again. The manifest is marshal data (it never
leaves the host as such) and the sync commands speak NUL-separated fields: sync
runs two commands per call, and their start-up is most of their cost (json alone
costs more to import than marshal takes to load a manifest of 5,000 files).

Commands:

- ``state ROOT VERSION``: ``same`` (the caller's copy is current) or ``full``,
  the version and the manifest (path, size, mtime_ns, st_mode, sha256 a file),
  ended by an empty field; then the paths that no longer match it;
- ``receive ROOT``: stdin is a header (its length in 16 ASCII digits, then the
  new version and records: ``D path`` delete, ``F path`` forget, ``S path
  sha256`` sent) and then, when anything is sent, a tar stream for ``tar -x``;
  prints each sent file's path, size, mtime_ns and st_mode as the host sees it
  (an empty header: nothing to do);
- ``where ROOT PATH``: JSON: whether PATH stays inside ROOT (its parent's
  realpath), what it is (file, dir, link or missing), its files and bytes;
- ``free-port``: a free TCP port on 127.0.0.1; ``port-open PORT``: exit 0 when
  something listens there.
"""

from __future__ import annotations

import marshal
import os
import sys

MANIFEST = ".simtui-manifest"
HEADER_DIGITS = 16
SEP = "\0"


def safe(path: str) -> str:
    """A path relative to the root that stays under it (sync only writes those)."""
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or "" in parts or "." in parts:
        raise SystemExit(f"refusing path {path!r}")
    return path


def updated(manifest: dict, gone: list, sent: dict, stats: dict) -> dict:
    """The manifest after a sync: ``gone`` paths out, each sent file in with its
    stats on the host and its sha256. Both ends apply it: the caller keeps a copy."""
    dropped = set(gone)
    kept = {path: entry for path, entry in manifest.items() if path not in dropped}
    for path, sha in sent.items():
        kept[path] = stats[path] + [sha]
    return kept


def _load(root: str) -> tuple:
    try:
        with open(os.path.join(root, MANIFEST), "rb") as file:
            saved = marshal.loads(file.read())  # marshal.load(file) reads it in small pieces: slow
        return saved["version"], saved["files"]
    except (OSError, ValueError, EOFError, TypeError, KeyError):
        return "", {}


def _stat(path: str) -> list:
    st = os.lstat(path)
    return [st.st_size, st.st_mtime_ns, st.st_mode]


def _matches(prefix: str, path: str, entry: list) -> bool:
    try:
        return _stat(prefix + path) == entry[:3]
    except OSError:
        return False


def state(root: str, known: str) -> str:
    version, files = _load(root)
    prefix = root + os.sep
    stale = [path for path, entry in files.items() if not _matches(prefix, path, entry)]
    if known and version == known:
        fields = ["same"]
    else:
        fields = ["full", version]
        for path, entry in files.items():
            fields += [path, *map(str, entry)]
        fields.append("")
    return SEP.join(fields + stale) + SEP


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            raise SystemExit("the header ended early")
        data += more
    return data


def _remove(root: str, path: str) -> None:
    """Remove a synced file, then the folders it leaves empty (never the root)."""
    full = os.path.join(root, path)
    if os.path.islink(full) or (os.path.lexists(full) and not os.path.isdir(full)):
        os.remove(full)
    folder = os.path.dirname(path)
    while folder:
        try:
            os.rmdir(os.path.join(root, folder))
        except OSError:
            break
        folder = os.path.dirname(folder)


def _untar(root: str) -> int:
    """``tar -x`` of the rest of stdin into ``root``; its exit status."""
    argv = ["tar", "-x", "-p", "--no-same-owner", "-f", "-", "-C", root]
    try:
        pid = os.posix_spawnp("tar", argv, os.environ)  # no subprocess module: it costs its import
    except OSError as err:
        raise SystemExit(f"cannot run tar: {err}") from None
    status = os.waitpid(pid, 0)[1]
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def receive(root: str) -> str:
    """Apply a sync: deletions first (a file may become a folder), then the tar
    stream on stdin, then the manifest. Exits non-zero when tar fails. An empty
    header (the caller started this early, then found nothing to do) changes nothing."""
    size = int(_read_exactly(0, HEADER_DIGITS))
    if not size:
        return ""
    version, *fields = os.fsdecode(_read_exactly(0, size)).split(SEP)
    os.makedirs(root, exist_ok=True)
    gone, sent = [], {}
    records = iter(fields)
    for kind in records:
        path = safe(next(records))
        if kind == "S":
            sent[path] = next(records)
        else:
            gone.append(path)
            if kind == "D":
                _remove(root, path)
    failed = _untar(root) if sent else 0
    stats = {} if failed else {path: _stat(os.path.join(root, path)) for path in sent}
    files = updated(_load(root)[1], gone, {} if failed else sent, stats)
    tmp = os.path.join(root, MANIFEST + ".tmp")
    with open(tmp, "wb") as file:
        file.write(marshal.dumps({"version": "" if failed else version, "files": files}))
    os.replace(tmp, os.path.join(root, MANIFEST))
    if failed:
        raise SystemExit(failed)
    out = []
    for path, entry in stats.items():
        out += [path, *map(str, entry)]
    return SEP.join(out) + SEP if out else ""


def where(root: str, path: str) -> str:
    """Also how many files (and links) and bytes are there: what a pull should get."""
    import json

    real_root = os.path.realpath(root)
    target = os.path.join(real_root, path)
    parent = os.path.realpath(os.path.dirname(target))
    inside = parent == real_root or parent.startswith(real_root + os.sep)
    if os.path.islink(target):
        kind = "link"
    elif os.path.isdir(target):
        kind = "dir"
    else:
        kind = "file" if os.path.exists(target) else "missing"
    files, size = count_files(target) if inside and kind != "missing" else (0, 0)
    return json.dumps({"inside": inside, "kind": kind, "files": files, "bytes": size})


def count_files(target: str) -> tuple:
    if not os.path.isdir(target) or os.path.islink(target):
        return 1, os.lstat(target).st_size
    files = size = 0
    for folder, _, names in os.walk(target):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(folder, name)).st_size
    return files, size


def free_port() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def port_open(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def main(argv: list) -> None:
    command, args = argv[0], argv[1:]
    if command == "state":
        out = state(*args)
    elif command == "receive":
        out = receive(args[0])
    elif command == "where":
        out = where(*args)
    elif command == "free-port":
        out = free_port()
    elif command == "port-open":
        raise SystemExit(0 if port_open(int(args[0])) else 1)
    else:
        raise SystemExit(f"project_helper: unknown command {command!r}")
    sys.stdout.buffer.write(os.fsencode(out))


if __name__ == "__main__":
    main(sys.argv[1:])
