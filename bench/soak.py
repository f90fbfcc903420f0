"""Soak: many short jobs through the queue while sshd drops and the server is killed.

Two sshd hosts (127.0.0.110+), each ``max_jobs = 4`` (8 slots), ``[defaults]
interval = 0.5``, a throwaway ``$SIMTUI_HOME``. ``--jobs`` (500) short jobs are
submitted through the library (``simtui.client.Client.run``, hosts alternating,
``--submitters`` requests at once); most of them queue behind ``max_jobs``. Job i
prints ``job <i> line <j>`` for j = 1..``--lines`` (50), spread over a random 0.1-1 s,
so every log can be checked byte for byte.

Chaos while they run:

- every ``--drop-every`` seconds (10) one random sshd stops, with every session it
  forked (``SshdHost.stop(sessions=True)``), and starts again a second later
  (``--drops`` caps how many);
- ``--kills`` times (3) the simtui server (``$SIMTUI_HOME/server.pid``) gets
  ``kill -9``, each when a random share (5-85%) of the jobs has finished. The client
  reconnects on its next request (a new server starts and must pick everything up);
  the bench keeps making requests while it waits, as an attached dashboard would.
  A submit whose answer the kill swallowed is looked up in the records (by its tag
  ``soak-<i>``) before it is sent again.

Then, once no record is queued, starting or running (or after ``--timeout``), the
server is stopped and every job checked:

- jobs lost: submitted jobs without a record that ``succeeded`` with exit code 0
  (no record, a launch that failed, a run that was lost or failed);
- lines lost / doubled: for every record whose job ran, its local log copy
  (``LocalLog(label).chunks()``) against the expected lines: expected lines missing,
  and lines there more often than expected (lines that are no job line at all, and
  copies whose order differs, are shown too); the job's ``out.log`` on its host (read
  from the lab user's home) is checked the same way, to tell the job from the copy;
- records not in their true state: records whose state (and exit code) differ from
  what the job's folder on the host says: an ``exit`` file (succeeded with 0, else
  failed or killed with that code), a live pid (running), a dead one (lost), no pid
  file or a cancelled one (never started: queued, starting, failed or killed).

Printed: jobs submitted, jobs lost, lines lost and doubled, records not in their
true state, the wall time (first submit to the last job's end) against the jobs'
run times (the records' ``duration``) summed and divided by the slots, and their
ratio; "met"/"missed" for each target of 0. Runs as root (the lab's users).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import signal
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.common import arguments, clean_hosts, simtui_home, sshd_lab

FIRST_ADDRESS = 110  # 127.0.0.110 and .111: away from the other entries' labs
HOSTS = 2
MAX_JOBS = 4  # per host
INTERVAL = 0.5
TAG = "soak"
RECONNECT_FOR = 60.0  # seconds to keep trying to reach (start) a server
PROGRESS_EVERY = 10.0  # seconds between progress lines
ACTIVE = ("queued", "starting", "running")

# Job i: argv[4] = i, argv[5] = lines, argv[6] = seconds in all. No shell in between.
JOB = """\
import sys, time
i, n, total = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
for j in range(1, n + 1):
    sys.stdout.write(f"job {i} line {j}\\n")
    sys.stdout.flush()
    time.sleep(total / n)
"""


def expected_lines(i: int, lines: int) -> list[str]:
    return [f"job {i} line {j}\n" for j in range(1, lines + 1)]


def job_argv(i: int, lines: int, seconds: float) -> list[str]:
    return ["python3", "-S", "-c", JOB, str(i), str(lines), f"{seconds:.3f}"]


def job_index(record) -> int | None:
    for tag in record.tags:
        if tag.startswith(f"{TAG}-") and tag[len(TAG) + 1:].isdigit():
            return int(tag[len(TAG) + 1:])
    return None


JOBS = ".simtui-bench-soak/jobs"  # on each host, under home: removed at the end


def write_config(path: Path, lab) -> Path:
    path.write_text(f"[defaults]\ninterval = {INTERVAL}\nmax_jobs = {MAX_JOBS}\njobs_dir = \"{JOBS}\"\n\n"
                    + lab.config_toml(local=False))
    return path


def verdict(met: bool) -> str:
    return "met" if met else "missed"


# -- comparing a log with what the job printed ----------------------------------------------


@dataclass
class LogCheck:
    lost: int = 0  # expected lines missing
    doubled: int = 0  # expected lines there more often than printed
    foreign: int = 0  # lines that are no line of this job (cut, mixed, other jobs')
    misordered: int = 0  # logs with the right lines in another order
    missing: int = 0  # logs not there at all
    bad: list[str] = field(default_factory=list)  # labels of logs that differ

    def add(self, label: str, data: bytes | None, expected: list[str]) -> None:
        if data is None:
            self.missing += 1
            self.lost += len(expected)
            self.bad.append(label)
            return
        got = data.decode("utf-8", "replace").splitlines(keepends=True)
        if got == expected:
            return
        self.bad.append(label)
        want, have = collections.Counter(expected), collections.Counter(got)
        self.lost += sum((want - have).values())
        self.doubled += sum(have[line] - want[line] for line in want if have[line] > want[line])
        self.foreign += sum(count for line, count in have.items() if line not in want)
        if want == have:
            self.misordered += 1


def read_local(label: str) -> bytes | None:
    from simtui.store.logs import LocalLog

    log = LocalLog(label)
    if not (log.path.exists() or log.gz_path.exists()):
        return None
    return b"".join(log.chunks())


# -- what the job's folder on its host says -------------------------------------------------


def job_folder(lab, record) -> Path | None:
    host = next((h for h in lab.hosts if h.name == record.host), None)
    if host is None:
        return None
    jobs_dir = record.jobs_dir or "~/.simtui/jobs"
    if jobs_dir == "~" or jobs_dir.startswith("~/"):
        base = host.home / jobs_dir[2:]
    elif jobs_dir.startswith("/"):
        base = Path(jobs_dir)
    else:
        base = host.home / jobs_dir
    return base / record.label


def _alive(pid: int, start: str) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = text[text.rindex(")") + 2:].split()
    return start in ("", "-") or (len(fields) > 19 and fields[19] == start)


def true_state(folder: Path | None) -> tuple[str, int | None]:
    """("ended", code), ("running", None), ("lost", None) or ("never started", None)."""
    if folder is None:
        return "never started", None
    try:
        pid_text = (folder / "pid").read_text()
    except OSError:
        return "never started", None
    if "cancelled" in pid_text:
        return "never started", None
    try:
        return "ended", int((folder / "exit").read_text().strip())
    except (OSError, ValueError):
        pass
    words = pid_text.split()
    if words and words[0].isdigit() and _alive(int(words[0]), words[1] if len(words) > 1 else ""):
        return "running", None
    return "lost", None


def why(record) -> str:
    """The last line of a record's log tail (a failed launch's reason), shortened."""
    lines = (record.log_tail or "").strip().splitlines()
    return f" ({lines[-1][:100]})" if lines else ""


def in_true_state(record, truth: tuple[str, int | None]) -> bool:
    state, code = record.state.value, truth[1]
    if truth[0] == "ended":
        if record.exit_code != code:
            return False
        return state == "succeeded" if code == 0 else state in ("failed", "killed")
    if truth[0] == "running":
        return state == "running"
    if truth[0] == "lost":
        return state == "lost"
    return state in ("queued", "starting", "failed", "killed")


# -- the soak --------------------------------------------------------------------------------


class Soak:
    def __init__(self, lab, config: Path, home: Path, options, rng: random.Random) -> None:
        self.lab, self.config, self.home, self.options, self.rng = lab, config, home, options, rng
        self.client = None
        self.store = None
        self.servers: set[int] = set()  # every server pid this bench reached
        self.kills: list[tuple[float, int]] = []  # (seconds in, pid)
        self.drops: list[tuple[float, str]] = []  # (seconds in, host)
        self.refused: list[tuple[int, str]] = []  # submits answered with an error
        self.errors: list[tuple[int, str]] = []  # other errors around a submit (it was tried again)
        self.resent = 0  # submits sent again after the server went away unanswered
        self.adopted = 0  # submits whose answer was lost but whose record was there
        self.restarts = 0  # reconnects that reached a new server
        self.submitted = 0
        self.submit_s = 0.0
        self.start = 0.0
        self.end = 0.0
        self.timed_out = False
        self.seconds = [rng.uniform(0.1, 1.0) for _ in range(options.jobs)]

    def now(self) -> float:
        return time.perf_counter() - self.start

    # -- the server connection

    def _seen(self) -> None:
        if self.client.server_pid is not None:
            if self.client.server_pid not in self.servers and self.servers:
                self.restarts += 1
            self.servers.add(self.client.server_pid)

    async def open(self) -> None:
        from simtui.client import Client

        self.client = Client(str(self.config))
        await self.client.open()
        self._seen()
        from simtui.store import Store

        self.store = Store.open()

    async def reconnect(self) -> None:
        from simtui.errors import SimtuiError

        deadline = time.monotonic() + RECONNECT_FOR
        while True:
            try:
                await self.client.reconnect()
                self._seen()
                return
            except SimtuiError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def request(self, make):
        """``make()``'s result; a server that went away is reached again and asked again."""
        from simtui.server.protocol import ServerGone

        for _ in range(20):
            if not self.client.connected:
                await self.reconnect()
            try:
                return await make()
            except ServerGone:
                await self.reconnect()
        return await make()

    # -- submitting

    def recorded(self, i: int) -> list:
        return list(self.store.find(tags=[f"{TAG}-{i}"], limit=None))

    async def submit(self, i: int) -> None:
        from simtui.errors import SimtuiError
        from simtui.server.protocol import RemoteError, ServerGone

        host = self.lab.hosts[i % len(self.lab.hosts)].name
        argv = job_argv(i, self.options.lines, self.seconds[i])
        for _ in range(20):
            if not self.client.connected:
                await self.reconnect()
            try:
                await self.client.run(argv, host=host, tags=[TAG, f"{TAG}-{i}"])
                return
            except ServerGone:
                await self.reconnect()
                if self.recorded(i):  # it got there before the server went
                    self.adopted += 1
                    return
                self.resent += 1
            except RemoteError as err:
                self.refused.append((i, str(err)))
                return
            except SimtuiError as err:  # e.g. a server that did not start in time: try again
                self.errors.append((i, f"{type(err).__name__}: {err}"))
                await asyncio.sleep(0.5)
                await self.reconnect()
                if self.recorded(i):
                    return
        self.refused.append((i, "gave up after 20 tries"))

    async def submit_all(self) -> None:
        gate = asyncio.Semaphore(self.options.submitters)

        async def one(i: int) -> None:
            async with gate:
                await self.submit(i)
                self.submitted += 1

        await asyncio.gather(*(one(i) for i in range(self.options.jobs)))
        self.submit_s = self.now()

    # -- chaos

    def server_pid(self) -> int | None:
        try:
            pid = int((self.home / "server.pid").read_text().strip())
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE or "server" not in proc.cmdline():
                return None
        except (OSError, ValueError, psutil.Error):
            return None
        return pid

    async def kill_server(self) -> bool:
        pid = self.server_pid()
        if pid is None:
            return False
        self.servers.add(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.kills.append((self.now(), pid))
        print(f"  {self.now():6.1f} s  kill -9 server {pid}", flush=True)
        with contextlib.suppress(psutil.Error):
            await asyncio.to_thread(psutil.Process(pid).wait, 10)
        return True

    async def drop_loop(self, done: asyncio.Event) -> None:
        while self.options.drops is None or len(self.drops) < self.options.drops:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.options.drop_every)
            if done.is_set():
                return
            host = self.rng.choice(self.lab.hosts)
            self.drops.append((self.now(), host.name))
            print(f"  {self.now():6.1f} s  sshd of {host.name} stopped (sessions too)", flush=True)
            await asyncio.to_thread(host.stop, True)
            try:
                await asyncio.sleep(1.0)
            finally:
                await asyncio.to_thread(host.start)
            print(f"  {self.now():6.1f} s  sshd of {host.name} started", flush=True)

    # -- waiting

    def states(self) -> collections.Counter:
        from simtui.errors import SimtuiError

        try:
            rows = self.store.conn.execute("select state, count(*) from records group by state").fetchall()
        except (SimtuiError, sqlite3.Error):  # busy for a moment: look again on the next beat
            return collections.Counter()
        return collections.Counter({state: count for state, count in rows})

    async def wait(self, submitting: asyncio.Task) -> None:
        """Until every job is submitted and no record is active, killing the server at
        random shares of finished jobs; a request a beat keeps a server up."""
        n = self.options.jobs
        thresholds = sorted(self.rng.uniform(0.05, 0.85) * n for _ in range(self.options.kills))
        deadline = time.monotonic() + self.options.timeout
        last_line = 0.0
        while True:
            counts = self.states()
            finished = sum(count for state, count in counts.items() if state not in ACTIVE)
            active = sum(counts[state] for state in ACTIVE)
            if thresholds and finished >= thresholds[0]:
                if await self.kill_server():
                    thresholds.pop(0)
            if self.now() - last_line >= PROGRESS_EVERY:
                last_line = self.now()
                shown = "  ".join(f"{state} {count}" for state, count in sorted(counts.items()))
                print(f"  {self.now():6.1f} s  submitted {self.submitted}/{n}  {shown}", flush=True)
            if submitting.done():
                submitting.result()  # raises what broke it
                if active == 0:
                    return
            if time.monotonic() > deadline:
                self.timed_out = True
                return
            await self.request(self.client.status)  # a killed server is replaced here
            await asyncio.sleep(0.25)

    async def run(self) -> None:
        self.start = time.perf_counter()
        try:
            await self.open()
            done = asyncio.Event()
            dropping = asyncio.create_task(self.drop_loop(done))
            submitting = asyncio.create_task(self.submit_all())
            try:
                await self.wait(submitting)
                self.end = self.now()
            finally:
                done.set()
                if not submitting.done():
                    submitting.cancel()
                await asyncio.gather(submitting, return_exceptions=True)
                await dropping
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop the server (a request, or SIGTERM by pid when not connected; SIGKILL
        by pid for one that stays)."""
        from simtui.errors import SimtuiError

        if self.client is not None:
            if self.client.connected:
                with contextlib.suppress(SimtuiError, ConnectionError):
                    await self.client.stop()
            await self.client.close()
        pid = self.server_pid()
        if pid is not None:
            self.servers.add(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in self.servers:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                try:
                    await asyncio.to_thread(proc.wait, 10)
                except psutil.TimeoutExpired:
                    print(f"soak: server {pid} outlived its stop request: killed")
                    proc.kill()
                    proc.wait(5)

    # -- the verdict

    def check(self) -> dict:
        from simtui.model import JobState

        records = list(self.store.find(tags=[TAG], limit=None))
        by_job: dict[int, list] = collections.defaultdict(list)
        for record in records:
            i = job_index(record)
            if i is not None:
                by_job[i].append(record)
        lost: list[tuple[int, str]] = []
        twice = 0
        wrong: list[str] = []
        local, remote = LogCheck(), LogCheck()
        run_time = 0.0
        states = collections.Counter(r.state.value for r in records)
        for i in range(self.options.jobs):
            expected = expected_lines(i, self.options.lines)
            found = by_job.get(i, [])
            good = [r for r in found if r.state is JobState.SUCCEEDED and r.exit_code == 0]
            if not good:
                lost.append((i, "; ".join(f"{r.label} {r.state.value}{why(r)}" for r in found) or "no record"))
            twice += max(len(found) - 1, 0)
            for record in found:
                folder = job_folder(self.lab, record)
                truth = true_state(folder)
                if not in_true_state(record, truth):
                    wrong.append(f"{record.label}: {record.state.value} exit {record.exit_code}, "
                                 f"its folder: {truth[0]}{'' if truth[1] is None else f' {truth[1]}'}")
                if truth[0] == "never started":
                    continue  # its lines count under jobs lost
                local.add(record.label, read_local(record.label), expected)
                try:
                    on_host = (folder / "out.log").read_bytes()
                except OSError:
                    on_host = None
                remote.add(record.label, on_host, expected)
            run_time += sum(r.duration or 0.0 for r in good)
        return {"records": len(records), "states": states, "lost": lost, "twice": twice, "wrong": wrong,
                "local": local, "remote": remote, "run_time": run_time}


def examples(labels: list[str]) -> str:
    return f": {', '.join(labels[:5])}" if labels else ""


def report(soak: Soak, got: dict, slots: int) -> None:
    options = soak.options
    local, remote = got["local"], got["remote"]
    ideal = got["run_time"] / slots
    ratio = soak.end / ideal if ideal > 0 else float("inf")
    print(f"jobs submitted: {options.jobs} ({soak.submit_s:.1f} s to submit them all; "
          f"{len(soak.refused)} refused, {soak.resent} sent again, {soak.adopted} found recorded after a kill)")
    for i, why in soak.refused[:5]:
        print(f"  refused: job {i}: {why}")
    if soak.errors:
        print(f"  {len(soak.errors)} other errors on submit (each tried again), e.g. job {soak.errors[0][0]}: "
              f"{soak.errors[0][1]}")
    print(f"records: {got['records']} ({', '.join(f'{s} {c}' for s, c in sorted(got['states'].items()))}); "
          f"jobs with more than one record: {got['twice']}")
    print(f"chaos: {len(soak.drops)} sshd drops, {len(soak.kills)} server kills, "
          f"{len(soak.servers)} servers in all ({soak.restarts} reached after a restart)")
    print(f"jobs lost: {len(got['lost'])}")
    for i, why in got["lost"][:10]:
        print(f"  job {i}: {why}")
    print(f"lines lost: {local.lost}  lines doubled: {local.doubled}  (local copies; {local.foreign} foreign lines, "
          f"{local.misordered} copies out of order, {local.missing} copies missing; {len(local.bad)} copies differ"
          f"{examples(local.bad)})")
    print(f"  on the hosts: {remote.lost} lost, {remote.doubled} doubled, {remote.foreign} foreign, "
          f"{remote.missing} out.log missing ({len(remote.bad)} differ{examples(remote.bad)})")
    print(f"records not in their true state: {len(got['wrong'])}")
    for line in got["wrong"][:10]:
        print(f"  {line}")
    timeout_note = f" (timed out after {options.timeout:g} s)" if soak.timed_out else ""
    print(f"wall time: {soak.end:.1f} s{timeout_note}")
    print(f"run time / slots: {got['run_time']:.1f} s / {slots} = {ideal:.1f} s")
    print(f"wall / (run time / slots): {ratio:.2f}x")
    print("targets:")
    print(f"  jobs lost = 0: {len(got['lost'])}  {verdict(not got['lost'])}")
    print(f"  lines lost = 0: {local.lost}  {verdict(local.lost == 0)}")
    print(f"  lines doubled = 0: {local.doubled}  {verdict(local.doubled == 0)}")
    print(f"  records not in their true state = 0: {len(got['wrong'])}  {verdict(not got['wrong'])}")


def leftovers(lab, since: float, grace: float = 5.0) -> list[str]:
    """Processes of the lab's own users (as root: users of this lab alone) started
    since the bench did and still running ``grace`` seconds after the lab closed
    (zombies waiting for init do not count), as "pid command"; killed by pid."""
    if os.geteuid() != 0:
        return []
    users = {h.user for h in lab.hosts}

    def running() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["username", "create_time", "status"]):
            if (proc.info["username"] in users and proc.info["create_time"] >= since
                    and proc.info["status"] != psutil.STATUS_ZOMBIE):
                found.append(proc)
        return found

    deadline = time.monotonic() + grace
    while (left := running()) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = []
    for proc in left:
        with contextlib.suppress(psutil.Error):
            killed.append(f"{proc.pid} {' '.join(proc.cmdline())[:100]!r}")
            proc.kill()
    return killed


def main(argv: list[str] | None = None) -> None:
    parser = arguments("soak", __doc__)
    parser.add_argument("--jobs", type=int, default=500, help="short jobs to submit")
    parser.add_argument("--lines", type=int, default=50, help="lines each job prints")
    parser.add_argument("--drop-every", type=float, default=10.0, help="seconds between sshd drops")
    parser.add_argument("--drops", type=int, default=None, help="at most this many sshd drops (default: no cap)")
    parser.add_argument("--kills", type=int, default=3, help="kill -9 of the simtui server")
    parser.add_argument("--submitters", type=int, default=4, help="submit requests at once")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for every job to end (default: 300 + 2 per job)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a new one, printed)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run: 8 jobs, one drop, one server kill")
    options = parser.parse_args(argv)
    if options.smoke:
        options.jobs, options.lines, options.drop_every, options.drops, options.kills = 8, 5, 2.0, 1, 1
    if options.jobs < 1 or options.lines < 1 or options.drop_every <= 0 or options.kills < 0 \
            or options.submitters < 1 or (options.drops is not None and options.drops < 0):
        parser.error("--jobs, --lines, --drop-every and --submitters must be positive; "
                     "--kills and --drops not negative")
    if options.timeout is None:
        options.timeout = 300.0 + 2.0 * options.jobs
    seed = options.seed if options.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)

    began = time.time()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="simtui-bench-soak-") as tmp, \
            sshd_lab(HOSTS, first_address=FIRST_ADDRESS) as lab, simtui_home(Path(tmp) / "home") as home:
        try:
            config = write_config(Path(tmp) / "config.toml", lab)
            slots = HOSTS * MAX_JOBS
            print(f"{HOSTS} sshd hosts on 127.0.0.{FIRST_ADDRESS}+ ({time.perf_counter() - started:.1f} s to start), "
                  f"max_jobs {MAX_JOBS} each; {options.jobs} jobs of {options.lines} lines over 0.1-1 s; "
                  f"sshd drop every {options.drop_every:g} s"
                  f"{'' if options.drops is None else f' (at most {options.drops})'}; {options.kills} server kills; "
                  f"seed {seed}", flush=True)
            soak = Soak(lab, config, home, options, rng)
            try:
                asyncio.run(soak.run())
                got = soak.check()
            finally:
                if soak.store is not None:
                    soak.store.close()
            report(soak, got, slots)
        finally:
            stray = leftovers(lab, began)
            clean_hosts(lab, JOBS.split("/")[0])
    if stray:
        print(f"soak: {len(stray)} processes of the lab's users outlived it, killed:")
        for line in stray[:10]:
            print(f"  {line}")


if __name__ == "__main__":
    main()
