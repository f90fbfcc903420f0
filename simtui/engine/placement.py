"""Best-fit placement: which host takes a job's Needs, and why the others do not.

Pure functions over model objects, no I/O: callers probe the hosts and pass the
ProbeResults in.

What a host offers, from its latest sample:

- CPUs: ``cpu_count * (1 - cpu_percent / 100)``, the idle share of its cores over
  the last sample interval (8 cores at 75 % busy offer 2 CPUs);
- memory: ``mem_available - spec.reserve_mem``;
- disk: ``disk_free`` of the work dir ``- spec.reserve_disk``;
- GPUs: those with at least ``gpu_mem`` free each; ``gpu_mem`` without ``gpus``
  asks for one GPU.

A host fits when it offers at least what every requested dimension asks; a host
that is down, or whose sample does not say, does not fit. The score of a host
that fits is the sum, over the requested dimensions only, of the share of the
host's capacity that would be left over: ``(offered - needed) / total``. For the
GPU count that is spare eligible GPUs over all GPUs; for GPU memory, the mean
over the GPUs the job would get (the tightest ones that fit). The best fit is the
lowest score; ties go to the first name in alphabetical order. With no needs
every reachable host scores 0, so the first name wins.

A Slurm cluster's sample holds its partitions: each is a candidate of its own,
``CLUSTER/PARTITION``. A partition fits now when one of its nodes has the CPUs,
memory and GPUs free (scored like a host, by that node's leftover share; disk
is not asked); where nothing fits now, the job goes to the partition whose nodes
could hold it at all with the fewest jobs waiting there ("fits gpu after 2 pending").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from simtui.errors import UsageError
from simtui.model import GpuSample, Needs, Partition, Placement, ProbeResult, Sample
from simtui.units import format_gib, parse_size


def parse_needs(
    cpus: str | None = None,
    mem: str | None = None,
    gpus: str | None = None,
    gpu_mem: str | None = None,
    disk: str | None = None,
) -> Needs:
    """Needs from command-line strings; a bad value is a UsageError naming its flag."""
    return Needs(
        cpus=_number("--cpus", cpus, float, "a number of CPUs like 2 or 0.5"),
        mem=_size("--mem", mem),
        gpus=_number("--gpus", gpus, int, "a whole number of GPUs like 1"),
        gpu_mem=_size("--gpu-mem", gpu_mem),
        disk=_size("--disk", disk),
    )


def _number(flag: str, text: str | None, kind: type, form: str) -> float:
    if text is None:
        return 0
    try:
        value = kind(text)
    except ValueError:
        value = -1
    if value < 0 or not math.isfinite(value):
        raise UsageError(f"{flag}: expected {form}, got {text!r}")
    return value


def _size(flag: str, text: str | None) -> int:
    if text is None:
        return 0
    try:
        return parse_size(text)
    except ValueError as err:
        raise UsageError(f"{flag}: {err}") from None


def describe_needs(needs: Needs) -> str:
    """``2 CPUs, 4.0 GiB memory, 1 GPU with 1.5 GiB free`` (``no needs`` when empty)."""
    parts = []
    if needs.cpus:
        parts.append(_plural(needs.cpus, "CPU"))
    if needs.mem:
        parts.append(f"{format_gib(needs.mem)} memory")
    if count := needs.gpu_count:
        with_mem = f" with {format_gib(needs.gpu_mem)} free" if needs.gpu_mem else ""
        parts.append(f"{_plural(count, 'GPU')}{with_mem}")
    if needs.disk:
        parts.append(f"{format_gib(needs.disk)} disk")
    return ", ".join(parts) or "no needs"


def place(needs: Needs, candidates: Sequence[ProbeResult]) -> Placement:
    """The best-fit host for the needs, a score for every host that fits and a
    reason for every host (see the module docstring for the rules)."""
    outcomes: dict[str, tuple[float, str] | str] = {}
    queues: dict[str, int] = {}  # partitions that could take it later: how many jobs wait there
    for c in candidates:
        if c.sample is not None and c.sample.partitions:
            for partition in c.sample.partitions:
                name = f"{c.spec.name}/{partition.name}"
                outcomes[name] = _partition_outcome(needs, partition)
                if isinstance(outcomes[name], str) and outcomes[name].startswith(QUEUE):
                    queues[name] = partition.pending
        else:
            outcomes[c.spec.name] = _outcome(needs, c)
    fits = {name: fit for name, fit in outcomes.items() if not isinstance(fit, str)}
    if not fits and queues:
        best = min(queues, key=lambda name: (queues[name], name))
        why = f"{best}: nothing fits now; fits {best.split('/', 1)[1]} after {queues[best]} pending"
        return Placement(needs, best, {}, dict(outcomes), why)
    if not fits:
        why = f"none of {_plural(len(outcomes), 'host')} fits {describe_needs(needs)}"
        return Placement(needs, None, {}, dict(outcomes), why)
    best = min(fits, key=lambda name: (round(fits[name][0], 9), name))
    reasons = {}
    for name, outcome in outcomes.items():
        if isinstance(outcome, str):
            reasons[name] = outcome
        else:
            verdict = "best fit" if name == best else f"fits, {best} is tighter"
            reasons[name] = f"{verdict} (score {outcome[0]:.3f}; left over: {outcome[1]})"
    if len(fits) == 1:
        why = f"{best}: the only host of {len(outcomes)} that fits (left over: {fits[best][1]})"
    else:
        why = f"{best}: best fit of {len(fits)} hosts that fit (left over: {fits[best][1]})"
    scores = {name: round(score, 6) for name, (score, _) in fits.items()}
    return Placement(needs, best, scores, reasons, why)


def _outcome(needs: Needs, candidate: ProbeResult) -> tuple[float, str] | str:
    """(score, what is left over in words) when the host fits, else why not."""
    if candidate.sample is None:
        return f"{candidate.state.value} ({candidate.reason or 'no sample'})"
    checks = _checks(needs, candidate, candidate.sample)
    shortfalls = [c.short for c in checks if c.short]
    if shortfalls:
        return "; ".join(shortfalls)
    return sum(c.share for c in checks), ", ".join(c.left for c in checks) or "nothing asked"


QUEUE = "fits after the jobs waiting there"


def _partition_outcome(needs: Needs, partition: Partition) -> tuple[float, str] | str:
    """(score, what is left on the tightest node) when a node of the partition takes
    the job now; else QUEUE (with how many wait) when a node could at all, else why not."""
    if not partition.up:
        return "partition is down"
    asked = (math.ceil(needs.cpus), needs.mem, needs.gpu_count)
    best: tuple[float, str] | None = None
    for free, size in zip(partition.free, partition.sizes):
        if all(have >= want for have, want in zip(free, asked)):
            share = sum((have - want) / total for have, want, total in zip(free, asked, size) if want and total)
            if best is None or share < best[0]:
                left = [f"{free[0] - asked[0]} CPUs" if asked[0] else "", f"{format_gib(free[1] - asked[1])} memory"
                        if asked[1] else "", _plural(free[2] - asked[2], "spare GPU") if asked[2] else ""]
                best = (share, ", ".join(filter(None, left)) or "nothing asked")
    if best is not None:
        return best
    if any(all(have >= want for have, want in zip(size, asked)) for size in partition.sizes):
        return f"{QUEUE} ({partition.pending} pending)"
    return f"no node of it has {describe_needs(needs)}"


@dataclass(frozen=True)
class _Check:
    """One requested dimension on one host: why it falls short, or what is left."""

    short: str | None = None
    share: float = 0.0  # left over, as a share of the host's capacity
    left: str = ""


def _checks(needs: Needs, candidate: ProbeResult, sample: Sample) -> list[_Check]:
    """Each requested dimension checked against the host's sample."""
    spec = candidate.spec
    checks = []
    if needs.cpus:
        cores = sample.cpu_count or (candidate.facts and candidate.facts.cpu_count) or len(sample.cpu_per_core)
        idle = None if sample.cpu_percent is None or not cores else cores * (1 - sample.cpu_percent / 100)
        checks.append(_amount("CPUs", needs.cpus, idle, cores, _number_text, "free"))
    if needs.mem:
        available = _minus(sample.mem_available, spec.reserve_mem)
        checks.append(_amount("memory", needs.mem, available, sample.mem_total, format_gib,
                              _reserved("available", spec.reserve_mem)))
    if needs.gpu_count:
        checks.extend(_gpu_checks(needs, sample.gpus))
    if needs.disk:
        free = _minus(sample.disk_free, spec.reserve_disk)
        checks.append(_amount("disk", needs.disk, free, sample.disk_total, format_gib,
                              _reserved("free", spec.reserve_disk)))
    return checks


def _amount(
    what: str, needed: float, offered: float | None, total: float | None,
    fmt: Callable[[float], str], verb: str,
) -> _Check:
    if offered is None:
        return _Check(short=f"needs {_phrase(fmt(needed), what)}, the sample does not say how much is {verb}")
    if offered < needed:
        return _Check(short=f"needs {_phrase(fmt(needed), what)}, {fmt(max(offered, 0))} {verb}")
    left = offered - needed
    return _Check(share=left / total if total else 0.0, left=_phrase(fmt(left), what))


def _gpu_checks(needs: Needs, gpus: tuple[GpuSample, ...]) -> list[_Check]:
    count, per_gpu = needs.gpu_count, needs.gpu_mem
    eligible = [g for g in gpus if g.mem_free is not None and g.mem_free >= per_gpu] if per_gpu else list(gpus)
    if len(eligible) < count:
        return [_Check(short=_gpu_shortfall(count, per_gpu, gpus, len(eligible)))]
    spare = len(eligible) - count
    checks = [_Check(share=spare / len(gpus), left=_plural(spare, "spare GPU"))]
    if per_gpu:
        used = sorted(eligible, key=lambda g: g.mem_free)[:count]
        share = sum((g.mem_free - per_gpu) / g.mem_total for g in used if g.mem_total) / count
        left = sum(g.mem_free - per_gpu for g in used)
        checks.append(_Check(share=share, left=f"{format_gib(left)} GPU memory"))
    return checks


def _gpu_shortfall(count: int, per_gpu: int, gpus: tuple[GpuSample, ...], eligible: int) -> str:
    if not gpus:
        return f"needs {_plural(count, 'GPU')}, has none"
    if len(gpus) < count:
        return f"needs {_plural(count, 'GPU')}, has {len(gpus)}"
    known = [g.mem_free for g in gpus if g.mem_free is not None]
    if not known:
        return f"needs {format_gib(per_gpu)} GPU memory, the sample does not say how much is free"
    if count == 1:
        return f"needs {format_gib(per_gpu)} GPU memory, best GPU has {format_gib(max(known))} free"
    return f"needs {count} GPUs with {format_gib(per_gpu)} free each, {eligible} of {len(gpus)} have that"


def _minus(value: int | None, reserve: int) -> int | None:
    return None if value is None else value - reserve


def _reserved(verb: str, reserve: int) -> str:
    return f"{verb} after {format_gib(reserve)} reserved" if reserve else verb


def _number_text(n: float) -> str:
    return f"{n:.1f}".removesuffix(".0")


def _plural(n: float, noun: str) -> str:
    return _phrase(_number_text(n), noun + "s")


def _phrase(amount: str, plural_noun: str) -> str:
    """``2 CPUs``, ``1 CPU``, ``4.0 GiB memory``."""
    return f"{amount} {plural_noun.removesuffix('s') if amount == '1' else plural_noun}"
