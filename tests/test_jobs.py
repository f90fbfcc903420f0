"""Jobs that survive: launch, follow with resume, kill, rerun, reconcile, queue.

Against real sshd hosts, through the real command line.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading

import pytest

from clirun import popen, simtui, simtui_json
from simtui.hosts import open_host
from sshd import wait_for

TRICKY = ["a b", "it's", '"q"', "$(echo no)", "; echo no", "*", "\\", "ünï", "", "--x"]
ARGV_PRINTER = ["python3", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]


def show(label, config):
    return simtui_json("show", label, config=config)


def host_shell(spec, script: str) -> str:
    """Run a shell script on the host directly (behind simtui's back)."""

    async def go():
        async with open_host(spec) as host:
            return (await host.run(["sh", "-c", script])).stdout

    return asyncio.run(go())


@pytest.fixture
def quick_config(lab, tmp_path):
    """The lab's hosts with fast polling and a short kill grace."""
    path = tmp_path / "config.toml"
    path.write_text("[defaults]\ninterval = 0.2\nkill_grace = 2\n" + lab.config_toml())
    return path


@pytest.mark.parametrize("host", ["local", "h0"])
def test_argv_runs_exactly_as_given(quick_config, host):
    proc = simtui("run", "--host", host, "--follow", "--", *ARGV_PRINTER, *TRICKY, config=quick_config)
    assert proc.returncode == 0, proc.stderr
    label, output = proc.stdout.split("\n", 1)
    assert json.loads(output) == TRICKY
    record = show(label, quick_config)
    assert record["state"] == "succeeded" and record["exit_code"] == 0 and record["host"] == host
    assert record["argv"] == ARGV_PRINTER + TRICKY


def test_exit_3_is_failed_with_exit_code_3(quick_config):
    proc = simtui("run", "--host", "h1", "--follow", "--", "sh", "-c", "echo bad >&2; exit 3", config=quick_config)
    assert proc.returncode == 1
    label = proc.stdout.splitlines()[0]
    assert "bad" in proc.stdout and f"{label} failed exit code 3" in proc.stderr
    record = show(label, quick_config)
    assert record["state"] == "failed" and record["exit_code"] == 3
    assert record["log_tail"] == "bad" and record["duration"] >= 0


def test_a_job_survives_its_hosts_sshd_going_down_mid_run(make_lab, tmp_path):
    """Every line exactly once though sshd (listener and sessions) dies and comes back."""
    lab = make_lab(1)
    config = tmp_path / "c.toml"
    config.write_text("[defaults]\ninterval = 0.2\n" + lab.config_toml())
    script = "for i in $(seq 1 40); do echo line $i; sleep 0.1; done"
    follower = popen("run", "--host", "x0", "--follow", "--", "sh", "-c", script, config=config)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout), daemon=True)
    reader.start()
    wait_for(lambda: len(lines) >= 6, timeout=30, what="the first lines")
    lab.hosts[0].stop()  # listener and every session: the follower's connection dies
    lab.hosts[0].start()
    assert follower.wait(timeout=60) == 0, follower.stderr.read()
    reader.join(timeout=10)
    label = lines[0].strip()
    assert [l.rstrip("\n") for l in lines[1:]] == [f"line {i}" for i in range(1, 41)]
    record = show(label, config)
    assert record["state"] == "succeeded"
    log = simtui("log", label, config=config)
    assert log.stdout == "".join(f"line {i}\n" for i in range(1, 41))


def test_kill_leaves_no_process_behind(quick_config, lab):
    proc = simtui("run", "--host", "h2", "--", "sh", "-c", "trap '' TERM; while :; do sleep 0.1; done",
                  config=quick_config)
    label = proc.stdout.strip()
    pid = show(label, quick_config)["pid"]
    killed = simtui("kill", label[:6], config=quick_config)
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.strip() == f"{label} killed"
    record = show(label, quick_config)
    assert record["state"] == "killed" and record["exit_code"] == 137
    left = host_shell(lab.hosts[2].spec, f"ps -o stat= -s {pid} | grep -v '^Z' || true")
    assert left.strip() == ""
    again = simtui("kill", label, config=quick_config)
    assert again.returncode == 2 and "already killed" in again.stderr


def test_rerun_makes_a_new_record_that_repeats_the_old(quick_config):
    first = simtui("run", "--host", "h0", "--tag", "sweep", "--follow", "--", "echo", "hi", config=quick_config)
    label = first.stdout.split()[0]
    again = simtui("rerun", label, "--host", "h1", "--follow", config=quick_config)
    assert again.returncode == 0, again.stderr
    new_label, output = again.stdout.split("\n", 1)
    assert output == "hi\n" and new_label != label
    record = show(new_label, quick_config)
    assert record["repeat_of"] == label and record["host"] == "h1" and record["tags"] == ["sweep"]


def test_a_job_end_is_in_the_records_with_no_other_command(quick_config, lab):
    proc = simtui("run", "--host", "h0", "--", "sh", "-c", "echo quiet; exit 4", config=quick_config)
    label = proc.stdout.strip()
    assert show(label, quick_config)["state"] in ("running", "failed")  # the server's follower may be done
    # the job ends (its stdin is /dev/null) while no simtui command runs: the server settles it
    record = wait_for(lambda: (r := show(label, quick_config))["state"] != "running" and r["log_tail"] and r,
                      timeout=30, what="the record to show the end")  # `show` only reads the database
    assert record["state"] == "failed" and record["exit_code"] == 4 and record["log_tail"] == "quiet"
    assert simtui_json("list", "--state", "failed", config=quick_config)[0]["label"] == label
    assert simtui("log", label, config=quick_config).stdout == "quiet\n"


def test_a_vanished_pid_is_lost(quick_config, lab):
    label = simtui("run", "--host", "h1", "--", "sleep", "60", config=quick_config).stdout.strip()
    pid = show(label, quick_config)["pid"]
    host_shell(lab.hosts[1].spec, f"kill -s KILL -- -{pid}")  # no trap runs: no exit file
    wait_for(lambda: show(label, quick_config)["state"] == "lost", timeout=30, what="state lost")  # the server saw it


def test_after_waits_for_success_and_fails_on_failure(quick_config, lab, tmp_path):
    release = f"release-{secrets.token_hex(6)}"  # the hosts' homes outlive a test session
    hold = f"until [ -e {release} ]; do sleep 0.05; done"
    first = simtui("run", "--host", "h0", "--", "sh", "-c", hold, config=quick_config).stdout.strip()
    bad = simtui("run", "--host", "h0", "--", "sh", "-c", f"{hold}; exit 1", config=quick_config).stdout.strip()
    then = simtui("run", "--host", "h1", "--after", first, "--", "echo", "after", config=quick_config).stdout.strip()
    never = simtui("run", "--host", "h1", "--after", bad[:8], "--", "echo", "no", config=quick_config).stdout.strip()
    assert show(then, quick_config)["state"] == "queued"
    listed = {r["label"]: r["state"] for r in simtui_json("list", config=quick_config)}
    assert listed[then] == "queued" and listed[never] == "queued"
    host_shell(lab.hosts[0].spec, f"touch {release}")  # no command runs from here: the server does it all
    wait_for(lambda: show(then, quick_config)["state"] == "succeeded", timeout=30, what="the dependent job")
    wait_for(lambda: show(never, quick_config)["state"] == "failed", timeout=30, what="dependency failed")
    assert show(then, quick_config)["started"] >= show(first, quick_config)["ended"]
    assert "dependency failed" in show(never, quick_config)["log_tail"]


def test_max_jobs_holds_extra_jobs_queued(lab, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[defaults]\ninterval = 0.2\n" + lab.config_toml().replace(
        'name = "h2"', 'name = "h2"\nmax_jobs = 1'))
    release = f"release-{secrets.token_hex(6)}"
    hold = ["sh", "-c", f"until [ -e {release} ]; do sleep 0.05; done"]
    labels = [simtui("run", "--host", "h2", "--", *hold, config=config).stdout.strip() for _ in range(2)]
    assert [show(l, config)["state"] for l in labels] == ["running", "queued"]
    host_shell(lab.hosts[2].spec, f"touch {release}")
    proc = simtui("log", labels[1], "--follow", config=config, timeout=60)  # the server starts it in turn
    assert proc.returncode == 0, proc.stderr
    first, second = (show(l, config) for l in labels)
    assert second["state"] == "succeeded" and second["started"] >= first["ended"]


def test_log_follow_joining_mid_run_shows_every_line_once(quick_config, lab):
    script = "echo one; echo two; until [ -e release-$1 ]; do sleep 0.05; done; echo three"
    label = simtui("run", "--host", "h0", "--", "sh", "-c", script, "sh", "x", config=quick_config).stdout.strip()
    log = f".simtui/jobs/{label}/out.log"
    wait_for(lambda: host_shell(lab.hosts[0].spec, f"cat {log}") == "one\ntwo\n", what="the first lines")
    follower = popen("log", label, "--follow", config=quick_config)
    host_shell(lab.hosts[0].spec, "touch release-x")
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert out == "one\ntwo\nthree\n"
    host_shell(lab.hosts[0].spec, "rm -f release-x")
