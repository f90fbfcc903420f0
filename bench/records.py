"""Records at scale: 100,000 records (``--records N``) in a throwaway SIMTUI_HOME, then

- the commands that stream every record, each a whole process writing into a pipe:
  ``simtui list --limit 0`` (table, and ``--json``), ``simtui export`` (JSON, CSV;
  records/s) and ``simtui feed``: wall time and peak RSS, each as a ratio against an
  anchor measured in the same run: python's sqlite3 module reading
  ``label, state, host, created, command`` of every record, newest first, and writing
  them out as tab-separated lines into a pipe;
- ``simtui list --tag X --limit 50`` and ``simtui list --search WORD``, each a
  whole process (start-up included), against a 0.5 s target;
- full-text search in-process against a 50 ms target;
- provenance capture per run (git_info + environment + a small params file)
  against a 90 ms target;
- where Sumatra's ``smt`` is installed (or given with --smt), ``smt list`` and
  ``simtui list --limit 0`` over the same 1,000 runs.

``--smoke`` runs every part on 2,000 records, once each (well under 20 s).

``python -m bench records -- [--records N] [--reps N] [--smt PATH] [--smoke]``
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import arguments, Timings, measure, ms, ratio_line
from simtui import provenance
from simtui.model import JobState, Record
from simtui.params import load_params
from simtui.store import Store
from simtui.units import format_size

ROOT = Path(__file__).resolve().parent.parent
LIST_TARGET, SEARCH_TARGET, CAPTURE_TARGET = 0.5, 0.050, 0.090
BATCH = 5_000
RARE_TAG, RARE_WORD, COMMON_WORD = "sweep42", "topic17", "python"  # in 1%, 1% and 100% of records
SMOKE_RECORDS = 2_000
MODELS = ("resnet18", "resnet50", "vit-b16", "gpt2-small", "unet", "lstm")
STATES = (JobState.SUCCEEDED,) * 8 + (JobState.FAILED, JobState.KILLED)


def timed(label: str, fn: Callable[[], Any], reps: int) -> Timings:
    return asyncio.run(measure(label, fn, reps))


def target_line(timings: Timings, target: float) -> str:
    """``what  0.42x target``: below 1 means within the target."""
    return f"{timings.label:<40} {timings.median / target:6.2f}x target  ({ms(timings.median).strip()} vs {ms(target).strip()}, median)"


# -- filling -----------------------------------------------------------------------


def make_records(first: int, count: int, environment: dict[str, Any], rng: random.Random) -> list[Record]:
    """Runs that look like a busy lab's: sweeps, tags, a reason, outputs, a log tail,
    now and then a dirty checkout with its diff."""
    records = []
    for i in range(first, first + count):
        model, lr = MODELS[i % len(MODELS)], rng.choice((0.1, 0.03, 0.01, 0.003))
        argv = ["python", "train.py", "--model", model, "--lr", str(lr), "--seed", str(i % 7)]
        dirty = i % 5 == 0
        created = 1.7e9 + i * 30
        records.append(Record(
            label=f"{i:012x}", host=f"node{i % 12}", command=" ".join(argv), argv=argv,
            state=STATES[i % len(STATES)], exit_code=0, workdir="/home/lab/project", project="project",
            created=created, started=created + 2, ended=created + 600, duration=598.0,
            tags=[f"proj{i % 10}", f"sweep{i % 100}"] + (["gpu"] if i % 3 == 0 else []),
            reason=f"{model} at lr {lr}, checking topic{i % 100}",
            notes="diverged after warmup" if i % 50 == 0 else None,
            params={"model": model, "lr": lr, "seed": i % 7, "optimizer": {"name": "adamw", "wd": 0.01}},
            git={"remote": "git@example.org:lab/project.git", "branch": "main", "commit": f"{rng.getrandbits(160):040x}",
                 "dirty": dirty, "diff": "".join(f"+line {n} of a change\n" for n in range(30)) if dirty else "",
                 "untracked": ["scratch.ipynb"] if dirty else []},
            environment=environment,
            outputs=[{"path": "out/metrics.csv", "size": 20_000 + i, "sha256": f"{rng.getrandbits(256):064x}",
                      "media_type": "text/csv"},
                     {"path": "out/model.pt", "size": 90_000_000, "sha256": f"{rng.getrandbits(256):064x}",
                      "media_type": None}],
            log_tail="".join(f"epoch {e} loss {rng.random():.4f}\n" for e in range(5)),
        ))
    return records


def fill(path: Path, count: int) -> float:
    """Seconds to insert ``count`` records, in batches, into a new database."""
    rng, environment = random.Random(5), provenance.environment()
    store = Store.open(path)
    start = time.perf_counter()
    for first in range(0, count, BATCH):
        store.insert(*make_records(first, min(BATCH, count - first), environment, rng))
    store.close()
    return time.perf_counter() - start


def simtui_process(home: Path, *args: str) -> Callable[[], None]:
    env = {**os.environ, "SIMTUI_HOME": str(home)}
    command = [sys.executable, "-m", "simtui", *args]
    return lambda: subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


# -- whole processes into a pipe: time and peak RSS -----------------------------------

# The anchor: python's sqlite3 module writing the small columns of every record.
ANCHOR = textwrap.dedent("""
    import sqlite3, sys
    out = open(sys.stdout.fileno(), "w", buffering=1 << 16, closefd=False)
    for row in sqlite3.connect(sys.argv[1]).execute(
            "select label, state, host, created, command from records order by created desc, rowid desc"):
        out.write("\\t".join(map(str, row)) + "\\n")
    out.close()
""")


# Runs ARGV... as its child and writes "seconds peak_rss_kib exit_code" into REPORT. A
# child forked by the bench itself would count the bench's own RSS (copied at the fork,
# kept by Linux across exec) in its peak: this small process forks it instead.
MEASURED = textwrap.dedent("""
    import os, sys, time
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.execv(sys.argv[2], sys.argv[2:])
    _, status, usage = os.wait4(pid, 0)
    with open(sys.argv[1], "w") as report:
        report.write(f"{time.perf_counter() - start} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
""")


@dataclass(frozen=True)
class Run:
    """One whole process: wall seconds, peak RSS in bytes, bytes it wrote."""

    seconds: float
    peak_rss: int
    output: int


def piped(command: list[str], env: dict[str, str], report: Path) -> Run:
    """Run ``command`` (through MEASURED) with its stdout into a pipe read to the end and
    dropped: its wall time, its own peak RSS, how much it wrote."""
    proc = subprocess.Popen([sys.executable, "-I", "-c", MEASURED, str(report), *command], env=env,
                            stdout=subprocess.PIPE)
    output = 0
    while chunk := proc.stdout.read(1 << 20):
        output += len(chunk)
    proc.stdout.close()
    proc.wait()
    seconds, peak_kib, code = report.read_text().split()
    if proc.returncode or int(code):
        raise SystemExit(f"bench records: {' '.join(command)} exited {code}")
    return Run(float(seconds), int(peak_kib) * 1024, output)


def median_run(command: list[str], env: dict[str, str], reps: int, report: Path) -> Run:
    runs = sorted((piped(command, env, report) for _ in range(reps)), key=lambda run: run.seconds)
    return runs[len(runs) // 2]


def bench_streaming(home: Path, count: int, reps: int) -> None:
    env = {**os.environ, "SIMTUI_HOME": str(home)}
    report = home / "measured"
    anchor = median_run([sys.executable, "-c", ANCHOR, str(home / "records.db")], env, reps, report)
    print(f"anchor: python's sqlite3 writing label, state, host, created, command of {count:,} records (newest "
          f"first, tab-separated) into a pipe: {anchor.seconds:.2f} s, peak RSS {format_size(anchor.peak_rss)}")
    for args, what in ((["list", "--limit", "0"], "table"), (["list", "--limit", "0", "--json"], "json"),
                       (["export"], "json"), (["export", "--format", "csv"], "csv"), (["feed"], "atom")):
        run = median_run([sys.executable, "-m", "simtui", *args], env, reps, report)
        print(f"{'simtui ' + ' '.join(args):<30} {what:<5} {count:>9,} records {run.seconds:7.2f} s "
              f"{count / run.seconds:>8,.0f} rec/s  peak RSS {format_size(run.peak_rss):>6}  "
              f"out {format_size(run.output):>6}  {run.seconds / anchor.seconds:6.2f}x anchor time "
              f"{run.peak_rss / anchor.peak_rss:5.2f}x anchor RSS")


# -- the parts -----------------------------------------------------------------------


def bench_scale(count: int, reps: int) -> None:
    with tempfile.TemporaryDirectory(prefix="simtui-bench-records-") as tmp:
        home = Path(tmp)
        seconds = fill(home / "records.db", count)
        size = (home / "records.db").stat().st_size
        print(f"filled {count:,} records in {seconds:.1f} s ({count / seconds:,.0f}/s), {size / 2**20:.0f} MiB")
        bench_streaming(home, count, reps)
        for args in (["list", "--tag", RARE_TAG, "--limit", "50"], ["list", "--search", RARE_WORD],
                     ["list", "--search", COMMON_WORD]):
            timings = timed(f"simtui {' '.join(args)}", simtui_process(home, *args), reps)
            print(timings.line())
            print(target_line(timings, LIST_TARGET))
        startup = timed("python -c pass (floor)", lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), reps)
        print(startup.line())

        store = Store.open(home / "records.db")
        for word in (RARE_WORD, COMMON_WORD, f"{RARE_WORD} diverged"):
            timings = timed(f"in-process search {word!r}", lambda w=word: list(store.find(search=w)), reps * 4)
            print(timings.line())
            print(target_line(timings, SEARCH_TARGET))
        store.close()


def bench_capture(reps: int) -> None:
    with tempfile.TemporaryDirectory(prefix="simtui-bench-capture-") as tmp:
        params = Path(tmp) / "params.json"
        params.write_text(json.dumps({"model": "resnet50", "lr": 0.01, "optimizer": {"name": "adamw"}}))

        def capture() -> None:
            provenance.git_info(ROOT)
            provenance.environment()
            load_params(params)

        timings = timed("capture (git + environment + params)", capture, reps * 4)
        print(timings.line())
        print(target_line(timings, CAPTURE_TARGET))
        for label, part in (("  git_info", lambda: provenance.git_info(ROOT)),
                            ("  environment", provenance.environment)):
            print(timed(label, part, reps * 4).line())


# Copies of the one real run; written in one go, as project.add_record would
# re-pickle the whole shelf once per record.
SMT_FILL = textwrap.dedent("""
    import copy, sys
    from sumatra.projects import load_project
    project = load_project()
    shelf = project.record_store.shelf
    records = shelf[project.name]
    base = project.most_recent()
    for i in range(int(sys.argv[1])):
        record = copy.deepcopy(base)
        record.label = f"{base.label}_{i:04d}"
        record.tags = {f"sweep{i % 100}"}
        records[record.label] = record
    shelf[project.name] = records
    shelf.sync()
""")


def bench_sumatra(smt: str | None, reps: int, count: int) -> None:
    if smt is None:
        print("sumatra: `smt` not found (pip install sumatra gitpython, or pass --smt PATH); comparison skipped")
        return
    python = Path(smt).read_text().splitlines()[0].removeprefix("#!").strip()  # the interpreter smt runs in
    with tempfile.TemporaryDirectory(prefix="simtui-bench-smt-") as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        (project / "main.py").write_text("print('hello')\n")
        for command in (["git", "init", "-q"], ["git", "add", "main.py"],
                        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org", "commit", "-qm", "x"],
                        [smt, "init", "bench"], [smt, "run", "-e", "python", "-m", "main.py"],
                        [python, "-c", SMT_FILL, str(count - 1)]):
            subprocess.run(command, cwd=project, check=True, capture_output=True)
        theirs = timed(f"smt list ({count:,} records)",
                       lambda: subprocess.run([smt, "list"], cwd=project, check=True, stdout=subprocess.DEVNULL), reps)
        fill(Path(tmp) / "records.db", count)
        ours = timed(f"simtui list --limit 0 ({count:,} records)", simtui_process(Path(tmp), "list", "--limit", "0"), reps)
        print(theirs.line())
        print(ours.line())
        print(ratio_line("simtui list / smt list", ours, theirs))


def main(argv: list[str] | None = None) -> None:
    parser = arguments("records", __doc__)
    parser.add_argument("--records", type=int, default=100_000, help="records to fill (default 100,000)")
    parser.add_argument("--reps", type=int, default=5, help="runs of each whole-process timing (default 5)")
    parser.add_argument("--smt", default=shutil.which("smt"), help="Sumatra's smt (default: from PATH)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"every part, small: {SMOKE_RECORDS:,} records, each timing once")
    options = parser.parse_args(argv)
    if options.records < 1 or options.reps < 1:
        parser.error("--records and --reps take a count of 1 or more")
    count, reps = (SMOKE_RECORDS, 1) if options.smoke else (options.records, options.reps)
    bench_scale(count, reps)
    bench_capture(reps)
    bench_sumatra(options.smt, reps, min(count, 1_000))


if __name__ == "__main__":
    main()
