"""The bench runner's plumbing (no timings are checked: speed lives in bench/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", code] if code else [sys.executable, "-m", "bench", *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_list_names_every_entry():
    result = bench("--list")
    assert result.returncode == 0
    listed = dict(line.split("\t") for line in result.stdout.splitlines())
    assert listed["ssh"] == "bench.ssh" and listed["sampling"] == "bench.sampling"


def test_unknown_name_is_a_usage_error():
    result = bench("nope")
    assert result.returncode == 2
    assert "unknown bench nope" in result.stderr


def test_missing_module_is_reported_and_the_rest_still_run():
    code = (
        "import sys, types, bench\n"
        "sys.modules['bench.fine'] = types.SimpleNamespace(main=lambda argv: print('fine ran', argv))\n"
        "bench.REGISTRY.clear(); bench.REGISTRY.update(ghost='bench.ghost', fine='bench.fine')\n"
        "from bench.__main__ import main\n"
        "sys.exit(main(['--', '--reps', '3']))\n"
    )
    result = bench(code=code)
    assert result.returncode == 1
    assert "bench: ghost: module bench.ghost is missing" in result.stdout
    assert "fine ran ['--reps', '3']" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_percentiles_are_nearest_rank():
    code = (
        "from bench.common import Timings\n"
        "t = Timings('x', tuple(float(i) for i in range(1, 101)))\n"
        "print(t.percentile(50), t.percentile(90), t.percentile(99), t.percentile(100), t.median)\n"
    )
    assert bench(code=code).stdout.split() == ["50.0", "90.0", "99.0", "100.0", "50.5"]


def _registered() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from bench import REGISTRY

    return list(REGISTRY)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", _registered())
def test_each_bench_runs_at_a_tiny_size(name, lab):
    """The benches cannot rot: each runs whole at its smoke size (needs sshd: ``lab``
    skips without it, fails under CI=true). No number is checked."""
    result = subprocess.run([sys.executable, "-m", "bench", name, "--", "--smoke"], cwd=ROOT,
                            capture_output=True, text=True, timeout=580)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert result.stdout.startswith(f"== {name} ")
