"""Real GPUs through NVML and nvidia-smi, on a machine that has them; skipped
cleanly elsewhere. ``pytest -s tests/test_gpu_live.py`` prints what was read."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from simtui.hosts import agent
from simtui.model import GpuSample, HostFacts, Sample


def nvml_gpu_count() -> int:
    agent.nvml("nvmlInit")
    count = agent.nvml("nvmlDeviceGetCount")
    if not count:
        pytest.skip("no NVIDIA GPU through NVML (no driver or no GPU)")
    return count


def nvidia_smi() -> str:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        pytest.skip("nvidia-smi is not installed")
    return smi


def listed_gpus(smi: str) -> list[str]:
    """``nvidia-smi -L``: one ``GPU i: NAME (UUID: ...)`` line per GPU (MIG devices indented)."""
    out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    return [line for line in out.splitlines() if line.startswith("GPU ")]


def show(source: str, facts: dict, gpus: list[GpuSample]) -> None:
    print(f"\n{source}: {facts}")
    for gpu in gpus:
        print(f"  {gpu}")


def test_nvml_reads_every_gpu():
    count = nvml_gpu_count()
    reader = agent.NvmlGpus(count)
    facts, gpus = reader.facts(), [GpuSample.from_dict(g) for g in reader.read()]
    show("NVML", facts, gpus)
    assert facts["gpu_driver"]
    assert [g.index for g in gpus] == list(range(count))
    assert all(g.name and g.uuid and g.mem_total and g.mem_used is not None for g in gpus)


def test_nvidia_smi_reads_every_gpu():
    smi = nvidia_smi()
    reader = agent.SmiGpus(smi)
    facts, gpus = reader.facts(), [GpuSample.from_dict(g) for g in reader.read()]
    show("nvidia-smi", facts, gpus)
    assert facts["gpu_driver"] and facts["cuda"]
    assert len(gpus) == len(listed_gpus(smi))
    assert all(g.uuid and g.mem_total for g in gpus)


def test_nvml_and_nvidia_smi_agree():
    count, smi = nvml_gpu_count(), nvidia_smi()
    by_nvml = [GpuSample.from_dict(g) for g in agent.NvmlGpus(count).read()]
    by_smi = [GpuSample.from_dict(g) for g in agent.SmiGpus(smi).read()]
    assert [(g.name, g.uuid) for g in by_nvml] == [(g.name, g.uuid) for g in by_smi]
    for a, b in zip(by_nvml, by_smi):  # nvidia-smi rounds to MiB
        assert abs(a.mem_total - b.mem_total) <= 1024 * 1024


def test_agent_script_reports_the_gpus():
    """The agent as it runs on a host: a script with pynvml imported beside it."""
    count = nvml_gpu_count()
    proc = subprocess.Popen(
        [sys.executable, agent.__file__, "--interval", "0.2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        facts = HostFacts.from_dict(json.loads(proc.stdout.readline())["facts"])
        sample = Sample.from_dict({**json.loads(proc.stdout.readline())["sample"], "host": "here"})
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    show("agent", facts.__dict__, list(sample.gpus))
    assert facts.gpu_driver and facts.cuda
    assert len(sample.gpus) == count
