"""Sweeps and metrics, end to end: a 3x2 sweep over two real sshd hosts whose jobs
print metrics, through the real command line."""

from __future__ import annotations

import base64
import json

import pytest

from clirun import simtui, simtui_json
from sshd import wait_for

# Prints its parameters (JSON in base64: not metrics), then five metric lines and a
# JSON one; the point lr=0.3 seed=2 fails.
SCRIPT = r"""
import base64, json, os, sys
p = json.load(open(os.environ["SIMTUI_PARAMS"]))
print("params", base64.b64encode(json.dumps(p).encode()).decode())
for step in range(1, 6):
    print(f"step={step} loss={p['lr'] * p['seed'] / step:.6f} acc: {step / 10}")
print(json.dumps({"step": 6, "loss": 0.0, "note": "done"}))
sys.exit(1 if (p["lr"], p["seed"]) == (0.3, 2) else 0)
"""


@pytest.fixture
def sweep_config(lab, tmp_path):
    """h0 and h1, three jobs each at most: six points spread over both."""
    path = tmp_path / "config.toml"
    path.write_text("[defaults]\ninterval = 0.2\nkill_grace = 2\nmax_jobs = 3\n"
                    + lab.config_toml(local=False, hosts=lab.hosts[:2]))
    return path


def sweep_json(config, *args):
    proc = simtui("sweep", "--json", *args, config=config, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def settled(config, sweep):
    runs = simtui_json("list", "--sweep", sweep, "--limit", "0", config=config)
    return runs if all(r["state"] in ("succeeded", "failed", "killed", "lost") for r in runs) else None


def test_a_sweep_runs_every_point_with_its_own_parameters_and_keeps_their_metrics(sweep_config, tmp_path):
    made = sweep_json(sweep_config, "--mem", "1M", "-p", "lr=0.1,0.2,0.3", "-p", "seed=1..2", "--tag", "study",
                      "--", "python3", "-c", SCRIPT)
    sweep, records = made["sweep"], made["records"]
    assert sweep.startswith("sw") and len(records) == 6 and {r["sweep"] for r in records} == {sweep}
    assert {r["host"] for r in records} == {"h0", "h1"}  # three slots each: spread over both
    assert [r["params"] for r in records] == [{"lr": lr, "seed": seed} for lr in (0.1, 0.2, 0.3) for seed in (1, 2)]

    runs = {}
    wait_for(lambda: runs.update({r["label"]: r for r in settled(sweep_config, sweep) or []}) or len(runs) == 6,
             timeout=90, what="every point to end")
    for label, run in runs.items():
        printed = simtui("log", label, config=sweep_config).stdout.splitlines()[0]
        assert json.loads(base64.b64decode(printed.removeprefix("params "))) == run["params"]  # as it says
        failing = (run["params"]["lr"], run["params"]["seed"]) == (0.3, 2)
        assert run["state"] == ("failed" if failing else "succeeded")

    series = simtui_json("metrics", sweep, config=sweep_config)
    for label, run in runs.items():
        lr, seed = run["params"]["lr"], run["params"]["seed"]
        loss = series[label]["loss"]
        assert [(step, value) for step, value, _ in loss] == (
            [(s, round(lr * seed / s, 6)) for s in range(1, 6)] + [(6, 0.0)])
        assert [(step, value) for step, value, _ in series[label]["acc"]] == [(s, s / 10) for s in range(1, 6)]
        assert "note" not in series[label]
        assert simtui_json("show", label, config=sweep_config)["metrics"] == {"loss": 0.0, "acc": 0.5}
    table = simtui("metrics", sweep, config=sweep_config).stdout
    assert "loss" in table and "acc" in table
    csv_lines = simtui("metrics", sweep, "--csv", "--key", "acc", config=sweep_config).stdout.splitlines()
    assert csv_lines[0] == "label,key,step,value,time" and len(csv_lines) == 1 + 6 * 5

    again = simtui_json("rerun", sweep[:6], "--failed", config=sweep_config, timeout=60)["records"]
    assert len(again) == 1 and again[0]["sweep"] == sweep and again[0]["params"] == {"lr": 0.3, "seed": 2}
    failed_label = next(label for label, r in runs.items() if r["state"] == "failed")
    assert again[0]["repeat_of"] == failed_label
    wait_for(lambda: settled(sweep_config, sweep) is not None, timeout=60, what="the rerun to end")
    listed = simtui_json("list", "--sweep", sweep, "--limit", "0", config=sweep_config)
    assert len(listed) == 7
    assert [r["state"] for r in listed].count("failed") == 2  # the point fails again
    twice = simtui_json("rerun", sweep, "--failed", config=sweep_config, timeout=60)["records"]
    assert [r["repeat_of"] for r in twice] == [again[0]["label"]]  # not the first failure: it was rerun


def test_max_parallel_holds_points_and_kill_takes_a_sweep(sweep_config):
    made = sweep_json(sweep_config, "--host", "h0", "--max-parallel", "1", "-p", "n=1,2,3", "--", "sleep", "60")
    sweep = made["sweep"]
    assert [r["state"] for r in made["records"]] == ["running", "queued", "queued"]
    killed = simtui_json("kill", sweep, config=sweep_config)["records"]
    assert [r["state"] for r in killed] == ["killed"] * 3
    assert simtui("kill", "swffffffffff", config=sweep_config).returncode == 2


def test_sweep_values_are_checked(sweep_config):
    bad = simtui("sweep", "-p", "a=1,2", "-p", "b=1..3", "--zip", "--", "true", config=sweep_config)
    assert bad.returncode == 2 and "--zip needs as many values" in bad.stderr
    empty = simtui("sweep", "-p", "a=3..1", "--", "true", config=sweep_config)
    assert empty.returncode == 2 and "is empty" in empty.stderr
