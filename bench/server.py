"""Server: what going through the long-lived local server costs, on real sshd.

1. launch: a whole ``simtui run --host H -- true`` process (the server already up
   and its connection to H warm) against a new ``ssh H 'setsid nohup true
   >/dev/null 2>&1 &'`` process (target <= 1.5x) and the same multiplexed over an
   established ControlMaster, OpenSSH's cheapest warm launch; a whole ``simtui run
   --host H --follow -- true`` against ``ssh H true``; and how long after the job's
   exit file appears ``run --follow`` returns (target 100 ms).
2. follow: a whole ``simtui run --host local --follow -- true`` process, median and
   p90. Target: median < 300 ms. Runs from a scratch folder (no git checkout: the
   cost of git provenance is the records bench's).
3. idle cost: the server's CPU with N sshd hosts (plus ``local``) sampled each
   second (``[defaults] interval = 1.0``) while "the dashboard is attached": this
   process subscribes to samples through ``simtui.client.Client``. The server's
   user+system CPU seconds (psutil, pid from ``$SIMTUI_HOME/server.pid``) over
   ``--seconds``, once every host has sent a sample, as % of one core. Default runs:
   8 and 50 hosts (one lab of 50 sshd on 127.0.0.60+; the 8-host run configures its
   first 8). Target: < 10% at 50 hosts.

Each part starts the server with ``simtui server start`` and stops it with
``simtui server stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from bench.common import Timings, arguments, clean_hosts, measure, ms, ratio_line, simtui_home, sshd_lab
from bench.ssh import openssh

LAUNCH_TARGET = 1.5  # simtui run / ssh over a ControlMaster
FOLLOW_TARGET = 0.300  # seconds, median of a whole `simtui run --follow -- true` on local
LAG_TARGET = 0.100  # seconds from the job's exit file to `simtui run --follow` returning
CPU_TARGET = 10.0  # % of one core
CPU_TARGET_HOSTS = 50
DEFAULT_HOSTS = (8, CPU_TARGET_HOSTS)
BENCH_JOBS = ".simtui-bench-server/jobs"  # on each host, under home


def simtui(config: Path, *args: str, cwd: Path | None = None) -> str:
    """One whole ``python -m simtui`` process; its stdout. A failure says why."""
    proc = subprocess.run([sys.executable, "-m", "simtui", "--config", str(config), *args],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"simtui {' '.join(args)} exited {proc.returncode}: {err}")
    return proc.stdout.decode(errors="replace")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _pid_file(home: Path) -> int | None:
    try:
        return int((home / "server.pid").read_text().strip())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def serving(config: Path, home: Path) -> Iterator[int]:
    """The server of ``home`` up (``simtui server start``), its pid; stopped after
    (``simtui server stop``), and killed by pid should it outlive that."""
    pids: set[int] = set()
    try:
        printed = simtui(config, "server", "start").strip()
        pid = _pid_file(home)
        if pid is None:
            raise RuntimeError(f"no {home / 'server.pid'} after `simtui server start` (it printed {printed!r})")
        pids.add(pid)
        yield pid
    finally:
        pids |= {p for p in (_pid_file(home),) if p is not None}
        try:
            simtui(config, "server", "stop")
        finally:
            for pid in pids:  # only servers of this bench's own home
                deadline = time.monotonic() + 5
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if _alive(pid):
                    print(f"bench: server {pid} outlived `simtui server stop`: killed")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


def write_config(path: Path, lab, hosts, interval: float | None = None) -> Path:
    """The lab's ``hosts``, their jobs in a folder of this bench's (removed at the end)."""
    head = f"[defaults]\njobs_dir = \"{BENCH_JOBS}\"\n" + (f"interval = {interval}\n" if interval is not None else "")
    path.write_text(head + "\n" + lab.config_toml(hosts=hosts))
    return path


# -- 1. launch and follow ------------------------------------------------------------------


def launch(lab, home: Path, reps: int) -> dict[str, Timings]:
    """Whole ``simtui run`` processes on H (the server up, its connection warm), and
    their OpenSSH anchors: a new ``ssh`` process, and one over a ControlMaster."""
    host = lab.hosts[0]
    config = write_config(home / "config-launch.toml", lab, [host])
    scratch = home / "scratch"
    scratch.mkdir(exist_ok=True)
    detached = "setsid nohup true >/dev/null 2>&1 &"
    got: dict[str, Timings] = {}

    def ssh(*argv: str):
        return lambda: subprocess.run([*argv], check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def timed(label: str, fn) -> Timings:
        got[label] = asyncio.run(measure(label, fn, reps))
        return got[label]

    with tempfile.TemporaryDirectory(prefix="simtui-bench-cm-") as tmp:
        control = ("-o", f"ControlPath={Path(tmp) / 'cm'}")
        # -f: returns once the master is authenticated and its socket listens.
        subprocess.run(openssh(host, *control, "-o", "ControlMaster=yes", "-o", "ControlPersist=60", "-f", "-N"),
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            with serving(config, home):
                simtui(config, "run", "--host", host.name, "--", "true", cwd=scratch)  # warm-up: the connection is up
                timed("simtui run", lambda: simtui(config, "run", "--host", host.name, "--", "true", cwd=scratch))
                timed("simtui run --follow", lambda: simtui(config, "run", "--host", host.name, "--follow", "--",
                                                            "true", cwd=scratch))
                lags = []

                def follow_and_lag() -> None:
                    record = json.loads(simtui(config, "run", "--host", host.name, "--follow", "--json", "--",
                                               "sh", "-c", "sleep 0.3", cwd=scratch))
                    lags.append(time.time() - record["ended"])

                asyncio.run(measure("follow lag", follow_and_lag, reps))
                got["lag"] = Timings("--follow returns after the exit file", tuple(lags))
            timed("ssh setsid nohup", ssh(*openssh(host), detached))
            timed("ssh mux setsid nohup", ssh(*openssh(host, *control), detached))
            timed("ssh true", ssh(*openssh(host), "true"))
        finally:
            subprocess.run(openssh(host, *control, "-O", "exit"), check=False, capture_output=True)
    return got


def follow(lab, home: Path, reps: int) -> Timings:
    """A whole ``simtui run --host local --follow -- true`` from a scratch folder."""
    config = write_config(home / "config-follow.toml", lab, [lab.hosts[0]])
    scratch = home / "scratch"
    scratch.mkdir(exist_ok=True)

    def run() -> None:
        simtui(config, "run", "--host", "local", "--follow", "--", "true", cwd=scratch)

    with serving(config, home):
        run()  # warm-up
        return asyncio.run(measure("simtui run --host local --follow -- true", run, reps))


# -- 3. the server's CPU with the dashboard attached ---------------------------------------


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def attached(config: Path, pid: int, hosts: list[str], seconds: float) -> dict[str, float]:
    """Subscribe to samples; once every host has sent one, the server's CPU over ``seconds``."""
    from simtui.client import Client

    wanted = set(hosts)
    sampled: set[str] = set()
    received = 0
    ready = asyncio.Event()
    start = time.perf_counter()
    async with Client(str(config), start=False) as client:
        if client.server_pid != pid:
            raise RuntimeError(f"the client reached server {client.server_pid}, not {pid}")

        async def consume() -> None:
            nonlocal received
            async for event in client.samples():  # what the dashboard does
                if event.get("sample") is not None:
                    received += 1
                    sampled.add(event["host"])
                    if wanted <= sampled:
                        ready.set()

        consumer = asyncio.create_task(consume())
        waiter = asyncio.create_task(ready.wait())
        try:
            done, _ = await asyncio.wait({consumer, waiter}, timeout=30 + 2 * len(hosts),
                                         return_when=asyncio.FIRST_COMPLETED)
            if consumer in done:
                consumer.result()
                raise RuntimeError("the sample stream ended")
            if waiter not in done:
                missing = ", ".join(sorted(wanted - sampled))
                raise TimeoutError(f"no sample from {missing} within {30 + 2 * len(hosts)} s")
            ready_s = time.perf_counter() - start
            cpu0, own0, count0, t0 = _cpu(pid), time.process_time(), received, time.perf_counter()
            await asyncio.sleep(seconds)
            cpu1, own1, count1, t1 = _cpu(pid), time.process_time(), received, time.perf_counter()
            if consumer.done():
                consumer.result()
                raise RuntimeError("the sample stream ended during the window")
        finally:
            for task in (consumer, waiter):
                task.cancel()
            await asyncio.gather(consumer, waiter, return_exceptions=True)
    wall = t1 - t0
    return {"ready_s": ready_s, "wall": wall, "cpu_s": cpu1 - cpu0, "percent": 100 * (cpu1 - cpu0) / wall,
            "client_percent": 100 * (own1 - own0) / wall, "rate": (count1 - count0) / wall}


def server_cpu(lab, home: Path, count: int, seconds: float) -> float:
    hosts = lab.hosts[:count]
    config = write_config(home / f"config-cpu-{count}.toml", lab, hosts, interval=1.0)
    with serving(config, home) as pid:
        got = asyncio.run(attached(config, pid, [h.name for h in hosts], seconds))
    print(f"server CPU, {count:>3} sshd hosts + local, 1 s samples, 1 subscriber: "
          f"{got['percent']:5.1f}% of one core  ({got['cpu_s']:.2f} s CPU in {got['wall']:.1f} s; "
          f"{got['rate']:.1f} samples/s received; every host sampled {got['ready_s']:.1f} s after subscribing; "
          f"the subscriber itself {got['client_percent']:.1f}%)", flush=True)
    return got["percent"]


# -- the entry ---------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "met" if met else "missed"


def main(argv: list[str] | None = None) -> None:
    parser = arguments("server", __doc__)
    parser.add_argument("--reps", type=int, default=20, help="whole simtui processes per launch case")
    parser.add_argument("--hosts", type=int, default=None,
                        help=f"sshd hosts for the CPU part (default: runs of {' and '.join(map(str, DEFAULT_HOSTS))})")
    parser.add_argument("--seconds", type=float, default=20.0, help="CPU window per host count")
    parser.add_argument("--smoke", action="store_true", help="a tiny run: every row, 2 reps, 2 hosts, 2 s")
    options = parser.parse_args(argv)
    if options.smoke:
        options.reps, options.hosts, options.seconds = 2, 2, 2.0
    counts = (options.hosts,) if options.hosts else DEFAULT_HOSTS
    if min(counts) < 1 or options.reps < 1 or options.seconds <= 0:
        parser.error("--hosts, --reps and --seconds must be positive")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="simtui-bench-server-") as tmp, sshd_lab(max(counts)) as lab, \
            simtui_home(Path(tmp)) as home:
        try:
            print(f"{len(lab.hosts)} sshd hosts on 127.0.0.60+ ({time.perf_counter() - started:.1f} s to start); "
                  f"{options.reps} reps; CPU window {options.seconds:g} s", flush=True)
            got = launch(lab, home, options.reps)
            for timing in got.values():
                print(timing.line())
            rows = [("run --host H -- true / ssh H 'setsid nohup true'", "simtui run", "ssh setsid nohup"),
                    ("run --host H -- true / the same over a ControlMaster", "simtui run", "ssh mux setsid nohup"),
                    ("run --host H --follow -- true / ssh H true", "simtui run --follow", "ssh true")]
            for what, ours, theirs in rows:
                print(ratio_line(what, got[ours], got[theirs]), flush=True)
            followed = follow(lab, home, options.reps)
            print(followed.line(), flush=True)
            cpu = {count: server_cpu(lab, home, count, options.seconds) for count in counts}
        finally:
            clean_hosts(lab, BENCH_JOBS.split("/")[0])

    launch_ratio = got["simtui run"].median / got["ssh setsid nohup"].median
    lag = got["lag"]
    print("targets:")
    print(f"  launch: simtui run / ssh H 'setsid nohup true' (a new ssh) <= {LAUNCH_TARGET:g}x: "
          f"{launch_ratio:.2f}x  {verdict(launch_ratio <= LAUNCH_TARGET)}")
    print(f"  --follow returns within {LAG_TARGET * 1000:.0f} ms of the exit file: median "
          f"{ms(lag.median).strip()}, p90 {ms(lag.percentile(90)).strip()}  {verdict(lag.median <= LAG_TARGET)}")
    print(f"  follow: simtui run --host local --follow -- true, median < {FOLLOW_TARGET * 1000:.0f} ms: "
          f"{ms(followed.median).strip()} (p90 {ms(followed.percentile(90)).strip()})  "
          f"{verdict(followed.median < FOLLOW_TARGET)}")
    if CPU_TARGET_HOSTS in cpu:
        percent = cpu[CPU_TARGET_HOSTS]
        print(f"  server CPU at {CPU_TARGET_HOSTS} sshd hosts, 1 s samples, dashboard attached < {CPU_TARGET:g}% "
              f"of one core: {percent:.1f}%  {verdict(percent < CPU_TARGET)}")
    else:
        ran = ", ".join(f"{percent:.1f}% at {count}" for count, percent in cpu.items())
        print(f"  server CPU at {CPU_TARGET_HOSTS} sshd hosts < {CPU_TARGET:g}% of one core: not measured "
              f"(--hosts {options.hosts}; {ran})")


if __name__ == "__main__":
    main()
