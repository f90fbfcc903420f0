"""Shared pieces for benches: a throwaway sshd lab, timing and ratio lines."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"


@contextlib.contextmanager
def sshd_lab(count: int = 1, first_address: int = 60) -> Iterator[Any]:
    """An SshdLab (tests/sshd.py) in a temporary dir, closed afterwards.

    Addresses start at 127.0.0.<first_address>, away from the test suite's.
    """
    sys.path.insert(0, str(TESTS))
    from sshd import SshdLab

    with tempfile.TemporaryDirectory(prefix="simtui-bench-") as root:
        lab = SshdLab(Path(root) / "lab", count, first_address=first_address, prefix="b")
        try:
            yield lab
        finally:
            lab.close()


@contextlib.contextmanager
def simtui_home(path: Path) -> Iterator[Path]:
    """``$SIMTUI_HOME`` at ``path`` for the block (this bench's own server, records
    and logs), then as it was: the next bench of ``python -m bench`` gets it back."""
    saved = os.environ.get("SIMTUI_HOME")
    os.environ["SIMTUI_HOME"] = str(path)
    try:
        yield path
    finally:
        if saved is None:
            os.environ.pop("SIMTUI_HOME", None)
        else:
            os.environ["SIMTUI_HOME"] = saved


def clean_hosts(lab, *paths: str) -> None:
    """Remove what a bench made on its lab's hosts (``paths`` relative to each home)."""
    for host in lab.hosts:
        argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-i", str(lab.client_key),
                "-o", f"UserKnownHostsFile={lab.known_hosts}", "-p", str(host.port), f"{host.user}@{host.address}",
                "rm -rf -- " + " ".join(shlex.quote(path) for path in paths)]
        subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, capture_output=True)


@dataclass(frozen=True)
class Timings:
    """Durations in seconds of repeated runs of one thing."""

    label: str
    seconds: tuple[float, ...]

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile (p in 0..100)."""
        ordered = sorted(self.seconds)
        return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def line(self) -> str:
        return (f"{self.label:<40} n={len(self.seconds):<4} median {ms(self.median)}  "
                f"p90 {ms(self.percentile(90))}  p99 {ms(self.percentile(99))}")


async def measure(label: str, fn: Callable[[], Any], n: int, warmup: int = 1) -> Timings:
    """Time ``n`` calls of ``fn`` (awaiting what it returns, if awaitable) after
    ``warmup`` untimed ones."""
    seconds = []
    for i in range(warmup + n):
        start = time.perf_counter()
        result = fn()
        if inspect.isawaitable(result):
            await result
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
    return Timings(label, tuple(seconds))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def ratio_line(what: str, ours: Timings, theirs: Timings) -> str:
    """``what: ours/theirs = 0.42x (median ... vs ...)``: below 1 means we are faster."""
    return (f"{what:<44} {ours.median / theirs.median:6.2f}x  "
            f"({ms(ours.median).strip()} vs {ms(theirs.median).strip()}, median)")


def arguments(name: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of ``python -m bench NAME``, its help from ``doc``."""
    return argparse.ArgumentParser(prog=f"python -m bench {name}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
