"""Records at scale: 100,000 records in a throwaway SIMTUI_HOME, then

- ``simtui list --tag X --limit 50`` and ``simtui list --search WORD``, each a
  whole process (start-up included), against a 0.5 s target;
- full-text search in-process against a 50 ms target;
- provenance capture per run (git_info + environment + a small params file)
  against a 90 ms target;
- where Sumatra's ``smt`` is installed (or given with --smt), ``smt list`` and
  ``simtui list --limit 0`` over the same 1,000 runs.

``python -m bench.records [--records N] [--reps N] [--smt PATH]``
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
from pathlib import Path
from typing import Any

from bench.common import arguments, Timings, measure, ms, ratio_line
from simtui import provenance
from simtui.model import JobState, Record
from simtui.store import Store

ROOT = Path(__file__).resolve().parent.parent
LIST_TARGET, SEARCH_TARGET, CAPTURE_TARGET = 0.5, 0.050, 0.090
BATCH = 5_000
RARE_TAG, RARE_WORD, COMMON_WORD = "sweep42", "topic17", "python"  # in 1%, 1% and 100% of records
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


# -- the parts -----------------------------------------------------------------------


def bench_scale(count: int, reps: int) -> None:
    with tempfile.TemporaryDirectory(prefix="simtui-bench-records-") as tmp:
        home = Path(tmp)
        seconds = fill(home / "records.db", count)
        size = (home / "records.db").stat().st_size
        print(f"filled {count:,} records in {seconds:.1f} s ({count / seconds:,.0f}/s), {size / 2**20:.0f} MiB")
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
            provenance.load_params(params)

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


def bench_sumatra(smt: str | None, reps: int, count: int = 1_000) -> None:
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
    options = parser.parse_args(argv)
    bench_scale(options.records, options.reps)
    bench_capture(options.reps)
    bench_sumatra(options.smt, options.reps)


if __name__ == "__main__":
    main()
