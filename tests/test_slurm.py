"""A Slurm cluster as a host, against a real single-node Slurm (slurmctld, slurmd,
munge) whose login node is a real sshd: submit, wait, run, follow, cancel, time
out, fail, GPUs as gres, rerun, dependencies. Through the real command line.
"""

from __future__ import annotations

import json
import threading

import pytest

from clirun import popen, simtui, simtui_json
from sshd import wait_for


@pytest.fixture
def cluster(slurm_lab, tmp_path):
    """The config of the cluster (polled fast) and the lab behind it."""
    slurm_lab.config = slurm_lab.quick_config(tmp_path / "config.toml")
    return slurm_lab


def show(label, config):
    return simtui_json("show", label, config=config)


def submit(config, *args) -> str:
    proc = simtui("run", *args, config=config)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def wait_state(label, config, *states, timeout=60):
    found = {}

    def reached():
        found.update(show(label, config))
        return found["state"] in states

    wait_for(reached, timeout=timeout, interval=0.2, what=f"{label} to be {' or '.join(states)}")
    return found


def test_a_job_runs_through_sbatch_with_its_needs_and_provenance(cluster):
    proc = simtui("run", "--host", "lab", "--cpus", "1", "--mem", "200M", "--time", "0:10:00", "--follow",
                  "--", "sh", "-c", 'echo "on $(hostname) as job $SLURM_JOB_ID in $SIMTUI_LABEL"',
                  config=cluster.config, timeout=90)
    assert proc.returncode == 0, proc.stderr
    label, output = proc.stdout.split("\n", 1)
    record = show(label, cluster.config)
    scheduler = record["scheduler"]
    assert f"as job {scheduler['job_id']} in {label}" in output
    assert record["state"] == "succeeded" and record["exit_code"] == 0 and record["host"] == "lab"
    assert scheduler["state"] == "COMPLETED" and scheduler["partition"] == "debug" and scheduler["nodes"] == "localhost"
    for word in ("--cpus-per-task=1", "--mem=200M", "--time=0:10:00", f"--job-name=simtui-{label}"):
        assert word in scheduler["sbatch"]
    assert record["pid"] == int(scheduler["job_id"])
    assert record["environment"]["hostname"]  # captured by the wrapper on the compute node
    assert record["started"] <= record["ended"]
    shown = simtui("show", label, config=cluster.config).stdout
    assert "Scheduler" in shown and "COMPLETED" in shown


def test_a_failed_exit_code_is_failed(cluster):
    proc = simtui("run", "--host", "lab", "--follow", "--", "sh", "-c", "echo bad >&2; exit 3",
                  config=cluster.config, timeout=90)
    assert proc.returncode == 1
    label = proc.stdout.splitlines()[0]
    record = show(label, cluster.config)
    assert record["state"] == "failed" and record["exit_code"] == 3
    assert record["scheduler"]["state"] == "FAILED" and "bad" in record["log_tail"]


def test_pending_says_why_and_scancel_works_while_pending_and_running(cluster):
    big = submit(cluster.config, "--host", "lab", "--cpus", "2", "--mem", "100M", "--", "sleep", "300")
    wait_state(big, cluster.config, "running")
    small = submit(cluster.config, "--host", "lab", "--cpus", "1", "--mem", "100M", "--", "true")
    waiting = wait_state(small, cluster.config, "queued")
    wait_for(lambda: show(small, cluster.config)["log_tail"] == "waiting: waiting for resources",
             timeout=30, what="the plain reason")
    assert waiting["scheduler"]["state"] == "PENDING"
    listed = simtui("list", config=cluster.config).stdout
    assert small in listed and "queued" in listed

    assert simtui("kill", small, config=cluster.config).returncode == 0
    pending = wait_state(small, cluster.config, "killed")
    assert pending["started"] is None

    assert simtui("kill", big, config=cluster.config).returncode == 0
    running = wait_state(big, cluster.config, "killed")
    wait_for(lambda: show(big, cluster.config)["scheduler"]["state"] == "CANCELLED", timeout=30,
             what="Slurm's CANCELLED in the record")
    assert running["ended"] >= running["started"]
    assert cluster.cluster.queue() == []  # nothing of either is left in Slurm's queue


def test_a_job_past_its_time_limit_is_failed_with_timeout(cluster):
    label = submit(cluster.config, "--host", "lab", "--time", "0:05", "--", "sleep", "600")
    record = wait_state(label, cluster.config, "failed", timeout=150)  # Slurm counts limits in whole minutes
    wait_for(lambda: show(label, cluster.config)["scheduler"]["state"] == "TIMEOUT", timeout=30,
             what="Slurm's TIMEOUT in the record")
    assert record["exit_code"] in (None, 143, 137)


def test_follow_goes_on_across_an_sshd_drop_every_line_once(cluster):
    reader = popen("run", "--host", "lab", "--follow", "--", "sh", "-c",
                   "for i in $(seq 1 40); do echo line-$i; sleep 0.1; done", config=cluster.config)
    lines: list[str] = []
    thread = threading.Thread(target=lambda: lines.extend(reader.stdout), daemon=True)
    thread.start()
    wait_for(lambda: any(line.startswith("line-") for line in lines), timeout=60, what="the first lines")
    cluster.host.stop()  # the login node's sshd, listener and sessions
    cluster.host.start()
    assert reader.wait(timeout=120) == 0, reader.stderr.read()
    thread.join(timeout=10)
    assert [line.strip() for line in lines[1:]] == [f"line-{i}" for i in range(1, 41)]


def test_gpus_go_as_gres_to_the_partition_asked(cluster):
    proc = simtui("run", "--host", "lab/gpu", "--gpus", "1", "--mem", "100M", "--follow", "--",
                  "sh", "-c", "echo gpus=$SLURM_JOB_GPUS", config=cluster.config, timeout=90)
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.splitlines()[0]
    record = show(label, cluster.config)
    assert record["scheduler"]["partition"] == "gpu" and "--gres=gpu:1" in record["scheduler"]["sbatch"]
    assert "gpus=" in proc.stdout

    placed = simtui_json("place", "--gpus", "2", config=cluster.config)
    assert placed["host"] in ("lab/debug", "lab/gpu") and placed["reasons"]


def test_rerun_and_after_stay_on_the_cluster(cluster):
    first = submit(cluster.config, "--host", "lab/gpu", "--mem", "100M", "--", "sh", "-c", "sleep 1; echo first")
    second = submit(cluster.config, "--host", "lab", "--after", first, "--", "echo", "second")
    queued = show(second, cluster.config)
    assert queued["state"] in ("queued", "running", "succeeded")
    assert f"--dependency=afterok:{show(first, cluster.config)['pid']}" in queued["scheduler"]["sbatch"]
    assert wait_state(second, cluster.config, "succeeded")["exit_code"] == 0

    rerun = simtui("rerun", first, "--follow", config=cluster.config, timeout=90)
    assert rerun.returncode == 0, rerun.stderr
    again = show(rerun.stdout.splitlines()[0], cluster.config)
    assert again["repeat_of"] == first and again["host"] == "lab" and again["scheduler"]["partition"] == "gpu"
    assert "first" in rerun.stdout


def test_reproduce_compares_the_outputs_made_on_the_compute_node(cluster, tmp_path):
    made = simtui("run", "--host", "lab", "--mem", "100M", "--follow", "--", "sh", "-c",
                  "mkdir -p out && echo 42 > out/answer.txt", config=cluster.config, timeout=90)
    assert made.returncode == 0, made.stderr
    label = made.stdout.splitlines()[0]
    assert [o["path"] for o in show(label, cluster.config)["outputs"]] == ["out/answer.txt"]
    verdict = simtui_json("reproduce", label, config=cluster.config, timeout=120)
    assert verdict["reproduced"] and verdict["identical"] == 1
    assert show(verdict["label"], cluster.config)["scheduler"]["state"] == "COMPLETED"


def test_a_cluster_whose_login_node_is_this_machine(slurm_lab, tmp_path):
    config = tmp_path / "local.toml"
    config.write_text(f'[[hosts]]\nname = "here"\nkind = "slurm"\nlocal = true\njobs_dir = "{tmp_path}/jobs"\n')
    proc = simtui("run", "--host", "here", "--mem", "100M", "--follow", "--", "sh", "-c", "echo job $SLURM_JOB_ID",
                  config=config, timeout=90)
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.splitlines()[0]
    record = show(label, config)
    assert record["state"] == "succeeded" and f"job {record['scheduler']['job_id']}" in proc.stdout
    assert simtui_json("hosts", config=config)[-1]["address"] == "localhost"


def test_a_sweep_on_the_cluster_is_one_job_array(cluster):
    proc = simtui("sweep", "--json", "--host", "lab", "--mem", "100M", "--max-parallel", "2", "-p", "n=1..3", "--",
                  "sh", "-c", 'echo "got $(tr -d " \\n" < "$SIMTUI_PARAMS") in task $SLURM_ARRAY_TASK_ID"; echo step=1 n=$n',
                  config=cluster.config, timeout=90)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)["records"]
    ids = [r["scheduler"]["job_id"] for r in records]
    base = records[0]["scheduler"]["array"]
    assert ids == [f"{base}_{i}" for i in range(3)] and "--array=0-2%2" in records[0]["scheduler"]["sbatch"]
    for i, record in enumerate(records):
        done = wait_state(record["label"], cluster.config, "succeeded")
        assert done["scheduler"]["state"] == "COMPLETED" and done["started"] <= done["ended"]
        assert simtui("log", record["label"], config=cluster.config).stdout.splitlines()[0] == (
            f'got {{"n":{i + 1}}} in task {i}')
