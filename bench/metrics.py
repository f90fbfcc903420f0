"""Metrics ingest: ``simtui.metrics.MetricParser.feed`` over a 1M-line log
(``--lines N``), in 1 MiB pieces as a log's copy receives them, in-process.

Logs (deterministic, ``random.Random(0)``):

- **mix**: 70% lines without a metric (60% plain text without ``=``, ``:`` or
  ``{``; 10% with times, URLs, addresses and log prefixes, which the parser
  must look at and turn down, or in a shape only the project pattern below
  takes), 30% with metrics in each shape: ``key=value`` (15%), Keras
  style ``key: value`` with ``epoch N/M`` (6%), JSON objects (4%), Python dict
  reprs (3%) and coloured pairs (2%);
- **training**: every line a typical training line,
  ``step=123 loss=0.2345 lr=0.001 acc=0.91``;
- the mix again with one project pattern (``.simtui/metrics``), which makes
  the parser try every line.

Each is timed from the first piece to ``flush()``; each piece's points are
counted, then dropped (keeping millions of them alive would time the garbage
collector's full passes over that store, not the parser). Printed: lines/s
(of wall time, and of the process's CPU time, which other processes on a busy
machine do not take), MB/s and points, then each as a ratio against the floor
measured on the same bytes: ``bytes.split(b"\\n")`` plus one ``re.finditer`` of the parser's
prefilter regex, its matches drained in C.
Target: >= 200k lines/s on the mix and on the training log.

``python -m bench metrics -- [--lines N] [--reps N] [--smoke]``
"""

from __future__ import annotations

import collections
import json
import random
import re
import time

from bench.common import Timings, arguments, ratio_line
from simtui import metrics

PIECE = 1 << 20
TARGET = 200_000  # lines/s
HIT_BYTES = re.compile(metrics._HIT.pattern.encode())  # the parser's prefilter, over the bytes
PATTERN = r"^Iteration (?P<iteration>\d+) \| train (?P<train_loss>\S+)"

WORDS = ("loading", "shard", "batch", "model", "weights", "from", "the", "cache", "warming", "up", "data",
         "loader", "worker", "started", "saving", "checkpoint", "to", "disk", "gradient", "norm", "clipped")


def plain(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + f" {rng.randint(0, 9999)}"


def tricky(rng: random.Random) -> str:
    """A line with times, URLs, addresses or a shape only a project pattern takes:
    no built-in metric in it."""
    return rng.choice((
        f"2024-01-05 12:{rng.randint(10, 59)}:01 INFO fetching http://node{rng.randint(1, 9)}:8080/shard",
        f"[12:30:{rng.randint(10, 59)}] WARNING: retrying in a moment",
        f"ETA: 0:{rng.randint(10, 59)}:23 remaining",
        f"connecting to node{rng.randint(1, 64)}:29500 via tcp://10.0.0.{rng.randint(1, 254)}:29500",
        "Note: the model has no attribute named dropout",
        f"Iteration {rng.randint(1, 9999)} | train {rng.random():.4f} | {rng.choice(WORDS)}",
    ))


def metric_line(rng: random.Random, step: int) -> str:
    loss, acc, lr = rng.random() * 3, rng.random(), 10 ** -rng.uniform(2, 5)
    roll = rng.random() * 30
    if roll < 15:
        return f"step={step} loss={loss:.4f} lr={lr:.3g} acc={acc:.2f}"
    if roll < 21:
        return f"epoch {step // 100}/400 loss: {loss:.4f} - accuracy: {acc:.4f} - lr: {lr:.2e}"
    if roll < 25:
        return json.dumps({"step": step, "loss": round(loss, 4), "lr": lr, "val": {"acc": round(acc, 3)}})
    if roll < 28:
        return str({"loss": round(loss, 4), "grad_norm": round(acc * 5, 3), "learning_rate": lr, "epoch": step / 1000})
    return f"\x1b[32mstep\x1b[0m={step} \x1b[1mloss\x1b[0m=\x1b[33m{loss:.4f}\x1b[0m"


def mix_log(lines: int) -> bytes:
    rng = random.Random(0)
    out = []
    for i in range(lines):
        roll = rng.random()
        out.append(plain(rng) if roll < 0.6 else tricky(rng) if roll < 0.7 else metric_line(rng, i))
    return ("\n".join(out) + "\n").encode()


def training_log(lines: int) -> bytes:
    rng = random.Random(0)
    return "".join(f"step={i} loss={rng.random():.4f} lr={10 ** -rng.uniform(2, 5):.3g} acc={rng.random():.2f}\n"
                   for i in range(lines)).encode()


def pieces(data: bytes) -> list[bytes]:
    return [data[i : i + PIECE] for i in range(0, len(data), PIECE)]


def parse(chunks: list[bytes], patterns: tuple[str, ...]) -> int:
    parser = metrics.MetricParser(patterns)
    points = 0
    for chunk in chunks:
        points += len(parser.feed(chunk))
    return points + len(parser.flush())


def floor(chunks: list[bytes]) -> int:
    finditer, drain, lines = HIT_BYTES.finditer, collections.deque, 0
    for chunk in chunks:
        lines += len(chunk.split(b"\n"))
        drain(finditer(chunk), maxlen=0)
    return lines


def timed(label: str, fn, reps: int) -> tuple[Timings, Timings, int]:
    """Wall and CPU seconds (the process's: other processes on a busy machine take
    the former, not the latter) of ``reps`` runs of ``fn``, and what it returned."""
    wall, cpu, result = [], [], 0
    for _ in range(reps):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return Timings(label, tuple(wall)), Timings(label + " (CPU)", tuple(cpu)), result


def main(argv: list[str] | None = None) -> None:
    parser = arguments("metrics", __doc__)
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines in each log")
    parser.add_argument("--reps", type=int, default=3, help="runs of each (median shown)")
    parser.add_argument("--smoke", action="store_true", help="20,000-line logs, one run each")
    options = parser.parse_args(argv)
    lines, reps = (20_000, 1) if options.smoke else (options.lines, options.reps)
    logs = {"mix": mix_log(lines), "training": training_log(lines)}
    cases = [("mix", ()), ("training", ()), ("mix", (PATTERN,))]
    print(f"{lines} lines a log in {PIECE >> 20} MiB pieces; median of {reps}; lines/s of wall time and of the "
          "process's CPU time")
    results = []
    for name, patterns in cases:
        data = logs[name]
        chunks = pieces(data)
        label = name + (" + 1 pattern" if patterns else "")
        ours, ours_cpu, points = timed(f"MetricParser {label}", lambda: parse(chunks, patterns), reps)
        base, _, _ = timed(f"floor {name}", lambda: floor(chunks), reps)
        results.append((label, ours, ours_cpu, base))
        print(f"{label:<16} {lines / ours.median / 1e3:5.0f}k lines/s ({lines / ours_cpu.median / 1e3:4.0f}k/CPU s)  "
              f"{len(data) / ours.median / 1e6:5.1f} MB/s  {points:>8} points  "
              f"(floor: {lines / base.median / 1e3:5.0f}k lines/s, {len(data) / base.median / 1e6:5.1f} MB/s; "
              f"{len(data) / 1e6:.0f} MB)")
    print("against the floor (split + one finditer) and the target:")
    for label, ours, ours_cpu, base in results:
        print(ratio_line(f"{label}: parser / floor", ours, base)
              + f"; {lines / ours.median / 1e3:.0f}k lines/s, {lines / ours_cpu.median / 1e3:.0f}k/CPU s"
              f" (target >= {TARGET // 1000}k)")


if __name__ == "__main__":
    main()
