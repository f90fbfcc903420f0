"""Log output at wire speed: ``simtui log --follow`` against OpenSSH, into a terminal
and into a pipe, on a real sshd host.

A job on a loopback sshd host writes ``--lines`` lines of 100 bytes (plain text, no
control byte) into its log and stays running. Once the server's local copy holds
all of it, each reader prints the whole log:

- ``ssh H tail -c +1 -F FILE`` (what ``--follow`` replaces) and ``ssh H cat FILE``;
- ``simtui log --follow LABEL`` (a whole process, as a user runs it: what the
  server's local copy holds read from it, the rest asked of the server, then
  followed; on a terminal, the sanitiser).

into a pty (its master side read as fast as possible by a thread, bytes counted; a
terminal's default modes, so each newline arrives as CR LF) and into a pipe. Each
reader is timed from its start until the last byte arrived, then stopped (the
followers never end by themselves). Printed: MB/s, the reader's CPU seconds
(user + system, ``getrusage`` of the children), and simtui against ``tail -F``.
Targets: terminal >= 0.5x the throughput at <= 3x the CPU; pipe >= 0.8x.

Live through the server: a whole ``simtui run --host H --follow -- sh -c CMD``
process (launch included: the server up, its connection to H warm) whose job prints
``--lines`` lines of 100 bytes and ends, its output into a pipe, timed from its start
until it exits; against ``ssh H cat`` of that same log file afterwards (same run).
Two logs: plain text (``yes`` and ``head -c``) and metric lines
(``step=N loss=... lr=... acc=...``, three points a line, printed by awk), so the
cost of the server's metrics ingest on the live path shows. Printed: MB/s, the
client's and the server's CPU seconds (psutil, the server's pid), the producer
alone on H (``CMD >/dev/null``), and simtui against ``ssh cat`` (target: >= 0.57x,
issue 16: no slower than the live path was before metrics ingest). For the metric lines, a timeline from the
start: the job's end (the record's ``ended``, the host's exit time: same clock on
loopback), the last byte in the pipe, every point in the store (its last line's
point, polled each 20 ms read-only) and ``run --follow``'s exit; then a whole
``simtui metrics LABEL --json`` process and the points it gave.

``python -m bench logs [-- --lines N --reps N | --smoke]``
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import psutil

from bench.common import arguments, sshd_lab
from bench.server import serving, simtui
from bench.ssh import openssh

LINE = 100  # bytes a line, its newline included
TERMINAL_TARGET, TERMINAL_CPU_TARGET, PIPE_TARGET = 0.5, 3.0, 0.8
LIVE_TARGET = 0.57  # simtui run --follow / ssh cat (issue 16: the live path before metrics ingest)
ROOT = Path(__file__).resolve().parent.parent  # this checkout: its simtui, whatever is installed
# The job: N numbered lines of LINE bytes, then it waits (bounded: a bench that dies leaves no job for ever).
WRITER = """
import sys, time
n, out = int(sys.argv[1]), sys.stdout.buffer
for start in range(0, n, 10000):
    out.write(b"".join(b"%08d %s\\n" % (i, b"x" * 90) for i in range(start, min(start + 10000, n))))
out.flush()
time.sleep(900)
"""


@dataclass(frozen=True)
class Reading:
    seconds: float  # until the last byte arrived
    cpu: float  # the reader's user + system seconds


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sink(kind: str) -> tuple[int, int]:
    """(read end, write end) of a pty (``terminal``) or a pipe."""
    return os.openpty() if kind == "terminal" else os.pipe()


def expected_bytes(kind: str, write_end: int, size: int, lines: int) -> int:
    """What the read end gets for ``size`` bytes of ``lines`` lines: a terminal in its
    default modes turns each newline into CR LF."""
    if kind == "terminal" and termios.tcgetattr(write_end)[1] & termios.ONLCR:
        return size + lines
    return size


def drain(fd: int, want: int, done: list[float]) -> None:
    """Read ``fd`` until ``want`` bytes came (the time goes in ``done``) or it ends."""
    got = 0
    while got < want:
        try:
            data = os.read(fd, 1 << 20)
        except OSError:  # EIO: the pty's other side closed
            return
        if not data:
            return
        got += len(data)
    done.append(time.perf_counter())


def read_whole_log(argv: list[str], kind: str, size: int, lines: int) -> Reading:
    """Run ``argv`` with stdout on a fresh ``kind`` sink until the whole log came through."""
    read_end, write_end = sink(kind)
    want = expected_bytes(kind, write_end, size, lines)
    done: list[float] = []
    with tempfile.TemporaryFile() as errors:
        cpu = children_cpu()
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=write_end, stderr=errors)
        os.close(write_end)
        reader = threading.Thread(target=drain, args=(read_end, want, done), daemon=True)
        reader.start()
        try:
            reader.join(timeout=600)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            os.close(read_end)
            reader.join(timeout=10)
        if not done:
            errors.seek(0)
            raise RuntimeError(f"{argv[-3:]} into a {kind} ended before {want} bytes: "
                               f"{errors.read().decode(errors='replace')[-2000:]}")
        return Reading(done[0] - start, children_cpu() - cpu)


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench logs: no {what} after {timeout:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def job(config: Path, home: Path, host, lines: int) -> Iterator[str]:
    """A running job on ``host`` whose log holds ``lines`` lines, all in the local
    copy; its label. Killed and its folder on the host removed after."""
    label = simtui(config, "run", "--host", host.name, "--", "python3", "-c", WRITER, str(lines)).strip()
    try:
        copy = home / "logs" / f"{label}.log"
        until(lambda: copy.exists() and copy.stat().st_size >= lines * LINE, 600, "whole local copy")
        yield label
    finally:
        simtui(config, "kill", label)
        subprocess.run([*openssh(host), "rm", "-rf", f".simtui/jobs/{label}"], stdin=subprocess.DEVNULL, check=True)


def line(kind: str, what: str, readings: list[Reading], size: int) -> str:
    seconds = statistics.median(r.seconds for r in readings)
    cpu = statistics.median(r.cpu for r in readings)
    return f"{kind:<9} {what:<26} {size / seconds / 1e6:8.1f} MB/s  {seconds:6.2f} s  {cpu:6.2f} s CPU"


def ratio(kind: str, ours: list[Reading], theirs: list[Reading], target: float, cpu_target: float | None) -> str:
    speed = statistics.median(r.seconds for r in theirs) / statistics.median(r.seconds for r in ours)
    text = f"{kind}: simtui log --follow / ssh tail -F: throughput {speed:5.2f}x (target >= {target}x)"
    if cpu_target is not None:
        cpu = statistics.median(r.cpu for r in ours) / max(statistics.median(r.cpu for r in theirs), 1e-3)
        text += f", CPU {cpu:5.2f}x (target <= {cpu_target}x)"
    return text


# -- live through the server -----------------------------------------------------------------

METRIC_LINE = "step=%08d loss=0.%06d lr=0.000100 acc=0.%06d | train shard of the data loader"
METRIC_KEYS = 3  # points a metric line holds (loss, lr, acc; step is their x)


def producers(lines: int) -> dict[str, str]:
    """The job's shell command for each log: ``lines`` lines of LINE bytes, then it ends."""
    if lines >= 10 ** 8:
        raise SystemExit("bench logs: --lines must stay below 10**8 (8-digit steps)")
    metric = METRIC_LINE + " " * (LINE - 1 - len(METRIC_LINE % (0, 0, 0)))  # padded: LINE bytes a line
    return {
        "plain text": f"yes {'x' * (LINE - 1)} | head -c {lines * LINE}",
        "metric lines": (f"awk -v n={lines} 'BEGIN {{ for (i = 0; i < n; i++) printf \"{metric}\\n\", "
                         f"i, 999999 - i % 1000000, i % 1000000 }}'"),
    }


@dataclass(frozen=True)
class Live:
    seconds: float  # from the start of `simtui run --follow` until it exited
    cpu: float  # the client's user + system seconds
    server_cpu: float  # the server's, meanwhile
    label: str
    ended: float  # the job's end (the record's), seconds after the start
    last_byte: float  # the last byte in the pipe, seconds after the start
    points_in: float | None  # every point in the store, seconds after the start (metric lines only)


class Watch:
    """Reads ``fd`` to its end in a thread, counting bytes: the first line (the label)
    kept, the time of the last byte; with ``last_line`` (the offset of the log's last
    line) also polls the store (read-only, each 20 ms) until that line's acc point is
    in (every take stores all of its points in one transaction, in log order)."""

    def __init__(self, fd: int, database: Path, last_line: int | None) -> None:
        self.fd, self.database, self.last_line = fd, database, last_line
        self.got, self.head, self.last_byte, self.points_in = 0, b"", 0.0, None
        self.label: str | None = None
        self.labelled, self.stop = threading.Event(), threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.reader.start()
        if last_line is not None:
            self.poller.start()

    def _read(self) -> None:
        try:
            while data := os.read(self.fd, 1 << 20):
                self.got += len(data)
                self.last_byte = time.perf_counter()
                if self.label is None:
                    self.head += data[:64]
                    if b"\n" in self.head:
                        self.label = self.head.split(b"\n", 1)[0].decode().strip()
                        self.labelled.set()
        finally:
            os.close(self.fd)
            self.labelled.set()

    def _poll(self) -> None:
        self.labelled.wait()
        if self.label is None:
            return
        conn = None
        try:
            while not self.stop.is_set():
                try:
                    conn = conn or sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=5)
                    found = conn.execute("select 1 from metrics where label = ? and key = 'acc' and offset = ?",
                                         [self.label, self.last_line]).fetchone()
                except sqlite3.OperationalError:  # not there yet, or busy: the next poll
                    found = None
                if found:
                    self.points_in = time.perf_counter()
                    return
                time.sleep(0.02)
        finally:
            if conn is not None:
                conn.close()

    def join(self, timeout: float) -> None:
        self.reader.join(timeout)
        if self.poller.is_alive():
            self.poller.join(timeout)
        self.stop.set()


def live_follow(config: Path, home: Path, host, server: psutil.Process, command: str, lines: int,
                points: bool) -> Live:
    """One whole ``simtui run --host H --follow -- sh -c COMMAND`` into a pipe."""
    size = lines * LINE
    read_end, write_end = os.pipe()
    # Run from a scratch folder (no git provenance: the records bench's), this checkout's simtui.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    with tempfile.TemporaryFile() as errors:
        cpu, server_cpu = children_cpu(), sum(server.cpu_times()[:2])
        start, wall = time.perf_counter(), time.time()
        proc = subprocess.Popen([sys.executable, "-m", "simtui", "--config", str(config), "run", "--host", host.name,
                                 "--follow", "--", "sh", "-c", command],
                                stdin=subprocess.DEVNULL, stdout=write_end, stderr=errors, cwd=home,
                                env={**os.environ, "PYTHONPATH": path})
        os.close(write_end)
        watch = Watch(read_end, home / "records.db", size - LINE if points else None)
        code = proc.wait(timeout=900)
        exited = time.perf_counter()
        watch.join(timeout=120)
        server_cpu = sum(server.cpu_times()[:2]) - server_cpu
        cpu = children_cpu() - cpu
        errors.seek(0)
        why = errors.read().decode(errors="replace")[-2000:]
    if code != 0 or watch.label is None:
        raise RuntimeError(f"simtui run --follow of {command[:40]!r} exited {code}: {why}")
    if watch.got != size + len(watch.label) + 1:
        raise RuntimeError(f"simtui run --follow of {command[:40]!r}: {watch.got} bytes, not the label's line "
                           f"and {size}")
    if points and watch.points_in is None:
        raise RuntimeError(f"{watch.label}: the last line's metrics never reached the store")
    record = json.loads(simtui(config, "show", watch.label, "--json"))
    return Live(exited - start, cpu, server_cpu, watch.label, record["ended"] - wall, watch.last_byte - start,
                None if watch.points_in is None else watch.points_in - start)


def metrics_json(config: Path, label: str) -> tuple[float, int]:
    """A whole ``simtui metrics LABEL --json`` process: its seconds and the points it gave."""
    start = time.perf_counter()
    found = json.loads(simtui(config, "metrics", label, "--json"))
    seconds = time.perf_counter() - start
    return seconds, sum(len(points) for series in found.values() for points in series.values())


def live_rows(config: Path, home: Path, host, server_pid: int, lines: int, reps: int) -> list[str]:
    """The live rows: each log ``reps`` times through the server, each against ssh cat of it."""
    size = lines * LINE
    server = psutil.Process(server_pid)
    out = [f"live through the server: {lines} lines of {LINE} bytes ({size / 1e6:.0f} MB) a job, "
           f"launch included, into a pipe; ssh cat of the same log after; median of {reps}"]
    ratios, timeline = [], []
    for name, command in producers(lines).items():
        started = time.perf_counter()
        subprocess.run([*openssh(host), f"{command} >/dev/null"], stdin=subprocess.DEVNULL, check=True)
        alone = time.perf_counter() - started
        ours, theirs, lives, jsons = [], [], [], []
        for _ in range(reps):
            live = live_follow(config, home, host, server, command, lines, points=name == "metric lines")
            try:
                theirs.append(read_whole_log([*openssh(host), "cat", f".simtui/jobs/{live.label}/out.log"], "pipe",
                                             size, lines))
                if live.points_in is not None:
                    jsons.append(metrics_json(config, live.label))
            finally:
                subprocess.run([*openssh(host), "rm", "-rf", f".simtui/jobs/{live.label}"],
                               stdin=subprocess.DEVNULL, check=True)
            lives.append(live)
            ours.append(Reading(live.seconds, live.cpu))
        server_cpu = statistics.median(r.server_cpu for r in lives)
        out.append(f"{name:<12} {line('', 'simtui run --follow', ours, size).strip()}  {server_cpu:6.2f} s server CPU")
        out.append(f"{name:<12} {line('', 'ssh cat (after)', theirs, size).strip()}")
        out.append(f"{name:<12} {'the producer alone on H':<26} {size / alone / 1e6:8.1f} MB/s  {alone:6.2f} s  "
                   "(CMD >/dev/null through a new ssh)")
        speed = statistics.median(r.seconds for r in theirs) / statistics.median(r.seconds for r in ours)
        ratios.append(f"{name}: simtui run --follow / ssh cat: throughput {speed:5.2f}x (target >= {LIVE_TARGET}x)")
        if jsons:
            def median(of: Callable[[Live], float]) -> float:
                return statistics.median(of(r) for r in lives)

            want = METRIC_KEYS * lines
            got = statistics.median(n for _, n in jsons)
            timeline.append(
                f"{name}: seconds after the start (median): job ended {median(lambda r: r.ended):6.2f}, last byte "
                f"in the pipe {median(lambda r: r.last_byte):6.2f}, all {want} points in the store "
                f"{median(lambda r: r.points_in):6.2f}, run --follow exited {median(lambda r: r.seconds):6.2f}; "
                f"the points {median(lambda r: r.points_in - r.last_byte):+6.2f} s after the last byte, "
                f"{median(lambda r: r.points_in - r.ended):6.2f} s after the job ended")
            timeline.append(f"{name}: then a whole simtui metrics LABEL --json: "
                            f"{statistics.median(s for s, _ in jsons):6.2f} s, {got} points"
                            + ("" if got == want else f" (NOT the {want} printed)"))
    return out + ratios + timeline


def main(argv: list[str] | None = None) -> None:
    parser = arguments("logs", __doc__)
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines of 100 bytes the job writes")
    parser.add_argument("--reps", type=int, default=3, help="readings per reader and sink (median shown)")
    parser.add_argument("--smoke", action="store_true", help="a tiny log, one reading each: every row, quickly")
    options = parser.parse_args(argv)
    lines, reps = (20_000, 1) if options.smoke else (options.lines, options.reps)
    size = lines * LINE
    with (tempfile.TemporaryDirectory(prefix="simtui-bench-logs-") as tmp, sshd_lab(1) as lab,
          mock.patch.dict(os.environ, SIMTUI_HOME=tmp)):
        home, host = Path(tmp), lab.hosts[0]
        config = home / "config.toml"
        config.write_text("[defaults]\nkill_grace = 1\n\n" + lab.config_toml(local=False))
        with serving(config, home) as server:
            with job(config, home, host, lines) as label:
                remote = f".simtui/jobs/{label}/out.log"
                readers = {
                    "ssh tail -c +1 -F": [*openssh(host), "tail", "-c", "+1", "-F", remote],
                    "ssh cat": [*openssh(host), "cat", remote],
                    "simtui log --follow": [sys.executable, "-m", "simtui", "--config", str(config),
                                            "log", "--follow", label],
                }
                results = {(kind, what): [read_whole_log(argv, kind, size, lines) for _ in range(reps)]
                           for kind in ("terminal", "pipe") for what, argv in readers.items()}
            simtui(config, "run", "--host", host.name, "--follow", "--", "true")  # the live rows' connection warm
            live = live_rows(config, home, host, server, lines, reps)
    print(f"{lines} lines of {LINE} bytes ({size / 1e6:.0f} MB) from sshd {host.address}; median of {reps}")
    for (kind, what), readings in results.items():
        print(line(kind, what, readings, size))
    print("against the targets:")
    print(ratio("terminal", results["terminal", "simtui log --follow"], results["terminal", "ssh tail -c +1 -F"],
                TERMINAL_TARGET, TERMINAL_CPU_TARGET))
    print(ratio("pipe", results["pipe", "simtui log --follow"], results["pipe", "ssh tail -c +1 -F"],
                PIPE_TARGET, None))
    print("\n".join(live))


if __name__ == "__main__":
    main()
