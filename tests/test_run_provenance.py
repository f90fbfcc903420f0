"""A run's record holds what the job saw and made, captured on its host."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from clirun import simtui, simtui_json
from simtui.hosts import open_host
from simtui.model import LOCAL, HostKind, HostSpec
from sshd import wait_for

TRAIN = """\
import json, sys
params = json.load(open(sys.argv[1]))
data = bytearray(40_000_000)  # something for the peak memory to see
open("result.txt", "w").write(f"lr={params['lr']}\\n")
if len(sys.argv) > 2:  # hold the memory until the sampler has seen it
    import os, time
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.05)
print("trained with", params["lr"])
"""
SETUP = r"""
set -e
rm -rf "$1"; mkdir -p "$1"; cd "$1"
git init -q -b main .
git remote add origin https://example.org/lab/project.git
printf '%s' "$2" > train.py
printf 'numbers\n' > data.txt
printf '{"lr": 0.1}' > params-0.1.json
printf '{"lr": 0.2}' > params-0.2.json
printf 'result.txt\nrelease\n' > .gitignore
git add .gitignore train.py data.txt params-0.1.json params-0.2.json
git -c user.email=t@example.org -c user.name=t commit -qm init
printf '# tuned\n' >> train.py
printf 'scratch\n' > notes.txt
"""


def host_shell(spec: HostSpec, *argv: str) -> str:
    async def go():
        async with open_host(spec) as host:
            return await host.check(list(argv))

    return asyncio.run(go())


@pytest.fixture(params=["local", "h1"])
def project(request, lab, tmp_path):
    """A dirty git checkout on the host, with a params file beside the config."""
    if request.param == LOCAL:
        spec, workdir = HostSpec(name=LOCAL, kind=HostKind.LOCAL), str(tmp_path / "project")
    else:
        spec, workdir = lab.hosts[1].spec, f"{lab.hosts[1].home}/project-{tmp_path.name}"
    host_shell(spec, "sh", "-c", SETUP, "sh", workdir, TRAIN)
    for lr in (0.1, 0.2):
        (tmp_path / f"params-{lr}.json").write_text(json.dumps({"lr": lr, "model": {"depth": 4}}))
    return request.param, workdir, tmp_path


def run(project, lab, lr, *extra, release=None):
    """`simtui run` of train.py; with ``release``, the job holds its memory until
    that file exists on the host (and the command returns at once)."""
    host, workdir, tmp_path = project
    hold = [release] if release else []
    follow = [] if release else ["--follow"]
    return simtui("run", "--host", host, "--workdir", workdir, "--params", str(tmp_path / f"params-{lr}.json"),
                  "--input", "data.txt", "--tag", "prov", *follow, *extra, "--",
                  "python3", "train.py", f"params-{lr}.json", *hold, config=lab.config)


def test_a_run_records_git_params_environment_inputs_outputs(project, lab):
    host, workdir, _ = project
    spec = HostSpec(name=LOCAL, kind=HostKind.LOCAL) if host == LOCAL else lab.hosts[1].spec
    proc = run(project, lab, 0.1, release="release")
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.strip()
    peak = f".simtui/jobs/{label}/peak.json"

    def peak_rss() -> int:
        text = host_shell(spec, "sh", "-c", f"cat {peak} 2>/dev/null || echo {{}}")
        return json.loads(text).get("peak_rss") or 0

    wait_for(lambda: peak_rss() > 40_000_000, timeout=60, what="the sampled peak memory")
    host_shell(spec, "touch", f"{workdir}/release")
    assert simtui("log", label, "--follow", config=lab.config).returncode == 0
    record = simtui_json("show", label, config=lab.config)
    assert record["state"] == "succeeded" and record["host"] == host and record["duration"] > 0
    git = record["git"]
    assert git["remote"] == "https://example.org/lab/project.git" and git["branch"] == "main"
    assert len(git["commit"]) == 40 and git["dirty"] is True
    assert "+# tuned" in git["diff"] and git["untracked"] == ["notes.txt"] and git["changed"] == ["train.py"]
    assert record["params"] == {"lr": 0.1, "model": {"depth": 4}}
    env = record["environment"]
    for key in ("python", "python_executable", "os", "kernel", "arch", "hostname", "cpu", "cpu_count", "memory"):
        assert env[key], key
    assert env["packages"] and env["packages_sha256"]
    assert record["inputs"] == [{"path": "data.txt", "size": 8, "media_type": "text/plain",
                                 "sha256": hashlib.sha256(b"numbers\n").hexdigest()}]
    outputs = {o["path"]: o for o in record["outputs"]}
    assert outputs["result.txt"]["sha256"] == hashlib.sha256(b"lr=0.1\n").hexdigest()
    assert "train.py" not in outputs and "release" in outputs  # changed by the run, not before it
    assert record["peak_rss"] > 40_000_000
    assert record["log_tail"] == "trained with 0.1"


def test_require_clean_refuses_a_dirty_tree_and_starts_nothing(project, lab):
    before = len(simtui_json("list", config=lab.config))
    proc = run(project, lab, 0.1, "--require-clean")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "uncommitted changes" in proc.stderr and "train.py" in proc.stderr and "notes.txt" in proc.stderr
    assert len(simtui_json("list", config=lab.config)) == before


def test_diff_of_two_runs_shows_the_changed_params_and_outputs(project, lab):
    a, b = (run(project, lab, lr).stdout.split()[0] for lr in (0.1, 0.2))
    diff = simtui_json("diff", a, b, config=lab.config)
    assert diff["params"] == {"lr": {"a": 0.1, "b": 0.2}}
    assert set(diff["outputs"]) == {"result.txt"}
    assert diff["outputs"]["result.txt"] == {"a": hashlib.sha256(b"lr=0.1\n").hexdigest(),
                                             "b": hashlib.sha256(b"lr=0.2\n").hexdigest()}
    assert set(diff) == {"a", "b", "params", "run", "outputs"}
    assert set(diff["run"]) == {"command"}  # the params file's name is in the command
