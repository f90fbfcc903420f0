"""GPU readings -> samples, from outputs kept in tests/fixtures.

No GPU was at hand when these were written: the fixtures follow NVIDIA's
documented nvidia-smi CSV query format (``--format=csv,noheader,nounits``: MiB,
watts, ``[N/A]`` / ``[Not Supported]`` for missing values) and NVML's API
(bytes, milliwatts). tests/test_gpu_live.py reads real GPUs where there are some.
"""

from __future__ import annotations

import json
from pathlib import Path

from simtui.hosts import agent
from simtui.model import GpuSample

FIXTURES = Path(__file__).parent / "fixtures"
MIB = 1024 * 1024


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def smi_gpus(gpus: str, apps: str) -> list[GpuSample]:
    return [GpuSample.from_dict(g) for g in agent.gpus_from_smi(fixture(gpus), fixture(apps) if apps else "")]


def test_nvidia_smi_h100_node_with_missing_fields_and_processes():
    gpus = smi_gpus("nvidia-smi-h100-gpus.csv", "nvidia-smi-h100-apps.csv")
    assert [g.index for g in gpus] == [0, 1, 2, 3]
    first = gpus[0]
    assert first.name == "NVIDIA H100 80GB HBM3"
    assert first.uuid == "GPU-4a8c5f1e-2b7d-9e3a-6c1f-8d2e5b7a9c30"
    assert (first.util, first.temperature, first.power) == (98.0, 64.0, 612.45)
    assert (first.mem_used, first.mem_total) == (71234 * MIB, 81559 * MIB)
    assert first.mem_free == (81559 - 71234) * MIB
    assert [(p.pid, p.used_mem) for p in first.processes] == [(182734, 70912 * MIB), (182790, None)]
    assert gpus[1].processes == () and gpus[1].mem_used == 0
    assert (gpus[2].util, gpus[2].power, gpus[2].mem_used) == (None, None, 10240 * MIB)  # [N/A]
    assert gpus[3].temperature is None
    assert [(p.pid, p.used_mem) for p in gpus[3].processes] == [(190021, 40938 * MIB)]


def test_nvidia_smi_mig_and_not_supported_fields_without_processes():
    gpus = smi_gpus("nvidia-smi-mixed-gpus.csv", "")
    assert [g.name for g in gpus] == ["NVIDIA A100-SXM4-40GB"] * 2 + ["NVIDIA GeForce GTX 1080 Ti"]
    assert gpus[0].util is None  # MIG mode: no whole-GPU utilisation
    assert gpus[2].power is None  # [Not Supported]
    assert gpus[2].mem_total == 11264 * MIB
    assert all(g.processes == () for g in gpus)


def test_nvidia_smi_error_text_is_no_gpu():
    message = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    assert agent.gpus_from_smi(message, message) == []


def test_nvidia_smi_banner_gives_driver_and_cuda():
    assert agent.smi_facts(fixture("nvidia-smi-banner.txt")) == {"gpu_driver": "550.54.15", "cuda": "12.4"}
    assert agent.smi_facts("") == {"gpu_driver": None, "cuda": None}


def test_nvml_readings_convert_units_and_drop_repeated_processes():
    raw = json.loads(fixture("nvml-h100.json"))
    gpus = [GpuSample.from_dict(g) for g in agent.gpus_from_nvml(raw["devices"])]
    first, second = gpus
    assert (first.name, first.util, first.temperature, first.power) == ("NVIDIA H100 80GB HBM3", 98, 64, 612.45)
    assert (first.mem_used, first.mem_total) == (74694311936, 85520809984)
    assert [(p.pid, p.used_mem) for p in first.processes] == [(182734, 74356473856), (182790, None)]
    assert (second.util, second.temperature, second.power, second.processes) == (None, None, None, ())
    assert agent.cuda_version(raw["cuda_driver_version"]) == "12.4"
    assert agent.cuda_version(None) is None


def test_every_nvml_call_is_none_without_a_driver():
    """Here (no driver, or no GPU) NVML fails softly: no GPUs, no exception."""
    assert agent.nvml("nvmlNoSuchCall") is None
    gpus = agent.open_gpus()
    if isinstance(gpus, agent.NoGpus):
        assert gpus.read() == [] and gpus.facts() == {"gpu_driver": None, "cuda": None}


def test_nvml_readings_have_the_fixtures_fields_and_keep_the_identity_asked_once():
    """Without a driver every reading is None; the fields and the identity are as kept."""
    raw = json.loads(fixture("nvml-h100.json"))["devices"][0]
    identity = {"index": 3, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-4a8c"}
    device = agent.nvml_device(None, identity)
    assert sorted(device) == sorted(raw) and {k: device[k] for k in identity} == identity
    (gpu,) = agent.gpus_from_nvml([device])
    assert (gpu["index"], gpu["name"], gpu["util"], gpu["processes"]) == (3, "NVIDIA H100 80GB HBM3", None, [])
