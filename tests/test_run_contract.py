"""The run contract: what the record says the job got is what it got.

Parameters reach the job merged (file + overrides); every synced run has a folder
of its own; outputs are pulled by label and checked; rerun sends the recorded
tree; reproduce compares outputs; launch and kill tell the truth. Against real
sshd hosts, through the real command line.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from pathlib import Path

import pytest

from clirun import popen, simtui, simtui_json
from projectkit import git, new_project, write
from simtui.hosts import open_host
from simtui.model import LOCAL, HostKind, HostSpec
from sshd import wait_for

READ_PARAMS = """\
import json, os, sys
given = sys.argv[1]
if given.endswith(".toml"):
    import tomllib
    params = tomllib.load(open(given, "rb"))
elif given.endswith(".yaml"):
    import yaml
    params = yaml.safe_load(open(given))
else:
    params = json.load(open(given))
env = {k: os.environ.get(k) for k in ("SIMTUI_LABEL", "SIMTUI_HOST", "SIMTUI_RUN_DIR", "SIMTUI_PARAMS")}
print(json.dumps({"params": params, "argv": given, "env": env, "cwd": os.getcwd()}))
"""


def on_host(spec: HostSpec, script: str, *args: str) -> str:
    async def go():
        async with open_host(spec) as host:
            return await host.check(["sh", "-c", script, "sh", *args])

    return asyncio.run(go())


def spec_of(lab, name: str) -> HostSpec:
    if name == LOCAL:
        return HostSpec(name=LOCAL, kind=HostKind.LOCAL)
    return next(h.spec for h in lab.hosts if h.name == name)


async def put(spec: HostSpec, local: Path, remote: str) -> None:
    async with open_host(spec) as host:
        await host.put(local, remote)


def printed(proc) -> dict:
    """The JSON line the job printed (the log after the label)."""
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("fmt", ["json", "toml", "yaml"])
@pytest.mark.parametrize("host", [LOCAL, "h1"])
def test_the_job_reads_the_merged_parameters_the_record_keeps(lab, tmp_path, host, fmt):
    params = tmp_path / f"params.{fmt}"
    params.write_text({"json": '{"alpha": 3, "beta": {"gamma": 1}}', "toml": "alpha = 3\n[beta]\ngamma = 1\n",
                       "yaml": "alpha: 3\nbeta:\n  gamma: 1\n"}[fmt])
    script = tmp_path / "sim.py"
    script.write_text(READ_PARAMS)
    workdir = [] if host == LOCAL else ["--workdir", "/tmp"]
    path = str(script) if host == LOCAL else f"/tmp/sim-{tmp_path.name}.py"
    if host != LOCAL:  # the script goes where the job runs; the params file stays here
        asyncio.run(put(spec_of(lab, host), script, path))
    proc = simtui("run", "--host", host, *workdir, "--params", str(params), "-p", "alpha=7", "-p", "beta.delta=x",
                  "--follow", "--", "python3", path, str(params), config=lab.config, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.split()[0]
    seen = printed(proc)
    assert seen["params"] == {"alpha": 7, "beta": {"gamma": 1}, "beta.delta": "x"}  # the override won
    env = seen["env"]
    assert env["SIMTUI_LABEL"] == label and env["SIMTUI_HOST"] == host
    assert env["SIMTUI_PARAMS"] == seen["argv"] and env["SIMTUI_PARAMS"].endswith(f"/{label}/params.{fmt}")
    assert env["SIMTUI_RUN_DIR"].endswith(f"/{label}")
    record = simtui_json("show", label, config=lab.config)
    assert record["params"] == seen["params"]
    text = on_host(spec_of(lab, host), 'cat "$1"', env["SIMTUI_PARAMS"])
    assert record["params_file"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert record["params_file"]["format"] == fmt and record["params_file"]["path"] == env["SIMTUI_PARAMS"]
    assert record["argv"][-1] == env["SIMTUI_PARAMS"]  # what ran
    assert record["spec"]["argv"][-1] == str(params)  # what was asked
    assert params.read_text().count("7") == 0  # the user's file is left alone


def test_only_overrides_make_a_json_file_and_toml_without_null_is_refused(lab, tmp_path):
    proc = simtui("run", "-p", "n=5", "--follow", "--", "sh", "-c", 'cat "$SIMTUI_PARAMS"', config=lab.config,
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.split("\n", 1)[1]) == {"n": 5}
    (tmp_path / "p.toml").write_text("a = 1\n")
    before = simtui_json("list", config=lab.config)
    proc = simtui("run", "--params", str(tmp_path / "p.toml"), "-p", "a=null", "--", "true", config=lab.config)
    assert proc.returncode == 2 and "TOML" in proc.stderr and "Traceback" not in proc.stderr
    assert simtui_json("list", config=lab.config) == before  # no record of a job that cannot start


# -- synced runs: a folder of their own ----------------------------------------------

WRITER = """\
import json, os, sys, time
params = json.load(open(sys.argv[1]))
release = sys.argv[2]
while not os.path.exists(release):
    time.sleep(0.05)
os.makedirs("out", exist_ok=True)
open("out/result.txt", "w").write(f"alpha={params['alpha']}\\n")
print("wrote", params["alpha"], sorted(os.listdir(".")))
"""


@pytest.fixture
def synced(tmp_path, lab):
    project = new_project(tmp_path)
    write(project.root, {"writer.py": WRITER, "params.json": '{"alpha": 0}', "version.py": "print('v1')\n"})
    git(project.root, "add", ".")
    git(project.root, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", "writer")
    yield project
    for host in lab.hosts:
        on_host(host.spec, 'rm -rf "simtui/projects/$1"', project.name)


def cli(lab, project, *args, **kwargs):
    return simtui(*args, config=lab.config, cwd=project.root, **kwargs)


def test_concurrent_synced_runs_keep_their_own_outputs_pulled_by_label(lab, synced, tmp_path):
    h0 = lab.hosts[0]
    release = f"{h0.home}/release-{synced.name}"
    labels = {}
    for alpha in (1, 2):
        proc = cli(lab, synced, "run", "--sync", "--host", "h0", "--params", "params.json", "-p", f"alpha={alpha}",
                   "--", "python3", "writer.py", "params.json", release)
        assert proc.returncode == 0, proc.stderr
        labels[alpha] = proc.stdout.strip()
    wait_for(lambda: all(simtui_json("show", label, config=lab.config)["state"] == "running"
                         for label in labels.values()), timeout=30, what="both jobs running")
    on_host(h0.spec, 'touch "$1"', release)
    for alpha, label in labels.items():
        proc = cli(lab, synced, "log", label, "--follow")
        assert proc.returncode == 0, proc.stderr
        assert f"wrote {alpha}" in proc.stdout and ".simtui-manifest" not in proc.stdout
    for alpha, label in labels.items():
        record = simtui_json("show", label, config=lab.config)
        assert [o["path"] for o in record["outputs"]] == ["out/result.txt"]  # nothing of the other run
        assert record["run_dir"].endswith(f"/.simtui-runs/{label}") and record["argv"][2] == "params.json"
        listed = simtui_json("outputs", label, config=lab.config)
        assert [(o["path"], o["state"]) for o in listed] == [("out/result.txt", "unchanged")]
        dest = tmp_path / f"pulled-{alpha}"
        proc = cli(lab, synced, "outputs", label, "--pull", str(dest))
        assert proc.returncode == 0, proc.stderr
        content = (dest / "out/result.txt").read_bytes()
        assert content == f"alpha={alpha}\n".encode()
        assert hashlib.sha256(content).hexdigest() == record["outputs"][0]["sha256"]
    # the project folder itself holds no run's files, and its params file is the synced one
    folder = f"simtui/projects/{synced.name}"
    assert on_host(h0.spec, 'cat "$1/params.json"; ls "$1"', folder).startswith('{"alpha": 0}')
    assert "out" not in on_host(h0.spec, 'ls "$1"', folder).split()


def test_pull_names_an_output_that_no_longer_matches(lab, synced, tmp_path):
    release = f"{lab.hosts[0].home}/release-{synced.name}"
    on_host(lab.hosts[0].spec, 'touch "$1"', release)
    proc = cli(lab, synced, "run", "--sync", "--host", "h0", "--params", "params.json", "--follow", "--",
               "python3", "writer.py", "params.json", release)
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.split()[0]
    run_dir = simtui_json("show", label, config=lab.config)["run_dir"]
    on_host(lab.hosts[0].spec, 'echo tampered > "$1/out/result.txt"', run_dir)
    assert simtui_json("outputs", label, config=lab.config)[0]["state"] == "changed"
    proc = cli(lab, synced, "outputs", label, "--pull", str(tmp_path / "got"))
    assert proc.returncode == 1 and "out/result.txt" in proc.stderr and "Traceback" not in proc.stderr


def test_rerun_of_an_old_synced_run_on_another_host_runs_the_old_code(lab, synced):
    first = cli(lab, synced, "run", "--sync", "--host", "h0", "--follow", "--", "python3", "version.py")
    assert first.returncode == 0 and first.stdout.split()[1] == "v1", first.stderr
    old = simtui_json("show", first.stdout.split()[0], config=lab.config)
    write(synced.root, {"version.py": "print('v2')\n"})
    git(synced.root, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qam", "v2")
    moved = cli(lab, synced, "run", "--sync", "--host", "h0", "--follow", "--", "python3", "version.py")
    assert moved.stdout.split()[1] == "v2"
    again = cli(lab, synced, "rerun", old["label"], "--host", "h1", "--follow")
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[1] == "v1"  # the old code, on a host it never ran on
    new = simtui_json("show", again.stdout.split()[0], config=lab.config)
    assert new["repeat_of"] == old["label"] and new["host"] == "h1"
    assert new["git"]["commit"] == old["git"]["commit"] != git(synced.root, "rev-parse", "HEAD").strip()
    assert new["git"]["tree_sha256"] == old["git"]["tree_sha256"]


REPRO = """\
import os, sys
os.makedirs("out", exist_ok=True)
open("out/a.txt", "w").write("fixed\\n")
if len(sys.argv) > 1:
    open("out/b.txt", "w").write(os.environ["SIMTUI_LABEL"])
"""


@pytest.mark.parametrize("noisy", [False, True])
def test_reproduce_compares_outputs_and_keeps_the_verdict(lab, synced, noisy):
    write(synced.root, {"repro.py": REPRO})
    proc = cli(lab, synced, "run", "--sync", "--host", "h0", "--follow", "--", "python3", "repro.py",
               *(["noisy"] if noisy else []))
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.split()[0]
    proc = cli(lab, synced, "reproduce", label, "--host", "h1", timeout=120)
    assert proc.returncode == (1 if noisy else 0), proc.stderr
    rerun = proc.stdout.split(":")[0].split()[-1]
    record = simtui_json("show", rerun, config=lab.config)
    assert record["repeat_of"] == label and record["reproduction"]["of"] == label
    if noisy:
        assert "not reproduced: 1/2 outputs identical" in proc.stdout
        assert "out/b.txt: content differs" in proc.stdout and "h0" in proc.stdout  # and what differs: the host
        assert record["reproduction"]["reproduced"] is False
    else:
        assert "reproduced: 1/1 outputs identical" in proc.stdout
        assert record["reproduction"]["reproduced"] is True


# -- launch and kill tell the truth --------------------------------------------------------


@pytest.fixture
def paused_lab(make_lab, tmp_path):
    lab = make_lab(1)
    config = tmp_path / "quick.toml"
    config.write_text("[defaults]\ntimeout = 2.0\ninterval = 0.2\n" + lab.config_toml())
    return lab, config


def test_a_launch_to_a_hung_host_fails_the_record_and_exits_3(paused_lab):
    lab, config = paused_lab
    lab.hosts[0].pause()
    proc = simtui("run", "--host", "x0", "--", "true", config=config)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "did not start" in proc.stderr
    [record] = simtui_json("list", config=config)
    assert record["state"] == "failed" and "x0" in record["log_tail"]


def test_a_server_killed_before_the_launch_leaves_no_starting_record(paused_lab, simtui_env):
    lab, config = paused_lab
    lab.hosts[0].pause()
    client = popen("run", "--host", "x0", "--", "true", config=config)
    try:
        record = wait_for(lambda: next(iter(simtui_json("list", config=config)), None), timeout=30,
                          what="the record")
        assert record["state"] == "starting"
        os.kill(int((simtui_env / "home" / "server.pid").read_text()), signal.SIGKILL)  # mid-launch
    finally:
        client.kill()
        client.wait()
    lab.hosts[0].resume()
    assert simtui("run", "--host", "x0", "--", "true", config=config).returncode == 0  # the next command there
    settled = wait_for(lambda: (r := simtui_json("show", record["label"], config=config))["state"] != "starting"
                       and r, timeout=30, what="the record settled")
    assert settled["state"] == "failed" and "never started" in settled["log_tail"]
    # and it never will: the job folder is claimed
    assert "cancelled" in on_host(lab.hosts[0].spec, 'cat "$1"', f".simtui/jobs/{record['label']}/pid")


def test_a_client_gone_before_the_launch_leaves_the_launch_to_the_server(paused_lab):
    lab, config = paused_lab
    lab.hosts[0].pause()
    client = popen("run", "--host", "x0", "--", "true", config=config)
    record = wait_for(lambda: next(iter(simtui_json("list", config=config)), None), timeout=30, what="the record")
    client.send_signal(signal.SIGINT)
    client.wait(timeout=30)
    # the server finishes what it started: the hung host times out, the record says so
    settled = wait_for(lambda: (r := simtui_json("show", record["label"], config=config))["state"] != "starting"
                       and r, timeout=30, what="the record settled")
    assert settled["state"] == "failed" and "x0" in settled["log_tail"]
    lab.hosts[0].resume()


def test_kill_checks_pid_and_start_time_before_any_signal(lab):
    h1 = lab.hosts[1].spec
    proc = simtui("run", "--host", "h1", "--", "sleep", "300", config=lab.config)
    label = proc.stdout.strip()
    stranger = on_host(h1, "setsid sleep 301 </dev/null >/dev/null 2>&1 & echo $!").strip()
    start = on_host(h1, 's=$(cat /proc/$1/stat); s=${s##*) }; set -- $s; echo ${20}', stranger).strip()
    job_pid = simtui_json("show", label, config=lab.config)["pid"]
    on_host(h1, 'echo "$2 $3" > ".simtui/jobs/$1/pid"', label, stranger, start)  # rewritten
    try:
        proc = simtui("kill", label, config=lab.config)
        assert proc.returncode == 0, proc.stderr
        assert on_host(h1, 'kill -0 "$1" && echo alive', stranger).strip() == "alive"
        gone = 's=$(ps -o stat= -p "$1"); case $s in ""|Z*) echo gone ;; *) echo alive ;; esac'  # a zombie is gone
        assert on_host(h1, gone, str(job_pid)).strip() == "gone"
        assert simtui_json("show", label, config=lab.config)["state"] == "killed"
    finally:
        on_host(h1, 'kill "$1"', stranger)


def test_a_job_that_wrote_its_exit_file_is_not_recorded_killed(lab, tmp_path):
    proc = simtui("run", "--host", "local", "--", "true", config=lab.config, cwd=tmp_path)
    label = proc.stdout.strip()
    exit_file = Path.home() / ".simtui" / "jobs" / label / "exit"
    wait_for(exit_file.exists, what="the exit file")
    proc = simtui("kill", label, config=lab.config)
    assert proc.returncode == 2 and "already succeeded" in proc.stderr, proc.stdout + proc.stderr
    record = simtui_json("show", label, config=lab.config)
    assert record["state"] == "succeeded" and record["exit_code"] == 0
    assert [e["detail"] for e in record["events"] if e["kind"] == "state"][-1] == "succeeded"


async def test_kill_cancels_a_starting_job_before_its_launch(lab, tmp_path):
    from simtui.config import load_config
    from simtui.engine.jobs import Engine
    from simtui.model import JobSpec, JobState
    from simtui.store import Store

    store = Store.open(tmp_path / "r.db")
    engine = Engine(load_config(str(lab.config)), store)
    try:
        # a record starting: hold the launch until the kill has been through
        gate = asyncio.Event()
        start = engine.start

        async def held(record, **options):
            await gate.wait()
            return await start(record, **options)

        engine.start = held
        submitted = asyncio.create_task(engine.submit(JobSpec(argv=("sleep", "300"), host="h1")))
        for _ in range(500):
            record = next(store.find(state="starting"), None)
            if record is not None:
                break
            await asyncio.sleep(0.02)
        assert record is not None, "no record starting"
        killed = await engine.kill(record.label)
        assert killed.state is JobState.KILLED and killed.log_tail == "cancelled before it started"
        gate.set()
        final = await submitted
        assert final.state is JobState.KILLED  # the launch found it cancelled and changed nothing
        assert store.get(record.label).pid is None
    finally:
        await engine.close()
        store.close()


def test_a_fifo_in_the_workdir_does_not_hang_the_job(lab):
    h1 = lab.hosts[1]
    workdir = f"{h1.home}/fifo-test"
    on_host(h1.spec, 'rm -rf "$1"; mkdir -p "$1"', workdir)
    proc = simtui("run", "--host", "h1", "--workdir", workdir, "--follow", "--", "sh", "-c",
                  "mkfifo pipe && echo made > made.txt", config=lab.config, timeout=60)
    assert proc.returncode == 0, proc.stderr
    record = simtui_json("show", proc.stdout.split()[0], config=lab.config)
    assert [o["path"] for o in record["outputs"]] == ["made.txt"]
