"""Sampling cost on real sshd hosts: simtui's agent (one process per connection,
one JSON line per interval) against a new probe command per poll.

The probe command a poll-per-command tool runs is PROBE (four /proc files and a
``df``). Host CPU per sample:

- agent: its own CPU time over N samples, at the default interval (2 s, as the
  server samples) and at 50 ms, and the ratio of the two: utime+stime from
  /proc/PID/stat (in 10 ms ticks: over N samples, a resolution of 10/N ms) and its
  exact run time (/proc/PID/task/*/schedstat, the same clock without the ticks);
  then with what the connection's sshd processes spent relaying its lines;
- exec per poll on a warm asyncssh connection: the login shell and PROBE's
  processes (their rusage, collected by a wrapper that runs ``$SHELL -c PROBE``
  as sshd does and reaps it) plus the connection's sshd processes' run time;
- a new ``ssh`` per poll: the same processes plus sshd's per-connection work (the
  listener's reaped children; sshd does not reap the session shell into them).

Wall time to sample 8 hosts: for the agents, from the tick (every agent samples
on multiples of the interval) to the 8th line received; for the baselines, 8
polls started at once until all 8 answered; and the one-shot ``probe_hosts``.
``--smoke``: a quick run (under 20 s) of every row, with few samples."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import psutil

from bench.common import arguments, clean_hosts, Timings, measure, ms, sshd_lab
from bench.ssh import openssh
from simtui.config import Defaults
from simtui.engine.sampler import probe_hosts
from simtui.hosts import Host, open_host
from simtui.model import Sample

PROBE = "cat /proc/stat /proc/meminfo /proc/loadavg /proc/uptime; df -Pk ."
REAP = (
    "import os, resource, subprocess, sys\n"
    "subprocess.run([os.environ.get('SHELL', 'sh'), '-c', sys.argv[1]], stdout=subprocess.DEVNULL)\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(usage.ru_utime + usage.ru_stime)\n"
)
TICK = os.sysconf("SC_CLK_TCK")
AGENT_CACHE = Defaults().cache_dir.removeprefix("~/")  # where the agent was uploaded: removed at the end
TARGET_CPU = 0.5e-3  # seconds of host CPU per sample, at most
TARGET_WALL = 50e-3  # seconds to sample 8 hosts, under
TARGET_RATIO = 2.0  # an agent's CPU per sample at the default interval, against at 50 ms: at most


# -- host CPU counters -----------------------------------------------------------


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: field 3 (state) is index 0."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def own_ticks(pid: int) -> int:
    fields = stat_fields(pid)
    return int(fields[11]) + int(fields[12])  # utime + stime


def reaped_ticks(pid: int) -> int:
    fields = stat_fields(pid)
    return int(fields[13]) + int(fields[14])  # cutime + cstime


def run_ns(pids: Iterable[int]) -> int:
    """Exact CPU time of the processes' threads so far (schedstat), in ns."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    return total


def sshd_sessions(sshd_host) -> list[psutil.Process]:
    """The per-connection sshd processes under a host's listener."""
    return [p for p in psutil.Process(sshd_host.proc.pid).children(recursive=True) if p.name() == "sshd"]


def agent_process(sshd_host) -> psutil.Process:
    (agent,) = [p for p in psutil.Process(sshd_host.proc.pid).children(recursive=True)
                if any(part.endswith("/agent.py") for part in p.cmdline())]
    return agent


# -- host CPU per sample -------------------------------------------------------------


async def agent_cpu(sshd_host, samples: int, interval: float) -> dict[str, float]:
    """Seconds of host CPU per sample of an agent sampling every ``interval``."""
    async with open_host(sshd_host.spec) as host, contextlib.aclosing(host.readings(interval)) as stream:
        await anext(stream)  # facts
        await anext(stream)  # start-up is done: count from here
        agent = agent_process(sshd_host).pid
        sessions = [p.pid for p in sshd_sessions(sshd_host)]
        before = own_ticks(agent), run_ns([agent]), run_ns(sessions)
        for _ in range(samples):
            await anext(stream)
        after = own_ticks(agent), run_ns([agent]), run_ns(sessions)
    ticks, agent_ns, sessions_ns = (b - a for a, b in zip(before, after))
    return {
        "utime+stime": ticks / TICK / samples,
        "schedstat": agent_ns / 1e9 / samples,
        "with its sshd relay": (agent_ns + sessions_ns) / 1e9 / samples,
    }


async def poll_cpu(sshd_host, polls: int) -> dict[str, float]:
    async with open_host(sshd_host.spec) as host:
        reaped = [float(await host.check(["python3", "-c", REAP, PROBE])) for _ in range(polls)]
        probe = statistics.mean(reaped)
        sessions = [p.pid for p in sshd_sessions(sshd_host)]
        before = run_ns(sessions)
        for _ in range(polls):
            await host.check(["sh", "-c", PROBE])
        exec_sshd = (run_ns(sessions) - before) / 1e9 / polls
    listener = sshd_host.proc.pid
    before = reaped_ticks(listener)
    for _ in range(polls):
        proc = await asyncio.create_subprocess_exec(*openssh(sshd_host), PROBE, stdout=asyncio.subprocess.DEVNULL)
        await proc.wait()
    ssh_sshd = (reaped_ticks(listener) - before) / TICK / polls
    return {
        "PROBE's processes alone": probe,
        "exec per poll on a warm connection": probe + exec_sshd,
        "new ssh per poll": probe + ssh_sshd,
    }


# -- wall time for many hosts -----------------------------------------------------------


async def agent_rounds(hosts: list[Host], rounds: int, interval: float) -> list[float]:
    """Seconds from each tick to the last host's line of that tick."""
    arrivals: dict[int, list[float]] = defaultdict(list)

    async def follow(host: Host) -> None:
        async with contextlib.aclosing(host.readings(interval)) as stream:
            await anext(stream)  # facts
            await anext(stream)  # the first sample comes before the first tick
            for _ in range(rounds):
                sample = await anext(stream)
                assert isinstance(sample, Sample)
                arrivals[round(sample.time / interval)].append(time.time())

    await asyncio.gather(*(follow(h) for h in hosts))
    return [max(times) - tick * interval for tick, times in arrivals.items() if len(times) == len(hosts)]


async def wall_times(lab, rounds: int, interval: float) -> list[Timings]:
    specs = [h.spec for h in lab.hosts]
    cold = await measure("probe_hosts() one-shot (connect+agent)", lambda: probe_hosts(specs, 20), max(rounds // 4, 3))

    async def ssh_round() -> None:
        procs = [await asyncio.create_subprocess_exec(*openssh(h), PROBE, stdout=asyncio.subprocess.DEVNULL)
                 for h in lab.hosts]
        await asyncio.gather(*(p.wait() for p in procs))

    new_ssh = await measure("new ssh per poll", ssh_round, rounds)
    hosts = [open_host(s) for s in specs]
    try:
        await asyncio.gather(*(h.connect() for h in hosts))
        warm = await measure("exec per poll on warm connections",
                             lambda: asyncio.gather(*(h.check(["sh", "-c", PROBE]) for h in hosts)), rounds)
        agent = Timings("agents: tick -> last host's line", tuple(await agent_rounds(hosts, rounds, interval)))
    finally:
        await asyncio.gather(*(h.close() for h in hosts))
    return [agent, warm, new_ssh, cold]


# -- report -------------------------------------------------------------------------------


def report_agent(default: dict[str, float], fast: dict[str, float], counts: tuple[int, int],
                 intervals: tuple[float, float]) -> None:
    print(f"agent CPU per sample at the default interval ({intervals[0]:g} s, n={counts[0]}) against at "
          f"{intervals[1] * 1000:g} ms (n={counts[1]}); target: within {TARGET_RATIO:g}x")
    for what in default:
        ratio = f"{default[what] / fast[what]:6.2f}x" if fast[what] else "    n/a"
        print(f"  {what:<22} {ms(default[what])}  vs {ms(fast[what])}  {ratio}")
    print(f"  (utime+stime counts 10 ms ticks: +-{10 / counts[0]:.2f} and +-{10 / counts[1]:.2f} ms a sample "
          "here; schedstat is the same clock, exact)")


def report_cpu(cpu: dict[str, float], agent: float) -> None:
    print(f"host CPU per sample (target <= {ms(TARGET_CPU).strip()}; agent: schedstat at the default interval)")
    for what, seconds in cpu.items():
        print(f"  {what:<40} {ms(seconds)}  {seconds / TARGET_CPU:7.2f}x target  {seconds / agent:8.1f}x agent")


def report_wall(walls: list[Timings], hosts: int) -> None:
    agent = walls[0].median
    print(f"wall time to sample {hosts} hosts (target < {ms(TARGET_WALL).strip()})")
    for timing in walls:
        print(f"  {timing.line()}  {timing.median / TARGET_WALL:6.2f}x target  {timing.median / agent:7.1f}x agent")


def main(argv: list[str] | None = None) -> None:
    parser = arguments("sampling", __doc__)
    parser.add_argument("--samples", type=int, default=30, help="agent samples at the default interval")
    parser.add_argument("--fast-samples", type=int, default=200, help="agent samples at --fast-interval")
    parser.add_argument("--fast-interval", type=float, default=0.05, help="the short interval (s)")
    parser.add_argument("--polls", type=int, default=20, help="polls per baseline for its CPU cost")
    parser.add_argument("--hosts", type=int, default=8, help="hosts sampled at once")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of sampling every host")
    parser.add_argument("--smoke", action="store_true", help="a quick run (< 20 s) of every row")
    options = parser.parse_args(argv)
    if options.smoke:
        options.samples, options.fast_samples, options.polls, options.hosts, options.rounds = 3, 20, 3, 2, 3
    intervals = (Defaults().interval, options.fast_interval)
    with sshd_lab(options.hosts, first_address=70) as lab:
        print(f"{options.hosts} sshd hosts on 127.0.0.70+; probe per poll: {PROBE}")

        async def run() -> tuple[dict[str, float], dict[str, float], dict[str, float], list[Timings]]:
            default = await agent_cpu(lab.hosts[0], options.samples, intervals[0])
            fast = await agent_cpu(lab.hosts[0], options.fast_samples, intervals[1])
            polls = await poll_cpu(lab.hosts[1], options.polls)
            return default, fast, polls, await wall_times(lab, options.rounds, interval=0.25)

        try:
            default, fast, polls, walls = asyncio.run(run())
        finally:
            clean_hosts(lab, AGENT_CACHE)
    report_agent(default, fast, (options.samples, options.fast_samples), intervals)
    agent = default["schedstat"]
    cpu = {f"agent at {intervals[0]:g} s": agent, f"agent at {intervals[1] * 1000:g} ms": fast["schedstat"],
           "agent at the default, with its sshd relay": default["with its sshd relay"], **polls}
    report_cpu(cpu, agent)
    report_wall(walls, options.hosts)


if __name__ == "__main__":
    main()
