"""Smoke test of the Slurm fixtures: a job submitted over real ssh runs on the cluster."""

from __future__ import annotations

import tomllib
from pathlib import Path

from sshd import wait_for


def test_a_job_submitted_over_ssh_runs_to_completion(slurm_lab):
    lab = slurm_lab
    assert lab.cluster.queue() == []  # the fixture hands over an empty queue
    done = lab.ssh("sbatch --parsable --output=slurm-smoke-%j.out --wrap 'echo hi; id -un'")
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip().split(";")[0]
    assert job.isdigit(), done.stdout

    wait_for(lambda: job not in lab.cluster.queue(), timeout=60, what=f"job {job} to leave squeue",
             interval=0.1)
    info = lab.cluster.job(job)
    assert info["JobState"] == "COMPLETED", info
    assert info["ExitCode"] == "0:0", info
    assert lab.ssh(f"scontrol show job {job}").stdout.count("JobState=COMPLETED") == 1

    out = Path(lab.host.home) / f"slurm-smoke-{job}.out"
    assert Path(info["StdOut"]) == out
    try:
        assert out.read_text().split() == ["hi", lab.host.user]
    finally:
        out.unlink(missing_ok=True)

    config = tomllib.loads(lab.config_toml(partitions=["gpu"], time="0:05:00", sbatch_args=["--mem=1G"]))
    assert config["local"] == {"enabled": False}
    (host,) = config["hosts"]
    assert host["kind"] == "slurm" and host["name"] == "lab" and host["port"] == lab.host.port
    assert host["partitions"] == ["gpu"] and host["sbatch_args"] == ["--mem=1G"]
