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

Modes: ``--private`` before the command (what the caller sends unless the host's
config says ``share = true``) sets ``umask 077`` and keeps others out: the project
folder, its projects folder (when it is the user's own, not sticky and not home)
and every folder sync makes are 0700, and each file sent there or copied into a
run's folder keeps only its owner's bits (``0755`` -> ``0700``, ``0644`` -> ``0600``); the
manifest holds those modes, and the caller compares them so (engine.sync). With
``--share`` (or no flag) modes travel whole (``tar -p``), as the user's umask allows.

Commands:

- ``state ROOT VERSION``: ``same`` (the caller's copy is current) or ``full``,
  the version and the manifest (path, size, mtime_ns, st_mode, sha256 a file),
  ended by an empty field; then the paths that no longer match it;
- ``receive ROOT``: stdin is frames, each its length in 16 ASCII digits, then
  it: a header (the new version and records: ``D path`` delete, ``F path``
  forget; an empty header: nothing to do, nothing follows), then the tar stream
  for ``tar -x`` in frames, ended by an empty one, then the trailer (``path
  sha256`` of each file in the tar: the caller hashes them as it reads them for
  the stream, so they come after it). Prints each sent file's size, mtime_ns
  and st_mode as the host sees it, in the trailer's order;
- ``run-tree ROOT LABEL``: make the run's own folder ``ROOT/.simtui-runs/LABEL``
  from a tree on stdin (the same header framing as ``receive``; records ``F path
  mode sha256`` and ``L path mode target``): files are copied from the synced
  files that the manifest says hold that content, each hashed again on the way;
  links are made; ``data`` and ``.venv`` of the project folder are linked in.
  Prints the paths it could not copy: ``run-fill`` then takes them as a tar
  stream (unframed). The folder is built under a temporary name and appears whole;
- ``where ROOT PATH``: JSON: whether PATH stays inside ROOT (its parent's
  realpath), what it is (file, dir, link or missing), its files and bytes;
- ``hashes ROOT PATH...``: JSON: each path's size and sha256 where it is a regular
  file inside ROOT (realpath), else ``missing``;
- ``free-port``: a free TCP port on 127.0.0.1; ``port-open PORT``: exit 0 when
  something listens there.
"""

from __future__ import annotations

import marshal
import os
import sys

MANIFEST = ".simtui-manifest"
RUNS = ".simtui-runs"
SHARED = ("data", ".venv")  # of the project folder, linked into each run's folder
HEADER_DIGITS = 16
SEP = "\0"
PRIVATE = False  # --private: owner-only modes (see above)
OWNER = 0o700  # the bits a file or folder keeps under --private


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


def _header() -> list:
    """The NUL-separated fields of a frame on stdin (see ``receive``)."""
    size = _frame_size()
    return os.fsdecode(_read_exactly(0, size)).split(SEP) if size else []


def _frame_size() -> int:
    return int(_read_exactly(0, HEADER_DIGITS))


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            raise SystemExit("the input ended early")
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


def _owner_only(path: str, st=None) -> int:
    """Under --private: drop the group and other bits (and setuid, setgid, sticky)
    of a file or folder (``st``: its lstat, when at hand); never of a link, whose
    mode means nothing. Returns the st_mode it has then."""
    mode = (st or os.lstat(path)).st_mode
    if PRIVATE and (mode & 0o170000) != 0o120000 and mode & 0o7777 & ~OWNER:
        os.chmod(path, mode & OWNER)
        return mode & 0o170000 | mode & OWNER
    return mode


def _close(root: str) -> None:
    """Under --private: the project folder 0700, and its projects folder too when it
    is the user's own, not sticky (a shared /tmp-like folder) and not home."""
    if not PRIVATE:
        return
    _owner_only(root)
    parent = os.path.dirname(os.path.abspath(root))
    try:
        st = os.stat(parent)
    except OSError:
        return
    home = os.path.abspath(os.path.expanduser("~"))
    if st.st_uid == os.geteuid() and not st.st_mode & 0o1000 and parent not in (home, os.sep):
        _owner_only(parent)


def _untar(root: str) -> int:
    """``tar -x`` of the rest of stdin into ``root``; its exit status."""
    return _status(_spawn_tar(root, 0))


def _untar_frames(root: str) -> int:
    """``tar -x`` into ``root`` of the framed tar stream on stdin (nothing when it
    is empty); tar's exit status, never 0 where tar stopped reading before the
    stream's end (the rest of stdin is then left unread)."""
    size = _frame_size()
    if not size:
        return 0
    reader, writer = os.pipe()
    pid = _spawn_tar(root, reader)
    try:
        while size:
            _pass_on(size, writer)
            size = _frame_size()
    except BrokenPipeError:
        os.close(writer)
        return _status(pid) or 1
    os.close(writer)
    return _status(pid)


def _spawn_tar(root: str, stdin: int) -> int:
    """Start ``tar -x`` into ``root`` reading ``stdin`` (closed here). Modes are
    kept (``-p``) unless --private: then the umask (077) takes their group and
    other bits; _owner_only makes sure where tar runs as root and keeps them anyway."""
    argv = ["tar", "-x", "--no-same-owner", "-f", "-", "-C", root]
    if not PRIVATE:
        argv.insert(2, "-p")
    moves = [(os.POSIX_SPAWN_DUP2, stdin, 0)] if stdin else []
    try:  # no subprocess module: it costs its import
        return os.posix_spawnp("tar", argv, os.environ, file_actions=moves)
    except OSError as err:
        raise SystemExit(f"cannot run tar: {err}") from None
    finally:
        if stdin:
            os.close(stdin)


def _status(pid: int) -> int:
    status = os.waitpid(pid, 0)[1]
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _pass_on(size: int, out: int) -> None:
    """``size`` bytes from stdin to ``out``."""
    while size:
        data = memoryview(os.read(0, min(size, 1 << 20)))
        if not data:
            raise SystemExit("the input ended early")
        size -= len(data)
        while data:
            data = data[os.write(out, data):]


def receive(root: str) -> str:
    """Apply a sync: deletions first (a file may become a folder), then the tar
    stream, then the manifest. Exits non-zero when tar fails. An empty header (the
    caller started this early, then found nothing to do) changes nothing."""
    fields = _header()
    if not fields:
        return ""
    version, *fields = fields
    os.makedirs(root, exist_ok=True)
    _close(root)
    gone = []
    records = iter(fields)
    for kind in records:
        path = safe(next(records))
        gone.append(path)
        if kind == "D":
            _remove(root, path)
    failed = _untar_frames(root)
    sent = {} if failed else _trailer()
    stats = {path: _settled(root, path) for path in sent}
    if PRIVATE:
        _private_folders(root, sent)
    files = updated(_load(root)[1], gone, sent, stats)
    tmp = os.path.join(root, MANIFEST + ".tmp")
    with open(tmp, "wb") as file:
        file.write(marshal.dumps({"version": "" if failed else version, "files": files}))
    os.replace(tmp, os.path.join(root, MANIFEST))
    if failed:
        raise SystemExit(failed)
    return "".join(f"{size}{SEP}{mtime}{SEP}{mode}{SEP}" for size, mtime, mode in stats.values())


def _trailer() -> dict:
    """path -> sha256 of each file the tar stream held."""
    records = iter(_header())
    return {safe(path): next(records) for path in records}


def _settled(root: str, path: str) -> list:
    """A file just extracted, owner-only under --private (see _owner_only): its
    ``[size, mtime_ns, st_mode]``, from one ``lstat``."""
    full = os.path.join(root, path)
    st = os.lstat(full)
    return [st.st_size, st.st_mtime_ns, _owner_only(full, st)]


def _private_folders(root: str, paths) -> None:
    """Owner-only modes for the folders under ``root`` that hold these paths."""
    folders = set()
    for path in paths:
        folder = os.path.dirname(path)
        while folder and folder not in folders:
            folders.add(folder)
            folder = os.path.dirname(folder)
    for folder in folders:
        _owner_only(os.path.join(root, folder))


def _run_dirs(root: str, label: str) -> tuple:
    """The run's folder while it is made, and once whole."""
    if not label.isalnum():
        raise SystemExit(f"bad run label {label!r}")
    runs = os.path.join(root, RUNS)
    return os.path.join(runs, f".{label}.part"), os.path.join(runs, label)


def _copy(source: str, target: str, sha: str) -> bool:
    """Copy ``source`` to ``target`` when its content has this sha256, keeping its mtime."""
    import hashlib  # here, as json and socket below: sync's commands start without them

    digest = hashlib.sha256()
    tmp = target + ".simtui-tmp"
    try:
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() != sha:
            os.remove(tmp)
            return False
        st = os.stat(source)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, target)
        return True
    except OSError:
        if os.path.lexists(tmp):
            os.remove(tmp)
        return False


def run_tree(root: str, label: str) -> str:
    part, final = _run_dirs(root, label)
    if os.path.lexists(final):  # made by an earlier try whose answer was lost: the same tree
        _header()
        return ""
    fields = _header()
    files = _load(root)[1]
    by_sha = {}
    for path, entry in files.items():
        by_sha.setdefault(entry[3], []).append(path)
    prefix = root + os.sep
    os.makedirs(part, exist_ok=True)
    _close(root)
    _owner_only(os.path.dirname(part))
    missing, tops = [], set()
    records = iter(fields)
    for kind in records:
        path, mode, value = safe(next(records)), int(next(records)), next(records)
        tops.add(path.split("/")[0])
        target = os.path.join(part, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):  # left by an interrupted try
            os.remove(target)
        if kind == "L":
            os.symlink(value, target)
        elif any(_matches(prefix, src, files[src]) and _copy(prefix + src, target, value)
                 for src in by_sha.get(value, ())):
            os.chmod(target, mode & (OWNER if PRIVATE else 0o7777))
        else:
            missing.append(path)
    for name in SHARED:
        if name not in tops and os.path.lexists(os.path.join(root, name)):
            if not os.path.lexists(os.path.join(part, name)):
                os.symlink(os.path.join("..", "..", name), os.path.join(part, name))
    if not missing:
        os.rename(part, final)
        return ""
    return SEP.join(missing) + SEP


def run_fill(root: str, label: str) -> None:
    """The files ``run-tree`` could not copy, as a tar stream on stdin; then the folder is whole."""
    part, final = _run_dirs(root, label)
    failed = _untar(part)
    if failed:
        raise SystemExit(failed)
    if PRIVATE:
        for folder, dirs, names in os.walk(part):
            for name in dirs + names:
                _owner_only(os.path.join(folder, name))
    os.rename(part, final)


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


def hashes(root: str, paths: list) -> str:
    import hashlib
    import json
    import stat

    real_root = os.path.realpath(root)
    found = []
    for path in paths:
        full = os.path.join(real_root, safe(path))
        real = os.path.realpath(full)
        try:
            st = os.lstat(full)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode) or not real.startswith(real_root + os.sep):
            found.append({"path": path, "missing": True})
            continue
        digest = hashlib.sha256()
        with open(full, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
        found.append({"path": path, "size": st.st_size, "sha256": digest.hexdigest()})
    return json.dumps(found)


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
    global PRIVATE
    if argv and argv[0] in ("--private", "--share"):
        PRIVATE = argv[0] == "--private"
        argv = argv[1:]
    if PRIVATE:
        os.umask(0o077)
    command, args = argv[0], argv[1:]
    if command == "state":
        out = state(*args)
    elif command == "receive":
        out = receive(args[0])
    elif command == "run-tree":
        out = run_tree(*args)
    elif command == "run-fill":
        out = ""
        run_fill(*args)
    elif command == "where":
        out = where(*args)
    elif command == "hashes":
        out = hashes(args[0], args[1:])
    elif command == "free-port":
        out = free_port()
    elif command == "port-open":
        raise SystemExit(0 if port_open(int(args[0])) else 1)
    else:
        raise SystemExit(f"project_helper: unknown command {command!r}")
    sys.stdout.buffer.write(os.fsencode(out))


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(0)  # the answer is out: tearing the interpreter down (a manifest of many files) only delays it
