"""This machine's resources, read in-process: psutil for CPU, memory and disk,
the agent's NVML code for GPUs; no new process per sample."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import psutil

from simtui.hosts import agent
from simtui.model import GpuSample, HostFacts, HostSpec, Sample

CpuTimes = dict[str, tuple[float, float]]


def cpu_times() -> CpuTimes:
    """{"cpu": (busy, total), "cpu0": ..., ...} in seconds, as agent.cpu_times."""

    def busy_total(t: Any) -> tuple[float, float]:  # psutil's scputimes
        total = sum(t) - getattr(t, "guest", 0) - getattr(t, "guest_nice", 0)  # guest is in user
        return total - t.idle - getattr(t, "iowait", 0), total

    times = {"cpu": busy_total(psutil.cpu_times())}
    times.update((f"cpu{i}", busy_total(t)) for i, t in enumerate(psutil.cpu_times(percpu=True)))
    return times


class LocalSampler:
    """Samples of this machine, like agent.ProcSampler: CPU % is measured between
    one sample and the next; what does not change is worked out once: the GPUs
    opened (NVML, else nvidia-smi, else none), the disk path expanded, the boot time."""

    def __init__(self, spec: HostSpec) -> None:
        self.spec = spec
        self.gpus = agent.open_gpus()
        self.disk = agent.expanded(spec.jobs_dir)
        self.booted = psutil.boot_time()
        self.before = cpu_times()

    def facts(self) -> HostFacts:
        return HostFacts.from_dict(agent.host_facts(self.gpus))

    def sample(self) -> Sample:
        now = time.time()
        before, after = self.before, cpu_times()
        self.before = after
        memory, swap = psutil.virtual_memory(), psutil.swap_memory()
        disk_path = agent.existing_dir(self.disk)
        disk = psutil.disk_usage(disk_path)
        cores = [name for name in after if name != "cpu" and name in before]
        return Sample(
            host=self.spec.name,
            time=now,
            cpu_percent=agent.busy_percent(before["cpu"], after["cpu"]),
            cpu_per_core=tuple(agent.busy_percent(before[n], after[n]) for n in cores),
            cpu_count=len(cores),
            load=psutil.getloadavg(),
            mem_total=memory.total,
            mem_used=memory.total - memory.available,
            mem_available=memory.available,
            swap_total=swap.total,
            swap_used=swap.used,
            disk_path=disk_path,
            disk_total=disk.total,
            disk_free=disk.free,
            uptime=now - self.booted,
            gpus=tuple(GpuSample.from_dict(g) for g in self.gpus.read()),
            source="psutil",
        )


async def readings(spec: HostSpec, interval: float) -> AsyncIterator[HostFacts | Sample]:
    """This machine's HostFacts, then a Sample per interval, on the agent's schedule.

    NVML and nvidia-smi may block: they run in a worker thread.
    """
    sampler = await asyncio.to_thread(LocalSampler, spec)
    yield await asyncio.to_thread(sampler.facts)
    await asyncio.sleep(min(interval, agent.FIRST_DELTA))
    while True:
        sample = await asyncio.to_thread(sampler.sample)
        yield sample
        await asyncio.sleep(agent.until_next_tick(interval, time.time(), sample.time))
