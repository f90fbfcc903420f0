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

``python -m bench logs [-- --lines N --reps N | --smoke]``
"""

from __future__ import annotations

import contextlib
import os
import resource
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

from bench.common import arguments, sshd_lab
from bench.server import serving, simtui
from bench.ssh import openssh

LINE = 100  # bytes a line, its newline included
TERMINAL_TARGET, TERMINAL_CPU_TARGET, PIPE_TARGET = 0.5, 3.0, 0.8
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
        with serving(config, home):
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
    print(f"{lines} lines of {LINE} bytes ({size / 1e6:.0f} MB) from sshd {host.address}; median of {reps}")
    for (kind, what), readings in results.items():
        print(line(kind, what, readings, size))
    print("against the targets:")
    print(ratio("terminal", results["terminal", "simtui log --follow"], results["terminal", "ssh tail -c +1 -F"],
                TERMINAL_TARGET, TERMINAL_CPU_TARGET))
    print(ratio("pipe", results["pipe", "simtui log --follow"], results["pipe", "ssh tail -c +1 -F"],
                PIPE_TARGET, None))


if __name__ == "__main__":
    main()
