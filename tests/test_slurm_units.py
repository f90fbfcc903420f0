"""The Slurm host's pure parts: its config, sbatch options, squeue and sinfo text
(as Slurm 22.05 prints it here) and placement over partitions."""

from __future__ import annotations

import pytest

from simtui.config import parse_config
from simtui.engine.placement import place
from simtui.errors import ConfigError, UsageError
from simtui.hosts import jobs
from simtui.hosts.slurm import SlurmHost, _queue_line, cluster_sample, reason_words
from simtui.model import HostKind, HostSpec, HostState, JobState, Needs, ProbeResult, SlurmOptions

# sinfo -N -O ... then squeue, as the CLUSTER script prints them: one node in both
# partitions, one job of alice's running on it, one of bob's waiting for the gpu partition.
CLUSTER_TEXT = """\
debug*|mixed|1/1/0/2|gpu:2|gpu:1(IDX:0)|20000|10000|infinite|n1|up|
gpu|mixed|1/1/0/2|gpu:2|gpu:1(IDX:0)|20000|10000|1-00:00:00|n1|up|
debug*|drained|0/0/4/4|(null)|gpu:0|8000|0|infinite|n2|up|
--
gpu|RUNNING|alice
gpu|PENDING|bob
gpu|PENDING|alice
"""


def test_a_slurm_host_takes_its_keys_and_an_ssh_host_refuses_them():
    config = parse_config({"hosts": [{"name": "lab", "kind": "slurm", "address": "login.example",
                                      "partitions": ["gpu"], "account": "phys", "qos": "short",
                                      "time": "1:00:00", "sbatch_args": ["--exclusive"], "gpu_flag": "gpus"}]}, "c")
    spec = config.host("lab")
    assert spec.kind is HostKind.SLURM
    assert spec.slurm == SlurmOptions(("gpu",), "phys", "short", "1:00:00", ("--exclusive",), "gpus")
    with pytest.raises(ConfigError, match=r'hosts\[0\]\.partitions: only a kind = "slurm" host takes it'):
        parse_config({"hosts": [{"name": "box", "address": "a", "partitions": ["gpu"]}]}, "c")
    with pytest.raises(ConfigError, match=r'kind: expected "ssh" or "slurm"'):
        parse_config({"hosts": [{"name": "box", "kind": "pbs"}]}, "c")
    with pytest.raises(ConfigError, match="drop address"):
        parse_config({"hosts": [{"name": "lab", "kind": "slurm", "local": True, "address": "a"}]}, "c")
    with pytest.raises(ConfigError, match="no '/'"):
        parse_config({"hosts": [{"name": "a/b", "address": "a"}]}, "c")


def test_needs_and_config_become_sbatch_options():
    spec = HostSpec("lab", HostKind.SLURM, slurm=SlurmOptions(("debug", "gpu"), "phys", None, "2:00:00",
                                                               ("--exclusive",)))
    host = SlurmHost(spec)
    words = host.sbatch_options("abc", jobs.Request(Needs(cpus=1.5, mem=2 << 30, gpus=2, disk=1 << 30),
                                                     partition="gpu", time=None, after=41))
    assert words == ["--job-name=simtui-abc", "--export=ALL", "--partition=gpu", "--account=phys",
                     "--time=2:00:00", "--cpus-per-task=2", "--mem=2048M", "--gres=gpu:2", "--tmp=1024M",
                     "--dependency=afterok:41", "--exclusive"]
    plain = host.sbatch_options("abc", jobs.Request(Needs(gpu_mem=1 << 30), time="0:05"))
    assert "--partition=debug" in plain and "--time=0:05" in plain and "--gres=gpu:1" in plain
    gpus = SlurmHost(HostSpec("lab", HostKind.SLURM, slurm=SlurmOptions(gpu_flag="gpus")))
    assert "--gpus=3" in gpus.sbatch_options("abc", jobs.Request(Needs(gpus=3)))
    with pytest.raises(UsageError, match="one non-empty line"):
        SlurmHost(HostSpec("lab", HostKind.SLURM, slurm=SlurmOptions(sbatch_args=("--a\n--b",)))).sbatch_options(
            "abc", jobs.Request())


def test_reasons_in_plain_words():
    assert reason_words("Resources", "PENDING") == "waiting for resources"
    assert reason_words("Priority", "PENDING").endswith("(priority)")
    assert reason_words("Dependency", "PENDING") == "waiting for a dependency"
    assert reason_words("None", "PENDING") == "in the queue"
    assert reason_words("None", "RUNNING") is None
    assert reason_words("NewReason", "PENDING") == "Slurm: NewReason"
    job = _queue_line("17|simtui-0123456789ab|PENDING|Resources|gpu||0:00|1:00:00")
    assert (job.job_id, job.label, job.reason, job.nodes) == ("17", "0123456789ab", "waiting for resources", "")
    assert _queue_line("18|train|RUNNING|None|debug|n1|5:02|UNLIMITED").label is None
    assert _queue_line("not a line") is None


def test_end_states_map_to_outcomes():
    from simtui.hosts.slurm import _remote_job

    def end(state, code="-"):
        job = _queue_line(f"5|simtui-x|{state}|None|debug|n1|0:01|1:00")
        return _remote_job("x", job, "5", code, "10", "-", "-")

    assert end("CANCELLED", "143").outcome is JobState.KILLED
    assert end("TIMEOUT").outcome is JobState.FAILED and end("TIMEOUT").exit_code is None
    assert end("NODE_FAIL").outcome is JobState.LOST
    assert end("COMPLETED", "0").outcome is None and end("COMPLETED", "0").exit_code == 0
    running = end("RUNNING")
    assert running.alive and not running.queued and running.scheduler["nodes"] == "n1"
    assert end("PENDING").queued
    forgotten = _remote_job("x", None, "5", "-", "0", "-", "-")
    assert forgotten.vanished and forgotten.pid == 5  # Slurm forgot it and it left no exit code: lost


def test_sinfo_and_squeue_become_one_row_per_partition():
    sample = cluster_sample("lab", CLUSTER_TEXT, "alice")
    debug, gpu = sample.partitions
    assert (debug.name, debug.default, gpu.name, gpu.default) == ("debug", True, "gpu", False)
    assert (debug.nodes_mixed, debug.nodes_down, debug.cpus_idle, debug.cpus_total) == (1, 1, 1, 6)
    assert (gpu.gpus_free, gpu.gpus_total, gpu.free) == (1, 2, ((1, 10000 << 20, 1),))
    assert (gpu.pending, gpu.mine_pending, gpu.mine_running, debug.pending) == (2, 1, 1, 0)
    assert gpu.time_limit == "1-00:00:00"
    assert sample.cpu_count == 6 and sample.source == "slurm"  # n1 counted once
    assert cluster_sample("lab", CLUSTER_TEXT, "alice", ["gpu"]).partitions == (gpu,)


def test_placement_puts_a_job_where_it_starts_now_else_names_the_queue():
    sample = cluster_sample("lab", CLUSTER_TEXT, "alice")
    result = ProbeResult(HostSpec("lab", HostKind.SLURM), sample, None, HostState.UP)
    now = place(Needs(cpus=1, gpus=1), [result])
    assert now.host in ("lab/debug", "lab/gpu") and "lab/gpu" in now.scores
    later = place(Needs(cpus=2, gpus=2), [result])
    assert later.host == "lab/debug" and later.why == "lab/debug: nothing fits now; fits debug after 0 pending"
    assert later.reasons["lab/gpu"].endswith("(2 pending)")
    never = place(Needs(cpus=8), [result])
    assert never.host is None and never.reasons["lab/gpu"] == "no node of it has 8 CPUs"
