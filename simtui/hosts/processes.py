"""A host's processes, busiest first (what ``top`` shows): ``ps`` over any Host,
psutil in-process for this machine."""

from __future__ import annotations

import time

import psutil

from simtui.errors import CommandFailed
from simtui.hosts.base import Host
from simtui.model import ProcessInfo

# procps (Linux) first: `user:32` keeps long user names whole; then the POSIX columns.
PS_FORMS = (
    ["ps", "-eo", "pid=,user:32=,pcpu=,rss=,etime=,args="],
    ["ps", "-eo", "pid=,user=,pcpu=,rss=,etime=,args="],
)


def parse_etime(text: str) -> float:
    """``[[dd-]hh:]mm:ss`` -> seconds."""
    days, _, clock = text.rpartition("-")
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds + (int(days) * 86400 if days else 0)


def parse_ps(text: str) -> list[ProcessInfo]:
    """Rows of ``ps -o pid=,user=,pcpu=,rss=,etime=,args=``; a line it cannot read is skipped."""
    found = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        try:
            pid, user, cpu, rss, elapsed = int(parts[0]), parts[1], float(parts[2]), int(parts[3]), parse_etime(parts[4])
        except ValueError:
            continue
        found.append(ProcessInfo(pid, user, cpu, rss * 1024, elapsed, parts[5] if len(parts) > 5 else ""))
    return found


def local_processes() -> list[ProcessInfo]:
    """This machine's processes. psutil keeps its Process objects between calls,
    so CPU % covers the time since the last call (0 on the first)."""
    now = time.time()
    found = []
    attrs = ["pid", "username", "cpu_percent", "memory_info", "create_time", "cmdline", "name"]
    for proc in psutil.process_iter(attrs):
        info = proc.info
        memory = info["memory_info"]
        command = " ".join(info["cmdline"] or ()) or f"[{info['name']}]"
        found.append(ProcessInfo(
            info["pid"], info["username"] or "?", info["cpu_percent"] or 0.0, memory.rss if memory else 0,
            max(now - (info["create_time"] or now), 0.0), command,
        ))
    return found


async def ps_processes(host: Host, limit: int = 1000) -> list[ProcessInfo]:
    """A host's processes from ``ps`` (see Host.processes)."""
    for argv in PS_FORMS:
        result = await host.run(argv)
        if result.ok:
            break
    else:
        raise CommandFailed(host.name, " ".join(argv), result.exit_status, result.stderr)
    return ranked(parse_ps(result.stdout), limit)


def ranked(found: list[ProcessInfo], limit: int) -> list[ProcessInfo]:
    """Busiest first: by CPU, then memory; at most ``limit``."""
    return sorted(found, key=lambda p: (-p.cpu, -p.rss, p.pid))[:limit]
