"""Slurm: a ``kind = "slurm"`` host on a real single-node cluster (tests/slurmd.py),
reached through an sshd login host on loopback (127.0.0.140 and .141, one user each).

1. submit to running, each rep both sides (jobs ask ``--mem 100M``; every job is
   scancelled before the next, so each starts on an empty node):
   - simtui: a whole ``simtui run --host lab --mem 100M -- sleep 30`` process (the
     server up, its connection warm from an earlier run, ``[defaults] interval``
     0.5 s), then whole ``simtui show LABEL --json`` processes until the record says
     ``running``;
   - anchor: a new ``ssh login sbatch --parsable --mem=100M --wrap 'sleep 30'``, then
     new ``ssh login squeue -h -j ID -o %T`` processes until it says RUNNING.
   Both poll back to back, ``--poll`` seconds apart. Also submit to label: the
   ``run`` process alone against the ``ssh sbatch`` process alone.
2. polling N jobs (200; ``--jobs``): N held jobs (``sbatch --hold``, named
   ``simtui-<12 hex>``, each with its folder in the jobs dir, as simtui's pending
   jobs have) of the second login user; then, ``--polls`` times each, one
   ``SlurmHost.job_status(jobs_dir, labels)`` on an open connection, one ``squeue -h
   -u USER`` on the same kind of open connection (``host.run``) and one new ``ssh
   login squeue -h -u USER`` process: wall time, the bytes of stdout each returns,
   and slurmctld's CPU per poll (its process CPU clock before and after the polls,
   slurmctld's idle rate over the same time subtracted, the quieter of a window
   before and one after). One more row splits
   job_status: its script given no folders (its squeue alone, same connection).

The cluster is used as it is when it runs, else brought up (``SlurmCluster.up()``)
and down again at the end. Needs root and slurm-wlm: without them this prints why
and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from bench.common import TESTS, Timings, arguments, clean_hosts, ms, ratio_line, simtui_home, sshd_lab
from bench.server import serving, simtui
from bench.ssh import openssh

FIRST_ADDRESS = 140  # login hosts 127.0.0.140 (part 1) and .141 (part 2), users simtui-t138/t139
JOBS = ".simtui-bench-slurm/jobs"  # on each login host, under home: removed at the end
CACHE = ".simtui-bench-slurm/cache"  # simtui's helpers there, likewise
MEM = "100M"  # without it a job takes all of the node's memory: one job at a time
UP_STATES = {"idle", "mixed", "allocated", "completing"}

# $1 = the jobs dir; then labels. Per label: its folder with an empty out.log, a
# held job named simtui-LABEL, its id in slurm_job (what simtui's SBATCH leaves).
HELD = r"""
jd=$1; shift
for l do
    d=$jd/$l
    mkdir -p "$d" && : > "$d/out.log" || exit 1
    id=$(sbatch --parsable --hold --mem=""" + MEM + r""" --output=/dev/null --job-name="simtui-$l" \
              --wrap true) || exit 1
    echo "${id%%;*}" > "$d/slurm_job"
done
"""


def _tests():
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))


# -- the cluster -------------------------------------------------------------------------


def _running(cluster) -> bool:
    """Whether a cluster answers here with its node up (one some test started counts)."""
    names = {p.info["name"] for p in psutil.process_iter(["name"])}
    if not {"slurmctld", "slurmd", "munged"} <= names:
        return False
    states = cluster.node_states()
    return bool(states) and all(s.rstrip("*~#!%$@^-+") in UP_STATES for s in states)


@contextlib.contextmanager
def cluster_at(root: Path) -> Iterator[tuple[object, bool]]:
    """The running cluster, else a fresh one (stopped at the end); whether this started it."""
    _tests()
    from slurmd import SlurmCluster

    cluster = SlurmCluster(root)
    started = not _running(cluster)
    if started:
        cluster.up()
    ours = _identity()
    try:
        yield cluster, started
    finally:
        if started and _identity() == ours:
            cluster.down()
        elif started:  # someone else's up() replaced it meanwhile: theirs stays up
            print("bench: the cluster this bench started was replaced meanwhile; left the new one running")
            shutil.rmtree(cluster.spool, ignore_errors=True)


def _identity() -> tuple[int, float] | None:
    proc = slurmctld()
    try:
        return (proc.pid, proc.create_time()) if proc else None
    except psutil.NoSuchProcess:
        return None


def slurmctld() -> psutil.Process | None:
    return next((p for p in psutil.process_iter(["name"]) if p.info["name"] == "slurmctld"), None)


def slurmctld_cpu() -> Callable[[], float]:
    """slurmctld's CPU seconds so far, as a function: its process CPU clock (ns, all
    threads, dead ones too) where Linux lets us read it, else psutil's (10 ms ticks)."""
    proc = slurmctld()
    if proc is None:
        raise RuntimeError("no slurmctld process")
    clock = ((~proc.pid) << 3) | 2  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
    try:
        time.clock_gettime(clock)
        return lambda: time.clock_gettime(clock)
    except OSError:
        return lambda: sum(proc.cpu_times()[:2])


def clear(cluster, user: str, timeout: float = 30.0) -> None:
    """scancel every job of ``user`` (as root) and wait until squeue lists none."""
    cluster.run("scancel", "-u", user, check=False)
    deadline = time.monotonic() + timeout
    while cluster.run("squeue", "-h", "-u", user, "-o", "%i", check=False).split():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the jobs of {user} are still in the queue {timeout:g} s after scancel")
        time.sleep(0.05)


def own_home(name: str) -> None:
    """The job user exists and owns its home (jobs and their folders go there)."""
    _tests()
    from sshd import _ensure_user

    user = _ensure_user(name)
    home = Path(user.pw_dir)
    home.mkdir(parents=True, exist_ok=True)
    if home.stat().st_uid != user.pw_uid:
        shutil.chown(home, user.pw_uid, user.pw_gid)


def write_config(path: Path, lab, host, interval: float) -> Path:
    path.write_text(
        f'[defaults]\ninterval = {interval}\njobs_dir = "{JOBS}"\ncache_dir = "~/{CACHE}"\n\n'
        f'[local]\nenabled = false\n\n'
        f'[[hosts]]\nname = "lab"\nkind = "slurm"\naddress = "{host.address}"\nport = {host.port}\n'
        f'user = "{host.user}"\nidentity = "{lab.client_key}"\nknown_hosts = "{lab.known_hosts}"\n'
        f'ssh_config = "{lab.ssh_config}"\n')
    return path


def ssh(host, command: str) -> str:
    """A new OpenSSH process running ``command`` on the login host; its stdout."""
    done = subprocess.run([*openssh(host), command], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)
    if done.returncode:
        raise RuntimeError(f"ssh {host.address} {command!r} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


# -- 1. submit to running ------------------------------------------------------------------


def until(what: str, poll: Callable[[], bool], gap: float, polls: list[float], timeout: float = 60.0,
          why: Callable[[], str] | None = None) -> None:
    """Call ``poll`` back to back (``gap`` apart) until it is true; each call's seconds into ``polls``."""
    deadline = time.monotonic() + timeout
    while True:
        start = time.perf_counter()
        done = poll()
        polls.append(time.perf_counter() - start)
        if done:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s" + (f"\n{why()}" if why else ""))
        time.sleep(gap)


def submit_to_running(cluster, lab, home: Path, reps: int, interval: float, gap: float) -> dict[str, list[float]]:
    host = lab.hosts[0]
    config = write_config(home / "config-submit.toml", lab, host, interval)
    scratch = home / "scratch"
    scratch.mkdir(exist_ok=True)
    got: dict[str, list[float]] = {k: [] for k in ("run", "running", "began", "show", "show polls",
                                                   "sbatch", "RUNNING", "squeue", "squeue polls")}

    last: dict = {}

    def state(label: str) -> str:
        last.update(json.loads(simtui(config, "show", label, "--json")))
        return last["state"]

    daemon = _identity()

    def diagnosis(label: str | None) -> str:
        """What the record and the cluster say, for a timeout."""
        lines = [f"the record's state: {state(label)}"] if label else []
        if daemon is None or _identity() != daemon:
            lines.append("slurmctld was restarted meanwhile: someone else brought this machine's one cluster "
                         "down and up (the Slurm tests?); run the bench again when they are done")
        lines.append("squeue: " + cluster.run("squeue", "-o", "%i %j %u %T %r", check=False).strip())
        return "\n".join(lines)

    def ours(keep: bool = True) -> None:
        start, epoch = time.perf_counter(), time.time()
        label = simtui(config, "run", "--host", "lab", "--mem", MEM, "--", "sleep", "30", cwd=scratch).split()[-1]
        launched = time.perf_counter() - start
        polls: list[float] = []
        until(f"simtui job {label} running", lambda: state(label) == "running", gap, polls,
              why=lambda: diagnosis(label))
        running = time.perf_counter() - start
        began = last.get("started")  # when the job's command started there (its folder's started file)
        clear(cluster, host.user)
        with contextlib.suppress(TimeoutError):  # the server sees the cancel: the record settles
            until(f"simtui job {label} settled", lambda: state(label) != "running", gap, [], timeout=15)
        if keep:
            got["run"].append(launched)
            got["running"].append(running)
            got["show"] += polls
            got["show polls"].append(len(polls))
            if began is not None:
                got["began"].append(began - epoch)

    def theirs(keep: bool = True) -> None:
        start = time.perf_counter()
        job = ssh(host, f"sbatch --parsable --mem={MEM} --output=/dev/null --job-name=bench-anchor "
                        "--wrap 'sleep 30'").strip().split(";")[0]
        launched = time.perf_counter() - start
        polls: list[float] = []
        until(f"Slurm job {job} RUNNING", lambda: ssh(host, f"squeue -h -j {job} -o %T").strip() == "RUNNING",
              gap, polls, why=lambda: diagnosis(None))
        running = time.perf_counter() - start
        clear(cluster, host.user)
        if keep:
            got["sbatch"].append(launched)
            got["RUNNING"].append(running)
            got["squeue"] += polls
            got["squeue polls"].append(len(polls))

    with serving(config, home):
        ours(keep=False)  # warm-up: the server's connection is up, the cluster has run a job of this user
        theirs(keep=False)
        for rep in range(reps):  # alternate which goes first: drift hits both alike
            for side in ((ours, theirs) if rep % 2 == 0 else (theirs, ours)):
                side()
    return got


# -- 2. polling N jobs ---------------------------------------------------------------------


async def polling(cluster, lab, home: Path, count: int, polls: int, idle_s: float) -> list[dict]:
    from simtui.config import load_config
    from simtui.hosts import jobs, open_host
    from simtui.hosts.slurm import STATUS

    login = lab.hosts[1]
    config = write_config(home / "config-poll.toml", lab, login, 2.0)
    labels = [secrets.token_hex(6) for _ in range(count)]
    started = time.perf_counter()
    ssh(login, shlex.join(["sh", "-c", HELD, "sh", JOBS, *labels]))
    print(f"{count} held jobs submitted (one ssh, sbatch --hold each) in {time.perf_counter() - started:.1f} s",
          flush=True)
    cpu = slurmctld_cpu()
    spec = load_config(str(config)).host("lab")
    with warnings.catch_warnings():  # importing asyncssh: cryptography's DSA deprecation, not ours
        warnings.filterwarnings("ignore", message=".*DSA is deprecated")
        host = open_host(spec)
    async with host:
        user = await host.user()
        seen = await host.job_status(JOBS, labels)
        queued = sum(1 for job in seen.values() if job.alive and job.queued)
        if queued != count:
            raise RuntimeError(f"job_status saw {queued} of the {count} held jobs queued")
        status_bytes = len((await host.run(["sh", "-c", STATUS, "sh", user,
                                            *(jobs.job_dir(JOBS, label) for label in labels)])).stdout.encode())
        queue_bytes = len((await host.check(["sh", "-c", STATUS, "sh", user])).encode())
        squeue_bytes = len((await host.run(["squeue", "-h", "-u", user])).stdout.encode())
        ssh_bytes = len(ssh(login, f"squeue -h -u {user}").encode())

        async def job_status() -> None:
            await host.job_status(JOBS, labels)

        async def queue_only() -> None:
            await host.check(["sh", "-c", STATUS, "sh", user])

        async def squeue_warm() -> None:
            await host.run(["squeue", "-h", "-u", user])

        async def squeue_new() -> None:
            await asyncio.to_thread(ssh, login, f"squeue -h -u {user}")

        async def idle() -> float:
            cpu0, t0 = cpu(), time.perf_counter()
            await asyncio.sleep(idle_s)
            return (cpu() - cpu0) / (time.perf_counter() - t0)

        await asyncio.sleep(idle_s)  # slurmctld is busy a while after the submissions (saving state)
        idle_before = await idle()
        rows = []
        for what, fn, size in (
                (f"SlurmHost.job_status, {count} jobs (open connection)", job_status, status_bytes),
                ("squeue -h -u USER (open connection)", squeue_warm, squeue_bytes),
                ("  job_status's script, 0 folders: its squeue", queue_only, queue_bytes),
                ("ssh login squeue -h -u USER (new process)", squeue_new, ssh_bytes)):
            await fn()  # warm-up
            seconds = []
            cpu0, t0 = cpu(), time.perf_counter()
            for _ in range(polls):
                start = time.perf_counter()
                await fn()
                seconds.append(time.perf_counter() - start)
            wall, used = time.perf_counter() - t0, cpu() - cpu0
            rows.append({"timings": Timings(what, tuple(seconds)), "bytes": size, "cpu": used, "wall": wall})
        idle_after = await idle()
    idle_rate = min(idle_before, idle_after)  # the quieter: a window can catch a periodic burst
    for row in rows:
        row["cpu_net"] = max(row["cpu"] - idle_rate * row["wall"], 0.0) / polls
        row["cpu"] /= polls
    print(f"slurmctld idle: {idle_before * 1000:.2f} and {idle_after * 1000:.2f} ms CPU per second (over {idle_s:g} s "
          f"before and after the polls, {count} held jobs queued)")
    return rows


# -- the entry ---------------------------------------------------------------------------


def line(label: str, values: list[float]) -> str:
    return Timings(label, tuple(values)).line()


def main(argv: list[str] | None = None) -> None:
    parser = arguments("slurm", __doc__)
    parser.add_argument("--reps", type=int, default=10, help="submissions per side in part 1")
    parser.add_argument("--jobs", type=int, default=200, help="held jobs polled in part 2")
    parser.add_argument("--polls", type=int, default=50, help="polls per case in part 2")
    parser.add_argument("--interval", type=float, default=0.5, help="the simtui config's [defaults] interval")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between the bench's polls (both sides)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run: every row, 1 rep, 5 jobs, 3 polls")
    options = parser.parse_args(argv)
    if options.smoke:
        options.reps, options.jobs, options.polls = 1, 5, 3
    if min(options.reps, options.jobs, options.polls) < 1 or options.interval <= 0 or options.poll < 0:
        parser.error("--reps, --jobs, --polls and --interval must be positive")
    _tests()
    from slurmd import SlurmCluster

    reason = SlurmCluster.available()
    if reason:
        print(f"slurm: not run: {reason}")
        return

    for i in range(2):
        own_home(f"simtui-t{FIRST_ADDRESS - 2 + i}")
    with tempfile.TemporaryDirectory(prefix="simtui-bench-slurm-") as tmp, \
            sshd_lab(2, first_address=FIRST_ADDRESS) as lab, simtui_home(Path(tmp) / "home") as home:
        home.mkdir()
        with cluster_at(Path(tmp) / "cluster") as (cluster, started):
            users = [h.user for h in lab.hosts]
            try:
                for user in users:
                    clear(cluster, user)
                print(f"Slurm cluster: {'started by this bench' if started else 'already running, used as is'}; "
                      f"login hosts {', '.join(h.address for h in lab.hosts)}; {options.reps} reps; "
                      f"{options.jobs} jobs x {options.polls} polls", flush=True)
                got = submit_to_running(cluster, lab, home, options.reps, options.interval, options.poll)
                rows = asyncio.run(polling(cluster, lab, home, options.jobs, options.polls,
                                           0.5 if options.smoke else 3.0))
            finally:
                for user in users:
                    with contextlib.suppress(Exception):
                        clear(cluster, user)
                clean_hosts(lab, JOBS.split("/")[0])

    print(f"\n1. submit to running (interval {options.interval:g} s; polls {options.poll * 1000:.0f} ms apart):")
    print("   simtui side: a whole `simtui run` process (the local server, warm; it submits over its open "
          "connection: no handshake), then whole `simtui show --json` processes (each reads the local store); "
          "the server learns RUNNING from its own squeue each interval")
    print("   anchor side: a new `ssh login sbatch` process (a full SSH handshake), then new `ssh login squeue -j` "
          "processes (a full handshake each)")
    for label, key in (("simtui run (to the label)", "run"), ("ssh sbatch (to the job id)", "sbatch"),
                       ("simtui run + show polls, to running", "running"), ("ssh sbatch + squeue, to RUNNING",
                                                                            "RUNNING"),
                       ("one simtui show --json", "show"), ("one ssh squeue -j", "squeue")):
        print("   " + line(label, got[key]))
    if got["began"]:
        print("   " + line("the job's command started (record)", got["began"]))
    print(f"   polls to see it running: simtui show {statistics.median(got['show polls']):g}, "
          f"ssh squeue {statistics.median(got['squeue polls']):g} (medians; each side's count includes the one "
          "that saw it)")
    timing = {key: Timings(key, tuple(got[key])) for key in ("run", "sbatch", "running", "RUNNING")}
    print("   " + ratio_line("submit to running: simtui / ssh", timing["running"], timing["RUNNING"]))
    print("   " + ratio_line("submit to label: simtui run / ssh sbatch", timing["run"], timing["sbatch"]))

    print(f"\n2. one poll of the user's jobs, {options.jobs} held jobs (slurmctld CPU: its process CPU clock; "
          "net = less its idle rate, the quieter window's, over the same time):")
    print("   job_status: one command on the open connection (a new channel, no handshake): squeue --states=all "
          "-u USER, then per job folder two shell reads (slurm_job, exit), then one stat for every out.log, exit and started; squeue rows: "
          "one command on the same kind of connection, or a new ssh process (a full handshake)")
    for row in rows:
        print(f"   {row['timings'].line()}  {row['bytes']:7d} B  slurmctld {row['cpu'] * 1000:6.2f} ms CPU "
              f"(net {row['cpu_net'] * 1000:5.2f} ms) per poll")
    status, warm, _, new = (row["timings"] for row in rows)
    print("   " + ratio_line("job_status / squeue, both on an open connection", status, warm))
    print("   " + ratio_line("job_status (open) / ssh squeue (new process)", status, new))
    print(f"   bytes: job_status {rows[0]['bytes']} / squeue {rows[1]['bytes']} = "
          f"{rows[0]['bytes'] / max(rows[1]['bytes'], 1):.2f}x; slurmctld CPU per poll (net): "
          f"job_status {ms(rows[0]['cpu_net']).strip()}, squeue {ms(rows[1]['cpu_net']).strip()}, "
          f"ssh squeue {ms(rows[3]['cpu_net']).strip()}")


if __name__ == "__main__":
    main(sys.argv[1:])
