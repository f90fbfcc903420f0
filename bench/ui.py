"""The dashboard in a real terminal (tmux), as a person sees it:

- first frame: from starting ``simtui`` (a new process, imports included) with
  8 sshd hosts configured until the screen shows the hosts panel and the footer,
  against a 1 s target; then until all 8 hosts show ``up``. Each start is cold:
  no simtui server runs yet, so "up" includes the server the dashboard starts;
- key latency while a job floods its log (``--rate``, default 10 MB/s of 100-byte
  lines, shown in the log pane): from ``tmux send-keys`` of one key in the jobs
  filter until the screen shows it, p50 and p99 against a 100 ms target. Each
  reading includes a ``tmux capture-pane`` round trip (a few ms), so the numbers
  are upper bounds. The flooding job is started with ``simtui run`` (the only
  job: the one the pane shows). Also the dashboard's CPU meanwhile (user + system,
  in cores): on a busy machine the p99 is mostly other processes' doing.

``python -m bench ui [-- --samples N --starts N --hosts N --rate MB/s | --smoke]``
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from bench.common import Timings, arguments, ms, sshd_lab
from bench.records import target_line

FIRST_FRAME_TARGET, KEY_TARGET = 1.0, 0.100
# Numbered 100-byte lines at RATE bytes/s for at most SECONDS: bounded, should anything fail to kill it.
FLOOD = """
import sys, time
rate, seconds, out = float(sys.argv[1]), float(sys.argv[2]), sys.stdout.buffer
start, sent = time.monotonic(), 0
while time.monotonic() - start < seconds:
    out.write(b"".join(b"%08d %s\\n" % (i, b"x" * 90) for i in range(sent, sent + 1000)))
    out.flush()
    sent += 1000
    time.sleep(max(0.0, start + sent * 100 / rate - time.monotonic()))
"""
FLOOD_SECONDS = 40
SIZE = ("150", "45")


class Terminal:
    """One tmux session running simtui."""

    def __init__(self, root: Path, home: Path, config: Path) -> None:
        self.root, self.home, self.config = root, home, config
        self.starts = 0
        self.socket = root / "tmux-0.sock"

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", str(self.socket), "-f", "/dev/null", *args], check=True,
                              capture_output=True, text=True).stdout

    def start(self) -> float:
        """Start simtui (on a tmux server of its own); the time it was started (perf_counter)."""
        self.starts += 1
        self.socket = self.root / f"tmux-{self.starts}.sock"
        # The pane's size, not COLUMNS/LINES: a parent that loaded readline (pytest does) exports
        # its own terminal's, 80x24 without one, and Textual would take those.
        command = (f"env -u COLUMNS -u LINES SIMTUI_HOME={shlex.quote(str(self.home))} TERM=xterm-256color "
                   f"{shlex.quote(sys.executable)} -m simtui --config {shlex.quote(str(self.config))}")
        started = time.perf_counter()
        self.tmux("new-session", "-d", "-x", SIZE[0], "-y", SIZE[1], "-s", "bench", command)
        return started

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "bench")

    def until(self, condition: Callable[[str], bool], timeout: float = 60) -> float:
        """Poll the screen until ``condition(screen)``; when it held (perf_counter)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if condition(self.screen()):
                return time.perf_counter()
        raise TimeoutError(f"the screen never got there:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "bench", *keys)

    def simtui(self, *args: str) -> str:
        """A simtui command against the dashboard's server; what it printed."""
        return subprocess.run([sys.executable, "-m", "simtui", "--config", str(self.config), *args],
                              env={**os.environ, "SIMTUI_HOME": str(self.home)}, capture_output=True, text=True).stdout

    def kill(self, label: str) -> None:
        """Kill the job with the command line (jobs outlive the dashboard)."""
        self.simtui("kill", label)

    def stop(self) -> None:
        """Close the dashboard, then stop the server it started (it would outlive it)."""
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True)
        self.simtui("server", "stop")


def drawn(screen: str) -> bool:
    return "Hosts" in screen and "n New" in screen


def first_frames(term: Terminal, hosts: int, starts: int) -> tuple[Timings, Timings]:
    frames, ups = [], []
    for _ in range(starts):
        started = term.start()
        frames.append(term.until(drawn) - started)
        ups.append(term.until(lambda s: s.count(" up ") >= hosts) - started)
        term.stop()
    return (Timings(f"first frame, {hosts} hosts", tuple(frames)),
            Timings(f"all {hosts} hosts up", tuple(ups)))


def key_latency(term: Terminal, samples: int, rate: float) -> tuple[Timings, float]:
    """Type the flooding job's label into the jobs filter (and back out), timing each
    key; and the dashboard's CPU meanwhile, in cores."""
    flood = term.root / "flood.py"
    flood.write_text(FLOOD)
    term.start()
    term.until(lambda s: drawn(s) and "● local  up" in s)
    # Started from the command line (the dashboard's server runs it); the only job, so the one shown.
    label = term.simtui("run", "--host", "local", "--", "python3", str(flood), f"{rate * 1e6:.0f}",
                        str(FLOOD_SECONDS)).strip()
    if not label:
        raise RuntimeError("bench ui: `simtui run` of the flooding job printed no label")
    try:
        term.until(lambda s: label in s and re.search(r"│ \d{8} x", s) is not None)  # the flood is on screen
        dashboard = psutil.Process(int(term.tmux("display", "-p", "-t", "bench", "#{pane_pid}")))
        cpu, start = sum(dashboard.cpu_times()[:2]), time.perf_counter()
        seconds = type_label(term, label, samples)
        cores = (sum(dashboard.cpu_times()[:2]) - cpu) / (time.perf_counter() - start)
        return Timings("key to screen, log flooding", tuple(seconds)), cores
    finally:
        term.kill(label)
        term.stop()


def type_label(term: Terminal, label: str, samples: int) -> list[float]:
    term.keys("/")
    term.until(lambda s: "filter jobs" in s)
    seconds: list[float] = []
    typed, growing = "", True
    while len(seconds) < samples:
        growing = (growing or not typed) and len(typed) < len(label)
        key, typed = (label[len(typed)], label[: len(typed) + 1]) if growing else ("BSpace", typed[:-1])
        shown = re.compile(rf"▊ +{re.escape(typed)} +▎" if typed else "filter jobs")  # the whole value
        start = time.perf_counter()
        term.keys(key)
        seconds.append(term.until(lambda s, e=shown: e.search(s) is not None) - start)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = arguments("ui", __doc__)
    parser.add_argument("--hosts", type=int, default=8, help="sshd hosts for the first frame")
    parser.add_argument("--starts", type=int, default=5, help="starts timed for the first frame")
    parser.add_argument("--samples", type=int, default=200, help="keys timed while flooding")
    parser.add_argument("--rate", type=float, default=10.0, help="MB/s the flooding job writes")
    parser.add_argument("--smoke", action="store_true", help="1 host, 1 start, 20 keys: every row, quickly")
    options = parser.parse_args(argv)
    if options.smoke:
        options.hosts, options.starts, options.samples = 1, 1, 20
    if shutil.which("tmux") is None:
        raise SystemExit("bench ui: tmux is not installed (apt-get install tmux)")
    with tempfile.TemporaryDirectory(prefix="simtui-bench-ui-") as tmp, sshd_lab(options.hosts) as lab:
        root = Path(tmp)
        config = root / "config.toml"
        config.write_text(f'[defaults]\ninterval = 1.0\nkill_grace = 1\n[local]\njobs_dir = "{root}/jobs"\n'
                          + lab.config_toml())
        term = Terminal(root, root / "home", config)
        try:
            frame, up = first_frames(term, options.hosts + 1, options.starts)
            latency, cores = key_latency(term, options.samples, options.rate)
        finally:
            term.stop()
    print(f"{options.hosts} sshd hosts + local; terminal {'x'.join(SIZE)}; log flooding at {options.rate:g} MB/s")
    for timing in (frame, up, latency):
        print(timing.line())
    print(f"{'key to screen, p50':<40} {ms(latency.percentile(50))}")
    print(f"{'key to screen, p99':<40} {ms(latency.percentile(99))}")
    print(f"{'dashboard CPU while flooding':<40} {cores:8.0%} of a core")
    print("against the targets (below 1 = within):")
    print(target_line(frame, FIRST_FRAME_TARGET))
    p99 = Timings("key to screen p99, log flooding", (latency.percentile(99),))
    print(target_line(p99, KEY_TARGET))


if __name__ == "__main__":
    main()
