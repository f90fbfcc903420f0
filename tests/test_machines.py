"""Machines made for a job (run --provider): a real provider whose create makes a
new Unix user with its own sshd and host key on loopback, and whose destroy takes
them away (tests/fixtures/loop_provider.py). Each test checks the machine is gone
at the end, whatever the job's end."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from clirun import popen, simtui, simtui_json
from sshd import wait_for

JOB = ("sh", "-c", 'echo "on $(id -un) in $(pwd)"; cat data.txt; echo result > result.txt; '
       'mkdir -p out && echo deep > out/deep.txt; exit "${CODE:-0}"')


@pytest.fixture
def project(tmp_path):
    """A git checkout with one file the job reads."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "data.txt").write_text("the project's data\n")
    for argv in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"]):
        subprocess.run(["git", *argv], cwd=root, check=True)
    return root


def home() -> Path:
    return Path(os.environ["SIMTUI_HOME"])


def user_gone(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return True
    return False


def ended_and_gone(loop, config, label: str, timeout: float = 60) -> dict:
    """Wait until the record's machine is destroyed; the record then."""
    def gone():
        record = simtui_json("show", label, config=config)
        return record if (record.get("machine") or {}).get("destroyed") else None
    record = wait_for(gone, timeout=timeout, interval=0.2, what=f"the machine of {label} to be destroyed")
    assert record["host"] not in loop.live()
    assert f"destroy {record['host']}" in loop.calls()
    return record


def made_user(loop, name: str) -> str:
    return next(line.split()[3] for line in loop.calls() if line.startswith(f"create {name} "))


def test_a_job_on_a_machine_made_for_it_outputs_pulled_then_the_machine_destroyed(loop_provider, project, tmp_path):
    config = loop_provider.config(tmp_path / "config.toml")
    proc = simtui("run", "--provider", "loop", "--size", "big", "--follow", "--", *JOB,
                  config=config, cwd=project, timeout=120)
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.splitlines()[0]
    record = ended_and_gone(loop_provider, config, label)
    name = record["host"]
    user = made_user(loop_provider, name)
    assert name == f"loop-{label}" and user_gone(user)
    assert f"on {user} in " in proc.stdout and "the project's data" in proc.stdout  # the synced project, there
    assert record["state"] == "succeeded" and record["project"] == "proj"
    assert record["git"]["tree_sha256"]
    machine = record["machine"]
    assert machine["provider"] == "loop" and machine["size"] == "big" and machine["price_per_hour"] == 2.0
    assert machine["destroyed"] >= machine["created"]
    assert machine["cost"] == pytest.approx(2.0 * (machine["destroyed"] - machine["created"]) / 3600, abs=1e-5)
    # the outputs came here before the machine went, each as its record says
    recorded = {o["path"]: o["sha256"] for o in record["outputs"]}
    assert set(recorded) == {"result.txt", "out/deep.txt"}
    here = Path(machine["outputs"])
    assert here == home() / "outputs" / label
    for path, sha in recorded.items():
        assert hashlib.sha256((here / path).read_bytes()).hexdigest() == sha
    assert (here / "result.txt").read_text() == "result\n"
    assert f"making machine loop-{label} (big) with loop" in proc.stderr  # each step told as it comes
    assert f"waiting for SSH on loop-{label} (127.0.3." in proc.stderr
    assert f"sending the project to loop-{label}" in proc.stderr
    # and are checked and pulled from there now that the machine is gone
    found = simtui_json("outputs", label, config=config)
    assert {o["path"]: o["state"] for o in found} == {"result.txt": "unchanged", "out/deep.txt": "unchanged"}
    pulled = simtui("outputs", label, "--pull", str(tmp_path / "got"), config=config)
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "got" / "out" / "deep.txt").read_text() == "deep\n"
    assert "the project's data" in simtui("log", label, config=config).stdout  # the log copy, here
    shown = simtui("show", label, config=config).stdout
    assert "Machine" in shown and "loop" in shown and "big" in shown
    listed = simtui_json("machines", "--all", config=config)
    assert [(m["name"], m["state"]) for m in listed] == [(name, "gone")]
    assert simtui_json("machines", config=config) == []
    # reproduce: a new machine of the same size, the exact tree that ran, the same outputs
    again = simtui("reproduce", label, config=config, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "reproduced: 2/2 outputs identical" in again.stdout
    rerun = simtui_json("list", "--limit", "1", config=config)[0]["label"]
    second = ended_and_gone(loop_provider, config, rerun)
    assert second["host"] == f"loop-{rerun}" != name and second["machine"]["size"] == "big"
    assert second["git"]["tree_sha256"] == record["git"]["tree_sha256"] and second["repeat_of"] == label


def test_a_failed_job_and_a_failed_create_each_leave_no_machine(loop_provider, project, tmp_path):
    config = loop_provider.config(tmp_path / "config.toml")
    proc = simtui("run", "--provider", "loop", "-p", "x=1", "--follow", "--", "sh", "-c", "echo bad > bad.txt; exit 3",
                  config=config, cwd=project, timeout=120)
    assert proc.returncode == 1
    label = proc.stdout.splitlines()[0]
    record = ended_and_gone(loop_provider, config, label)
    assert record["state"] == "failed" and record["exit_code"] == 3
    assert record["machine"]["size"] == "small"  # the provider's own size
    assert (Path(record["machine"]["outputs"]) / "bad.txt").read_text() == "bad\n"
    assert user_gone(made_user(loop_provider, record["host"]))

    failing = loop_provider.config(tmp_path / "failing.toml", env={"LOOP_FAIL": "1"})
    proc = simtui("run", "--provider", "loop", "--", "true", config=failing, cwd=project, timeout=120)
    assert proc.returncode == 3  # did not start
    assert "create failed (exit 1): quota exceeded for this size" in proc.stderr and "Traceback" not in proc.stderr
    record = simtui_json("list", "--limit", "1", config=failing)[0]
    record = ended_and_gone(loop_provider, failing, record["label"])
    assert record["state"] == "failed" and "quota exceeded" in record["log_tail"]
    assert user_gone(made_user(loop_provider, record["host"]))


def test_a_host_key_that_is_not_the_machines_is_refused_and_the_machine_destroyed(loop_provider, project,
                                                                                   tmp_path):
    config = loop_provider.config(tmp_path / "config.toml", env={"LOOP_WRONG_KEY": "1"})
    proc = simtui("run", "--provider", "loop", "--", "sh", "-c", "echo ran > ran.txt",
                  config=config, cwd=project, timeout=120)
    assert proc.returncode == 3
    assert "did not show the host key loop gave: refused" in proc.stderr
    label = simtui_json("list", "--limit", "1", config=config)[0]["label"]
    record = ended_and_gone(loop_provider, config, label)
    assert record["state"] == "failed" and record["started"] is None
    assert record["outputs"] == []


def test_the_key_from_the_providers_host_key_command(loop_provider, project, tmp_path):
    config = loop_provider.config(tmp_path / "config.toml", env={"LOOP_NO_KEY": "1"})
    proc = simtui("run", "--provider", "loop", "--follow", "--", "echo", "keyed", config=config, cwd=project,
                  timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "keyed" in proc.stdout
    ended_and_gone(loop_provider, config, proc.stdout.splitlines()[0])

    without = loop_provider.config(tmp_path / "nokey.toml", env={"LOOP_NO_KEY": "1"}, host_key=None)
    proc = simtui("run", "--provider", "loop", "--", "true", config=without, cwd=project, timeout=120)
    assert proc.returncode == 3 and "never accepts a machine's key unseen" in proc.stderr
    ended_and_gone(loop_provider, without, simtui_json("list", "--limit", "1", config=without)[0]["label"])


def test_kill_ends_the_job_and_destroys_its_machine_and_machines_lists_it_while_live(loop_provider, project,
                                                                                   tmp_path):
    config = loop_provider.config(tmp_path / "config.toml")
    follow = popen("run", "--provider", "loop", "--follow", "--", "sh", "-c", "echo up; exec sleep 300",
                   config=config, cwd=project)
    label = follow.stdout.readline().strip()
    assert follow.stdout.readline().strip() == "up"
    live = simtui_json("machines", config=config)
    assert [(m["label"], m["state"], m["size"]) for m in live] == [(label, "up", "small")]
    assert live[0]["cost"] == pytest.approx(0.5 * live[0]["age"] / 3600, abs=1e-4)
    table = simtui("machines", config=config).stdout
    assert f"loop-{label}" in table and "small" in table
    assert simtui("kill", label, config=config).returncode == 0
    assert follow.wait(timeout=60) == 1
    record = ended_and_gone(loop_provider, config, label)
    assert record["state"] == "killed"
    # never "failed" on the way, though the host's poll saw the job exit 143 before the kill's end was written
    assert [e["detail"] for e in record["events"] if e["kind"] == "state"] == ["queued", "starting", "running",
                                                                              "killed"]
    assert user_gone(made_user(loop_provider, record["host"]))


def test_a_machine_left_by_a_crashed_simtui_is_destroyed_by_the_next(loop_provider, project, tmp_path):
    """kill -9 of the server mid-job: the job goes on on its machine; the next simtui
    settles it when it ends, brings its outputs here, then destroys the machine."""
    config = loop_provider.config(tmp_path / "config.toml")
    proc = simtui("run", "--provider", "loop", "--", "sh", "-c",
                  'echo started; while [ ! -e "$HOME/release" ]; do sleep 0.1; done; echo after > after.txt',
                  config=config, cwd=project, timeout=120)
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.strip()
    wait_for(lambda: simtui_json("show", label, config=config)["state"] == "running", timeout=30, interval=0.2,
             what="the job to run")
    pid = int((home() / "server.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
             what="the server to die")
    assert f"loop-{label}" in loop_provider.live()  # the crash left it
    Path(pwd.getpwnam(made_user(loop_provider, f"loop-{label}")).pw_dir, "release").touch()
    assert simtui("server", "start", config=config).returncode == 0  # the next simtui: its reconcile
    record = ended_and_gone(loop_provider, config, label)
    assert record["state"] == "succeeded"
    assert (Path(record["machine"]["outputs"]) / "after.txt").read_text() == "after\n"


def test_a_machine_whose_making_a_crash_cut_short_is_destroyed_and_its_record_failed(loop_provider, project,
                                                                                      tmp_path):
    config = loop_provider.config(tmp_path / "config.toml", env={"LOOP_HOLD": str(tmp_path / "hold")})
    run = popen("run", "--provider", "loop", "--", "true", config=config, cwd=project)
    wait_for(lambda: loop_provider.live(), timeout=30, what="create to make the machine")
    name = loop_provider.live()[0]
    pid = int((home() / "server.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    assert run.wait(timeout=30) != 0
    (tmp_path / "hold").touch()  # the create that was cut short ends (nobody hears it)
    assert [m["state"] for m in simtui_json("machines", config=config)] == ["creating"]
    label = name.removeprefix("loop-")
    simtui("server", "start", config=config)
    record = ended_and_gone(loop_provider, config, label)
    assert record["state"] == "failed" and "never started" in record["log_tail"]


def test_bad_provider_input_is_one_line_and_exit_2(loop_provider, project, tmp_path):
    config = loop_provider.config(tmp_path / "config.toml")
    for args, said in [
        (("--provider", "nope"), "no provider named 'nope' (configured: loop)"),
        (("--provider", "loop", "--size", "huge"), "provider loop has no size 'huge' (sizes with a price: small, big)"),
        (("--size", "big"), "--size is the size of the machine --provider makes"),
        (("--provider", "loop", "--host", "x"), "give --host or --provider, not both"),
    ]:
        proc = simtui("run", *args, "--", "true", config=config, cwd=project)
        assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
    assert loop_provider.calls() == []
    bad = tmp_path / "bad.toml"
    bad.write_text('[[providers]]\nname = "x"\ncreate = "true"\n')
    proc = simtui("run", "--provider", "x", "--", "true", config=bad, cwd=project)
    assert proc.returncode == 2 and "providers[0] (x): provider has no destroy" in proc.stderr
    assert json.loads(simtui("machines", "--json", config=config).stdout) == []


async def test_the_dashboard_shows_a_machine_while_it_lives(loop_provider, project, tmp_path):
    """A row from its create (what it is doing) until its destroy, sampled while up
    like any host, never offered by the new-job form, gone once destroyed."""
    from textual.widgets import OptionList
    from uikit import until

    from simtui.config import load_config
    from simtui.ui.app import SimtuiApp
    from simtui.ui.widgets.hosts import HostsPanel

    hold = tmp_path / "hold"
    config = loop_provider.config(tmp_path / "config.toml", env={"LOOP_HOLD": str(hold)})
    app = SimtuiApp(load_config(str(config)))

    def rows(panel: OptionList) -> dict[str, str]:
        return {o.id: str(o.prompt) for o in (panel.get_option_at_index(i) for i in range(panel.option_count))}

    async with app.run_test(size=(160, 48)) as pilot:
        panel = app.dashboard.query_one(HostsPanel)
        await app.connect()
        submit = asyncio.ensure_future(app.client.run(  # the library's way, as a script would
            ["sh", "-c", 'echo up; while [ ! -e "$HOME/release" ]; do sleep 0.1; done'], provider="loop",
            project=project))
        name = await until(pilot, lambda: next(iter(loop_provider.live()), None), timeout=30, what="the create")
        await until(pilot, lambda: "creating (loop, small)" in rows(panel).get(name, ""), timeout=30,
                    what="the machine's row while it is made")
        hold.touch()
        record = await submit
        await until(pilot, lambda: " up " in rows(panel).get(name, "") and "CPU" in rows(panel)[name], timeout=30,
                    what="the machine sampled like any host")
        assert name not in [v.name for v in app.hosts.values() if not v.machine]
        Path(pwd.getpwnam(made_user(loop_provider, name)).pw_dir, "release").touch()
        await until(pilot, lambda: name not in rows(panel), timeout=60, what="the row gone with the machine")
        assert name not in app.hosts and name not in loop_provider.live()
        assert app.store.get(record.label).machine["destroyed"]


def test_machines_destroy_ends_a_running_job_as_lost_and_a_failed_destroy_is_kept(loop_provider, project, tmp_path):
    from test_notify import Receiver

    refuse = tmp_path / "refuse"
    config = loop_provider.config(tmp_path / "config.toml", env={"LOOP_DESTROY_FAIL": str(refuse)})
    receiver = Receiver()
    config.write_text(config.read_text() + f'\n[notify]\nurls = ["{receiver.url()}"]\nretries = 0\n')
    proc = simtui("run", "--provider", "loop", "--", "sleep", "300", config=config, cwd=project, timeout=120)
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.strip()
    name = f"loop-{label}"
    refuse.touch()
    failed = simtui("machines", "--destroy", name, config=config)
    assert failed.returncode == 1 and "destroy failed (exit 1): rate limited by the API" in failed.stderr
    [machine] = simtui_json("machines", config=config)
    assert machine["name"] == name and "rate limited" in machine["error"]  # still live, and why
    assert machine["state"] == "up"  # as it was: its job's log and outputs still come here at its end
    assert "rate limited" in simtui("machines", config=config).stdout
    assert name in loop_provider.live() and simtui_json("show", label, config=config)["state"] == "running"
    # told where the user looks, once: it costs until someone acts
    [told] = wait_for(lambda: receiver.got(f"machine {name} could not be destroyed"), timeout=30, what="a notice")
    assert "rate limited by the API" in told["message"] and f"machines --forget {name}" in told["message"]
    assert "0.5/hour" in told["message"] and told["type"] == "failure"
    receiver.close()

    refuse.unlink()
    assert simtui("machines", "--destroy", name, config=config).returncode == 0
    record = ended_and_gone(loop_provider, config, label)
    assert record["state"] == "lost" and record["log_tail"] == "its machine was destroyed"
    assert simtui_json("machines", config=config) == []
    again = simtui("machines", "--destroy", name, config=config)
    assert again.returncode == 2 and f"no live machine named '{name}'" in again.stderr

    # one destroyed by hand (here: never) is forgotten: no longer live, its record says so
    other = simtui("run", "--provider", "loop", "--", "sleep", "300", config=config, cwd=project, timeout=120)
    label = other.stdout.strip()
    forgot = simtui("machines", "--forget", f"loop-{label}", config=config)
    assert forgot.returncode == 0 and "forgotten" in forgot.stdout
    record = simtui_json("show", label, config=config)
    assert record["state"] == "lost" and record["machine"]["left"] == "forgotten: not destroyed by simtui"
    assert simtui_json("machines", config=config) == []
    assert f"destroy loop-{label}" not in loop_provider.calls()  # simtui ran no destroy for it


def test_a_machine_an_image_the_results_here_and_nothing_left(loop_provider, podman_lab, project, tmp_path,
                                                            request):
    """The whole analogsea workflow: a machine of the right size, the provisioned image
    there (rootless podman, no install), the job in it, its results pulled here, the
    machine destroyed."""
    from podman import run_as

    shelf = Path(tempfile.mkdtemp(prefix="simtui-images-"))  # where both users can reach (tmp_path's parents are 0700)
    request.addfinalizer(lambda: shutil.rmtree(shelf, ignore_errors=True))
    shelf.chmod(0o777)
    archive = shelf / "busybox.tar"
    run_as(podman_lab.host.user, "podman", "save", "-q", "-o", str(archive), podman_lab.image, check=True)
    archive.chmod(0o644)
    config = loop_provider.config(tmp_path / "config.toml", env={"LOOP_IMAGES": str(archive)}, container="podman")
    proc = simtui("run", "--provider", "loop", "--size", "big", "--image", podman_lab.image, "--follow", "--",
                  "/bin/busybox", "sh", "-c", 'echo "uid=$(/bin/busybox id -u) in $(pwd)"; '
                  '/bin/busybox cat data.txt; echo made in the image > result.txt',
                  config=config, cwd=project, timeout=180)
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.splitlines()[0]
    record = ended_and_gone(loop_provider, config, label)
    user = made_user(loop_provider, record["host"])
    uid = next(line.split()[1] for line in loop_provider.calls() if line.startswith("uid "))
    assert f"uid={uid} in {record['run_dir']}\nthe project's data" in proc.stdout  # the user's uid kept
    assert record["container"]["engine"] == "podman" and record["container"]["id"].removeprefix("sha256:") \
        == podman_lab.image_id.removeprefix("sha256:")
    assert (Path(record["machine"]["outputs"]) / "result.txt").read_text() == "made in the image\n"
    assert record["machine"]["size"] == "big" and record["machine"]["cost"] is not None
    assert user_gone(user)


def test_a_sweep_makes_a_machine_per_point_and_max_parallel_caps_those_live(loop_provider, project, tmp_path):
    config = loop_provider.config(tmp_path / "config.toml")
    proc = simtui("sweep", "--provider", "loop", "--size", "big", "-p", "x=1..3", "--max-parallel", "2", "--json",
                  "--", "sh", "-c", 'cat "$SIMTUI_PARAMS" > point.json; sleep 0.3', config=config, cwd=project,
                  timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)["records"]
    assert len(records) == 3 and len({r["sweep"] for r in records}) == 1
    begun = [r["label"] for r in records if r["state"] != "queued"]  # each one's steps told as they come
    assert all(f"making machine loop-{label} (big) with loop" in proc.stderr for label in begun)
    waiting = [r for r in records if r["state"] == "queued"]
    assert len(waiting) == 1 and "waiting: for a slot of its sweep" in waiting[0]["log_tail"]
    for record in records:
        done = ended_and_gone(loop_provider, config, record["label"])
        assert done["state"] == "succeeded" and done["machine"]["size"] == "big"
        point = json.loads((Path(done["machine"]["outputs"]) / "point.json").read_text())
        assert point == {"x": done["params"]["x"]}
    assert sorted(simtui_json("show", r["label"], config=config)["params"]["x"] for r in records) == [1, 2, 3]
    live, most = 0, 0  # never more than 2 machines at once, from the provider's own log
    for call in loop_provider.calls():
        live += {"create": 1, "destroy": -1}.get(call.split()[0], 0)
        most = max(most, live)
    assert most == 2 and live == 0
    assert simtui_json("machines", config=config) == []


def test_after_makes_the_machine_once_the_other_job_succeeded_and_never_if_it_failed(loop_provider, project,
                                                                                     tmp_path):
    config = loop_provider.config(tmp_path / "config.toml")
    first = simtui("run", "--provider", "loop", "--", "sh", "-c", 'while [ ! -e "$HOME/go" ]; do sleep 0.1; done',
                   config=config, cwd=project, timeout=120).stdout.strip()
    second = simtui("run", "--provider", "loop", "--after", first, "--", "echo", "second", config=config,
                    cwd=project, timeout=120)
    assert second.returncode == 0, second.stderr
    second = second.stdout.strip()
    waiting = simtui_json("show", second, config=config)
    assert waiting["state"] == "queued" and waiting["log_tail"] == f"waiting: for {first} to succeed"
    assert [c for c in loop_provider.calls() if c.startswith("create")] == [c for c in loop_provider.calls()
                                                                            if f"loop-{first}" in c and "create" in c]
    Path(pwd.getpwnam(made_user(loop_provider, f"loop-{first}")).pw_dir, "go").touch()
    assert ended_and_gone(loop_provider, config, first)["state"] == "succeeded"
    assert ended_and_gone(loop_provider, config, second)["state"] == "succeeded"

    failing = simtui("run", "--provider", "loop", "--", "false", config=config, cwd=project).stdout.strip()
    third = simtui("run", "--provider", "loop", "--after", failing, "--", "true", config=config,
                   cwd=project).stdout.strip()
    ended_and_gone(loop_provider, config, failing)
    record = wait_for(lambda: (r := simtui_json("show", third, config=config))["state"] == "failed" and r,
                      timeout=30, what="the dependent failed")
    assert record["log_tail"] == f"dependency failed: {failing} is failed"
    assert not any(f"loop-{third}" in call for call in loop_provider.calls())  # no machine was ever made for it


def test_a_job_lost_on_its_machine_also_ends_with_the_machine_destroyed(loop_provider, project, tmp_path):
    """Every process of the machine's user killed (the job, its wrapper, simtui's
    sessions): no exit code is left, the job is lost, and its machine goes too."""
    config = loop_provider.config(tmp_path / "config.toml")
    label = simtui("run", "--provider", "loop", "--", "sh", "-c", "echo partial > part.txt; sleep 300",
                   config=config, cwd=project, timeout=120).stdout.strip()
    wait_for(lambda: simtui_json("show", label, config=config)["state"] == "running", timeout=30, interval=0.2,
             what="the job to run")
    subprocess.run(["pkill", "-KILL", "-u", made_user(loop_provider, f"loop-{label}")], check=False)
    record = ended_and_gone(loop_provider, config, label)
    assert record["state"] == "lost" and record["exit_code"] is None
