"""Placement rules over synthetic samples (pure functions: no hosts needed)."""

from __future__ import annotations

import json

import pytest

from simtui.engine.placement import describe_needs, parse_needs, place
from simtui.errors import UsageError
from simtui.model import GpuSample, HostFacts, HostSpec, HostState, Needs, ProbeResult, Sample

GiB = 1024**3


def host(name: str, *, reserve_mem: int = 0, reserve_disk: int = 0, facts: HostFacts | None = None,
         **sample: object) -> ProbeResult:
    """An up host with 8 idle cores, 16 GiB (8 available), 100 GiB disk (50 free), no GPUs."""
    values: dict = dict(cpu_percent=0.0, cpu_count=8, mem_total=16 * GiB, mem_available=8 * GiB,
                        disk_total=100 * GiB, disk_free=50 * GiB)
    values.update(sample)
    spec = HostSpec(name, reserve_mem=reserve_mem, reserve_disk=reserve_disk)
    return ProbeResult(spec, Sample(name, 0.0, **values), facts, HostState.UP)


def down(name: str, reason: str = "connection refused by 127.0.0.9:22") -> ProbeResult:
    return ProbeResult(HostSpec(name), None, None, HostState.DOWN, reason)


def gpu(index: int, free_gib: float, total_gib: float = 16) -> GpuSample:
    return GpuSample(index, "Test GPU", mem_total=int(total_gib * GiB),
                     mem_used=int((total_gib - free_gib) * GiB))


# -- parse_needs -----------------------------------------------------------


def test_parse_needs_reads_every_flag():
    needs = parse_needs(cpus="2.5", mem="4G", gpus="2", gpu_mem="1.5G", disk="500M")
    assert needs == Needs(cpus=2.5, mem=4 * GiB, gpus=2, gpu_mem=int(1.5 * GiB), disk=500 * 1024**2)
    assert parse_needs() == Needs()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"mem": "4X"}, "--mem: expected a size like 4G, 500M or 1.5GiB, got '4X'"),
        ({"gpu_mem": "-1G"}, "--gpu-mem: expected a size like 4G, 500M or 1.5GiB, got '-1G'"),
        ({"disk": ""}, "--disk: expected a size"),
        ({"cpus": "two"}, "--cpus: expected a number of CPUs like 2 or 0.5, got 'two'"),
        ({"cpus": "-1"}, "--cpus: expected a number of CPUs"),
        ({"cpus": "nan"}, "--cpus: expected a number of CPUs"),
        ({"gpus": "1.5"}, "--gpus: expected a whole number of GPUs like 1, got '1.5'"),
    ],
)
def test_parse_needs_names_the_bad_flag(flags, message):
    with pytest.raises(UsageError) as caught:
        parse_needs(**flags)
    assert str(caught.value).startswith(message)
    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)


def test_describe_needs():
    assert describe_needs(Needs()) == "no needs"
    assert describe_needs(Needs(cpus=1, mem=4 * GiB, gpu_mem=GiB, disk=GiB // 2)) == (
        "1 CPU, 4.0 GiB memory, 1 GPU with 1.0 GiB free, 0.5 GiB disk"
    )


# -- each dimension --------------------------------------------------------


def test_cpus_free_is_idle_share_of_cores():
    busy = host("busy", cpu_percent=75.0)  # 8 cores, 2 idle
    placement = place(Needs(cpus=3), [busy, host("idle")])
    assert placement.host == "idle"
    assert placement.reasons["busy"] == "needs 3 CPUs, 2 free"
    assert "left over: 0 CPUs" in place(Needs(cpus=2), [busy]).reasons["busy"]


def test_cpu_count_falls_back_to_facts():
    placement = place(Needs(cpus=3), [host("a", cpu_count=None, facts=HostFacts(cpu_count=4))])
    assert placement.host == "a"
    assert "left over: 1 CPU" in placement.reasons["a"]


@pytest.mark.parametrize(
    ("needs", "offered", "reserve", "what"),
    [
        (Needs(mem=4 * GiB), "mem_available", "reserve_mem", "memory, {} available"),
        (Needs(disk=4 * GiB), "disk_free", "reserve_disk", "disk, {} free"),
    ],
)
def test_memory_and_disk_offer_what_is_free_minus_the_reserve(needs, offered, reserve, what):
    placement = place(needs, [
        host("small", **{offered: int(2.1 * GiB)}),
        host("reserved", **{offered: 6 * GiB, reserve: 3 * GiB}),
        host("ok", **{offered: 5 * GiB}),
    ])
    assert placement.host == "ok"
    assert placement.reasons["small"] == "needs 4.0 GiB " + what.format("2.1 GiB")
    assert placement.reasons["reserved"] == "needs 4.0 GiB " + what.format("3.0 GiB") + " after 3.0 GiB reserved"


def test_every_shortfall_is_named():
    placement = place(Needs(cpus=16, mem=32 * GiB), [host("a")])
    assert placement.reasons["a"] == "needs 16 CPUs, 8 free; needs 32.0 GiB memory, 8.0 GiB available"


def test_unknown_reading_does_not_fit():
    placement = place(Needs(mem=GiB, cpus=1), [host("a", mem_available=None, cpu_percent=None)])
    assert placement.host is None
    assert placement.reasons["a"] == (
        "needs 1 CPU, the sample does not say how much is free; "
        "needs 1.0 GiB memory, the sample does not say how much is available"
    )


# -- GPUs ------------------------------------------------------------------


def test_gpu_mem_alone_asks_for_one_gpu():
    placement = place(Needs(gpu_mem=int(1.5 * GiB)), [
        host("cpu-only"),
        host("tight", gpus=(gpu(0, 0.9), gpu(1, 0.5))),
        host("roomy", gpus=(gpu(0, 8),)),
    ])
    assert placement.host == "roomy"
    assert placement.reasons["cpu-only"] == "needs 1 GPU, has none"
    assert placement.reasons["tight"] == "needs 1.5 GiB GPU memory, best GPU has 0.9 GiB free"


def test_gpu_count():
    placement = place(Needs(gpus=2), [host("one", gpus=(gpu(0, 16),)), host("two", gpus=(gpu(0, 1), gpu(1, 1)))])
    assert placement.host == "two"
    assert placement.reasons["one"] == "needs 2 GPUs, has 1"


def test_several_gpus_each_with_enough_memory():
    placement = place(Needs(gpus=2, gpu_mem=4 * GiB), [host("a", gpus=(gpu(0, 8), gpu(1, 2), gpu(2, 3)))])
    assert placement.host is None
    assert placement.reasons["a"] == "needs 2 GPUs with 4.0 GiB free each, 1 of 3 have that"


def test_job_gets_the_tightest_gpus_that_fit():
    placement = place(Needs(gpu_mem=4 * GiB), [host("a", gpus=(gpu(0, 12), gpu(1, 5), gpu(2, 2)))])
    assert "left over: 1 spare GPU, 1.0 GiB GPU memory" in placement.reasons["a"]


def test_gpu_with_unknown_memory_counts_only_without_gpu_mem():
    blind = host("blind", gpus=(GpuSample(0, "Unknown GPU"),))
    assert place(Needs(gpus=1), [blind]).host == "blind"
    placement = place(Needs(gpu_mem=GiB), [blind])
    assert placement.reasons["blind"] == "needs 1.0 GiB GPU memory, the sample does not say how much is free"


# -- choosing --------------------------------------------------------------


def test_best_fit_is_least_left_over():
    placement = place(Needs(mem=4 * GiB), [
        host("big", mem_total=64 * GiB, mem_available=60 * GiB),
        host("snug", mem_total=16 * GiB, mem_available=5 * GiB),
    ])
    assert placement.host == "snug"
    assert placement.scores["snug"] < placement.scores["big"]
    assert placement.scores["snug"] == pytest.approx(1 / 16)
    assert placement.reasons["big"].startswith("fits, snug is tighter (score 0.875")
    assert placement.why == "snug: best fit of 2 hosts that fit (left over: 1.0 GiB memory)"


def test_score_sums_only_requested_dimensions():
    # "a" is tight on memory but idle on CPU: CPU is not asked, so it does not count.
    placement = place(Needs(mem=4 * GiB), [host("a", mem_available=5 * GiB), host("b", mem_available=6 * GiB,
                                                                                 cpu_percent=99.0)])
    assert placement.host == "a"
    placement = place(Needs(mem=4 * GiB, cpus=1), [host("a", mem_available=5 * GiB),
                                                   host("b", mem_available=6 * GiB, cpu_percent=75.0)])
    assert placement.host == "b"  # 1/16 + 7/8 for "a" against 2/16 + 1/8 for "b"


def test_ties_go_to_the_first_name():
    placement = place(Needs(mem=GiB), [host("zeta"), host("alpha"), host("mid")])
    assert placement.host == "alpha"
    assert len(set(placement.scores.values())) == 1


def test_no_needs_picks_the_first_reachable_name():
    placement = place(Needs(), [down("a"), host("c"), host("b")])
    assert placement.host == "b"
    assert placement.scores == {"c": 0.0, "b": 0.0}
    assert "left over: nothing asked" in placement.reasons["b"]


def test_down_hosts_never_fit_and_say_why():
    placement = place(Needs(mem=GiB), [down("h1"), host("h0")])
    assert placement.host == "h0"
    assert placement.reasons["h1"] == "down (connection refused by 127.0.0.9:22)"
    assert placement.why == "h0: the only host of 2 that fits (left over: 7.0 GiB memory)"
    assert list(placement.reasons) == ["h1", "h0"]  # in the order given


def test_nothing_fits():
    placement = place(Needs(mem=100 * GiB), [host("h0"), down("h1")])
    assert placement.host is None
    assert placement.scores == {}
    assert placement.why == "none of 2 hosts fits 100.0 GiB memory"
    assert set(placement.reasons) == {"h0", "h1"}


def test_to_dict_is_json_ready():
    placement = place(Needs(mem=GiB), [host("h0"), down("h1")])
    data = json.loads(json.dumps(placement.to_dict()))
    assert data["host"] == "h0"
    assert data["needs"]["mem"] == GiB
    assert data["scores"] == {"h0": placement.scores["h0"]}
    assert set(data["reasons"]) == {"h0", "h1"}
    assert data["why"] == placement.why
