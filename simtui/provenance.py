"""What a run came from and what it made: git state, environment, file hashes, label.

Pure functions over the standard library, cheap enough for every launch: git
costs at most three ``git`` processes, the package list is read without parsing
whole metadata files. This file also runs ON the host, beside the agent (see
simtui.hosts.probe), so that a record holds what the job saw: the job's wrapper
(simtui.hosts.jobs) calls ``python3 provenance.py start|end|monitor``. It must
stay stdlib-only, import nothing from simtui, and run on Python 3.8.
"""

from __future__ import annotations

import errno
import hashlib
import json
import mimetypes
import os
import platform
import secrets
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# -- git ------------------------------------------------------------------------


def git_info(path: str | Path) -> dict[str, Any] | None:
    """The git state of the checkout holding ``path``, or None outside one (or without git).

    Keys: ``remote`` (URL of the upstream's remote, else origin, else None),
    ``branch`` (None when detached), ``commit`` (None before the first commit),
    ``dirty`` (tracked changes or untracked files), ``diff`` (``git diff HEAD``,
    "" when clean), ``changed`` and ``untracked`` (paths, as ``git status`` shows them).
    """
    status = _git(path, "status", "--porcelain=v2", "--branch", "-z")
    if status is None:
        return None
    headers: dict[str, str] = {}
    changed: list[str] = []
    untracked: list[str] = []
    fields = iter(status.split("\0"))
    for entry in fields:
        if entry.startswith("# "):
            key, _, value = entry[2:].partition(" ")
            headers[key] = value
        elif entry.startswith("? "):
            untracked.append(entry[2:])
        elif entry[:2] in ("1 ", "2 ", "u "):
            changed.append(entry.split(" ", 10 if entry[0] == "u" else 8 if entry[0] == "1" else 9)[-1])
            if entry.startswith("2 "):
                next(fields, None)  # a rename's original path
    commit = headers.get("branch.oid")
    commit = None if commit in (None, "(initial)") else commit
    branch = headers.get("branch.head")
    upstream = headers.get("branch.upstream", "origin/").split("/", 1)[0]
    remote = (_git(path, "config", "--get", f"remote.{upstream}.url") or "").strip()
    diff = _git(path, "diff", "HEAD", "--no-color", "--no-ext-diff") if changed and commit else ""
    return {
        "remote": remote or None,
        "branch": None if branch == "(detached)" else branch,
        "commit": commit,
        "dirty": bool(changed or untracked),
        "diff": diff or "",
        "changed": changed,
        "untracked": untracked,
    }


def _git(path: str | Path, *args: str) -> str | None:
    """stdout of ``git -C path ARGS``, or None when git is missing or fails."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # status must not take the index lock
    try:
        done = subprocess.run(["git", "-C", str(path), *args], capture_output=True, env=env, check=False)
    except OSError:
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", errors="replace")


# -- environment ------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """This interpreter and machine: python, OS, CPU, memory, installed packages.

    ``packages`` maps distribution names to versions; ``packages_sha256``
    identifies the whole list (see packages_sha256).
    """
    packages = installed_packages()
    return {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "implementation": platform.python_implementation(),
        "os": platform.system(),
        "os_release": _os_release(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "hostname": socket.gethostname(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory": _memory_total(),
        "packages": packages,
        "packages_sha256": packages_sha256(packages),
    }


def installed_packages() -> dict[str, str]:
    """Name -> version of every distribution on sys.path (the first one found wins,
    as for imports), reading only the header lines of each metadata file."""
    from importlib import metadata  # here: costs 15 ms to import, and only capture needs it

    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        name, version = _name_version(text)
        if name:
            packages.setdefault(name, version or "")
    return dict(sorted(packages.items(), key=lambda item: item[0].lower()))


def _name_version(text: str) -> tuple[str | None, str | None]:
    name = version = None
    for line in text.splitlines():
        if not line:
            break  # end of the headers
        if line.startswith("Name:"):
            name = line[5:].strip()
        elif line.startswith("Version:"):
            version = line[8:].strip()
    return name, version


def packages_sha256(packages: dict[str, str]) -> str:
    """sha256 of ``name==version`` lines sorted by name: equal lists, equal hashes."""
    lines = "".join(f"{name}=={version}\n" for name, version in sorted(packages.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_total() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _os_release() -> str | None:
    try:
        with open("/etc/os-release", encoding="utf-8") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform(terse=True) or None


# -- files and labels ---------------------------------------------------------------


def hash_file(path: str | Path, deadline: float | None = None) -> str | None:
    """sha256 hex digest of a file, read in 1 MiB chunks; None when
    ``time.monotonic()`` reaches ``deadline`` (if given) before the end."""
    with open(path, "rb") as file:
        return _digest(file, deadline)


def _digest(file: Any, deadline: float | None) -> str | None:
    digest = hashlib.sha256()
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            return None
        chunk = file.read(1 << 20)
        if not chunk:
            return digest.hexdigest()
        digest.update(chunk)


def file_info(path: str | Path) -> dict[str, Any]:
    """``{path, size, sha256, media_type}`` of one input or output file
    (media_type from the file name; None when unknown)."""
    return {
        "path": str(path),
        "size": os.stat(path).st_size,
        "sha256": hash_file(path),
        "media_type": mimetypes.guess_type(str(path))[0],
    }


def make_label(launch_content: dict[str, Any], nonce: str | None = None) -> str:
    """12 hex chars of the sha256 of the launch content as canonical JSON.

    A random ``nonce`` joins the content, so identical launches get distinct
    labels; pass one to get the same label again.
    """
    content = {"launch": launch_content, "nonce": secrets.token_hex(8) if nonce is None else nonce}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# -- on the host: what the job saw and what it made -----------------------------------

MAX_OUTPUTS = 1000  # files listed per run; past that the list says how many it left out
MAX_WALK = 100_000  # directory entries looked at when searching for outputs
MAX_HASHED = 2 << 30  # bytes hashed per run; larger outputs are listed without a hash
MAX_SECONDS = 60.0  # time spent looking for and hashing outputs
SKIPPED_DIRS = ("__pycache__", "node_modules")  # and every hidden folder (.git, .venv, ...)


def gpu_environment() -> dict[str, Any] | None:
    """GPU models, driver and CUDA version through the agent beside this file on a
    host (NVML, else nvidia-smi); None where there is no agent or no GPU."""
    try:
        import agent  # type: ignore[import-not-found]  # the host bundle's sibling
    except ImportError:
        return None
    gpus = agent.open_gpus()
    models = [gpu.get("name") for gpu in gpus.read()]
    if not models:
        return None
    return {**gpus.facts(), "models": models}


def start_capture(workdir: str, inputs: list[str]) -> dict[str, Any]:
    """What ``start`` prints: git of the workdir, the environment, the inputs."""
    env = environment()
    env["gpu"] = gpu_environment()
    return {
        "git": git_info(workdir),
        "environment": env,
        "inputs": [_input_info(workdir, path) for path in inputs],
    }


def _input_info(workdir: str, path: str) -> dict[str, Any]:
    try:
        return {**file_info(os.path.join(workdir, path)), "path": path}
    except OSError as err:
        return {"path": path, "error": err.strerror}


def outputs(root: str, since_ns: int, deadline_s: float = MAX_SECONDS) -> list[dict[str, Any]]:
    """Regular files under ``root`` changed at or after ``since_ns`` (st_mtime_ns),
    hidden folders skipped; symlinks, FIFOs, sockets and devices are never opened.
    Capped: see MAX_OUTPUTS, MAX_WALK, MAX_HASHED and ``deadline_s``; entries with
    ``path`` None say what the caps left out, one per cap."""
    deadline = time.monotonic() + deadline_s
    found: list[dict[str, Any]] = []
    seen = hashed = left_out = 0
    out_of_time = False
    for folder, dirs, files in os.walk(root):  # never follows symlinked folders
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        for name in sorted(files):
            if time.monotonic() >= deadline:
                out_of_time = True
                break
            seen += 1
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode) or info.st_mtime_ns < since_ns:
                continue
            if len(found) >= MAX_OUTPUTS:
                left_out += 1
                continue
            entry: dict[str, Any] = {"path": os.path.relpath(path, root), "size": info.st_size,
                                     "sha256": None, "media_type": mimetypes.guess_type(name)[0]}
            if hashed + info.st_size > MAX_HASHED:
                entry["note"] = "not hashed: over the cap"
            else:
                hashed += info.st_size
                try:
                    entry["sha256"] = _hash_regular(path, info, deadline)
                except FileNotFoundError:
                    continue  # gone since the lstat
                except _NotRegular:
                    continue  # replaced by something else since the lstat
                except OSError as err:
                    entry["error"] = err.strerror or str(err)
                else:
                    if entry["sha256"] is None:
                        entry["note"] = "not hashed: out of time"
            found.append(entry)
        if out_of_time or time.monotonic() >= deadline:
            found.append({"path": None, "note": f"stopped looking after {deadline_s:g} s"})
            break
        if seen > MAX_WALK:
            found.append({"path": None, "note": f"stopped looking after {MAX_WALK} files"})
            break
    if left_out:
        found.append({"path": None, "note": f"{left_out} more changed files not listed (cap {MAX_OUTPUTS})"})
    return found


class _NotRegular(OSError):
    pass


def _hash_regular(path: str, info: os.stat_result, deadline: float) -> str | None:
    """hash_file for a file that lstat found regular, opened so that a swap since
    (to a symlink, a FIFO, another file) cannot follow a link or block."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP:  # now a symlink
            raise _NotRegular(err.errno, err.strerror) from None
        raise
    with os.fdopen(fd, "rb") as file:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            raise _NotRegular("not the file found")
        return _digest(file, deadline)


def _session_usage(sid: int, skip: int) -> tuple[set[int], int]:
    """Pids of session ``sid`` (without ``skip``) and their summed RSS in bytes."""
    pids, rss = set(), 0
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == skip:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after "pid (comm)": state ppid pgrp session ...
            pids.add(int(entry))
            rss += int(fields[21]) * page
    return pids, rss


def monitor(sid: int, out: str, interval: float = 1.0) -> None:
    """Until session ``sid`` is gone (or TERM): keep the peak RSS of its processes
    and their peak GPU memory in ``out`` (JSON, rewritten whenever a peak grows)."""
    import signal
    import time

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        import agent  # type: ignore[import-not-found]

        gpus = agent.open_gpus()
    except ImportError:
        gpus = None
    peak = {"peak_rss": 0, "peak_gpu_mem": None}
    while True:
        pids, rss = _session_usage(sid, skip=os.getpid())
        if sid not in pids:
            return
        gpu_mem = None
        if gpus is not None:
            used = [p.get("used_mem") or 0 for g in gpus.read() for p in g.get("processes", ()) if p.get("pid") in pids]
            gpu_mem = sum(used) if used else None
        if rss > peak["peak_rss"] or (gpu_mem or 0) > (peak["peak_gpu_mem"] or 0):
            peak = {"peak_rss": max(rss, peak["peak_rss"]), "peak_gpu_mem": max(gpu_mem or 0, peak["peak_gpu_mem"] or 0) or None}
            with open(out + ".tmp", "w") as file:
                json.dump(peak, file)
            os.replace(out + ".tmp", out)
        time.sleep(interval)


def main(argv: list[str] | None = None) -> None:
    """``start WORKDIR COUNT [INPUT]...``, ``end ROOT SINCE_FILE``, ``monitor SID OUT``,
    ``git DIR``: JSON on stdout (monitor: into OUT)."""
    args = sys.argv[1:] if argv is None else argv
    command, rest = args[0], args[1:]
    if command == "start":  # WORKDIR COUNT ARG...: the first COUNT args are the inputs
        result: Any = start_capture(rest[0], rest[2 : 2 + int(rest[1])])
    elif command == "end":
        result = {"outputs": outputs(rest[0], os.stat(rest[1]).st_mtime_ns)}
    elif command == "git":
        result = git_info(rest[0])
    elif command == "monitor":
        return monitor(int(rest[0]), rest[1])
    else:
        raise SystemExit(f"provenance.py: unknown command {command!r}")
    json.dump(result, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
