"""A host's resources as a stream: its HostFacts once, then a Sample per interval.

On an SSH host the agent (agent.py, with NVIDIA's pynvml.py beside it) lives in
``<cache_dir>/agent-<content hash>/``: one ``test -f`` tells whether this version
is there, and it is uploaded by SFTP only when it is not. It is started once per
connection and prints a JSON line per interval until the connection closes.
No other user can replace it: the check refuses a folder (or a folder above it)
that another user owns or can write into, and the upload makes it 0700 with
0600 files (a folder of ours with looser modes is closed and uploaded again). A
host without python3 runs the POSIX shell probe (agent_files/probe.sh), which
prints the same lines. The local machine is read in-process (local_sample.py).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from simtui import provenance
from simtui.errors import HostDisconnected, ProbeFailed
from simtui.hosts import agent
from simtui.hosts.base import Host, home_relative
from simtui.model import HostFacts, Sample

SHELL_PROBE = Path(__file__).with_name("agent_files") / "probe.sh"

# $1 = the agent's path, $2 = SAFE. The last line out says what to do: no-python3,
# ready, missing, or "unsafe WHY".
CHECK = 'command -v python3 >/dev/null 2>&1 || { echo no-python3; exit; }; exec python3 -S -c "$2" "$1"'
# $1 = the agent's path. Another user must not be able to put their code where we run
# ours: every existing folder above the agent's is ours or root's and writable by
# no one else (unless sticky, like /tmp); the agent's folder and its files are ours.
# Looser modes on what is ours are closed and the agent uploaded again ("missing").
SAFE = r"""
import os, stat, sys
agent = os.path.abspath(sys.argv[1])
folder = os.path.dirname(agent)
me, my_group = os.geteuid(), os.getegid()
def out(word):
    print(word)
    sys.exit(0)
above = os.path.dirname(folder)
while True:
    try:
        st = os.stat(above)
    except OSError:
        st = None
    if st is not None:
        sticky = st.st_mode & stat.S_ISVTX
        if st.st_uid not in (me, 0):
            out("unsafe %s belongs to another user (uid %d)" % (above, st.st_uid))
        if st.st_mode & stat.S_IWOTH and not sticky:
            out("unsafe every user can write into %s" % above)
        if st.st_mode & stat.S_IWGRP and not sticky and st.st_gid != my_group:
            out("unsafe group %d can write into %s" % (st.st_gid, above))
    if above == os.path.dirname(above):
        break
    above = os.path.dirname(above)
try:
    st = os.lstat(folder)
except OSError:
    out("missing")
if not stat.S_ISDIR(st.st_mode) or st.st_uid != me:
    out("unsafe %s is not a folder of this user's" % folder)
loose = st.st_mode & 0o077
for name in os.listdir(folder):
    entry = os.lstat(os.path.join(folder, name))
    if entry.st_uid != me:
        out("unsafe %s belongs to another user" % os.path.join(folder, name))
    loose = loose or (stat.S_ISREG(entry.st_mode) and entry.st_mode & 0o022)
if loose:
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), 0o600)
    os.chmod(folder, 0o700)
    out("missing")
out("ready" if os.path.isfile(agent) else "missing")
"""
# $1 = the agent folder: made 0700 (as are the folders above it that it makes).
MAKE_FOLDER = 'umask 077; mkdir -p "$1" && chmod 700 "$1"'
# $1 = upload suffix, $2 = agent folder, then the files: each "$f$1" becomes "$f" (the
# agent last, so that its presence means a whole upload); older agent folders go.
INSTALL = """
suffix=$1 folder=$2; shift 2
for f; do chmod 600 "$f$suffix" && mv -f "$f$suffix" "$f" || exit; done
for old in "${folder%/*}"/agent-*; do [ "$old" = "$folder" ] || rm -rf "$old"; done
"""


@functools.cache
def agent_bundle() -> tuple[str, tuple[Path, ...]]:
    """A short hash over the agent's files, and the files (agent.py last).

    provenance.py travels with it: job wrappers run it on the host (hosts.jobs)."""
    files = [Path(provenance.__file__), Path(agent.__file__)]
    pynvml = importlib.util.find_spec("pynvml")
    if pynvml is not None and pynvml.origin:
        files.insert(0, Path(pynvml.origin))
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16], tuple(files)


async def install_agent(host: Host) -> str | None:
    """The agent's path on the host, uploaded first if this version is not there;
    None when the host has no python3. Checked once per connection (``host.known``):
    forget_agent() where it turned out to be gone."""
    if "agent" not in host.known:
        host.known["agent"] = await _install_agent(host)
    return host.known["agent"]


def forget_agent(host: Host) -> None:
    host.known.pop("agent", None)


async def _install_agent(host: Host) -> str | None:
    digest, files = agent_bundle()
    folder = f"{home_relative(host.spec.cache_dir)}/agent-{digest}"
    targets = [f"{folder}/{file.name}" for file in files]
    lines = (await host.check(["sh", "-c", CHECK, "sh", targets[-1], SAFE])).strip().splitlines()
    answer = lines[-1] if lines else ""
    if answer == "no-python3":
        return None
    if answer.startswith("unsafe "):
        raise ProbeFailed(host.name, f"will not run the agent from {folder}: {answer.removeprefix('unsafe ')} "
                                     "(another user could replace it); set cache_dir to a folder only you can write")
    if answer != "ready":
        suffix = f".{secrets.token_hex(4)}.part"  # concurrent uploads never share a file
        await host.check(["sh", "-c", MAKE_FOLDER, "sh", folder])
        for file, target in zip(files, targets):
            await host.put(file, target + suffix)
        await host.check(["sh", "-c", INSTALL, "sh", suffix, folder, *targets])
    return targets[-1]


def probe_argv(agent_path: str | None, jobs_dir: str, interval: float) -> list[str]:
    """The command that prints the JSON lines: the agent, else the shell probe."""
    if agent_path is not None:
        return ["python3", agent_path, "--interval", f"{interval:g}", "--disk", jobs_dir]
    first = min(interval, agent.FIRST_DELTA)
    return ["sh", "-c", SHELL_PROBE.read_text(), "sh", f"{interval:g}", f"{first:g}", jobs_dir]


def parse_line(host: str, source: str, line: str) -> HostFacts | Sample | None:
    """One line of probe output; None for a line that is not a JSON object
    (a chatty login script). Raises ProbeFailed for an error or a bad record."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    if "error" in record:
        raise ProbeFailed(host, f"the {source} probe failed: {record['error']}")
    try:
        if "facts" in record:
            return HostFacts.from_dict(record["facts"])
        if "sample" in record:
            return Sample.from_dict({**record["sample"], "host": host, "source": source})
    except (TypeError, ValueError, AttributeError) as err:
        raise ProbeFailed(host, f"unreadable {source} probe output ({err}): {line[:200]}") from None
    return None


async def agent_readings(host: Host, interval: float) -> AsyncIterator[HostFacts | Sample]:
    """The host's HostFacts, then a Sample per ``interval`` seconds from the agent
    (else the shell probe), for as long as the caller iterates (the first sample
    comes after at most agent.FIRST_DELTA).

    ``host`` must be connected. Raises HostError when the connection drops and
    ProbeFailed when the probe stops or fails.
    """
    agent_path = await install_agent(host)
    source = "agent" if agent_path else "shell"
    argv = probe_argv(agent_path, host.spec.jobs_dir, interval)
    async with contextlib.aclosing(host.lines(argv)) as lines:
        async for line in lines:
            reading = parse_line(host.name, source, line)
            if reading is not None:
                yield reading
    if not host.connected:
        raise HostDisconnected(host.name, "connection lost")
    raise ProbeFailed(host.name, f"the {source} probe stopped")
