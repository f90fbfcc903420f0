"""Live resources of hosts: one-shot probes (CLI, placement) and the samples of a
connected host as states (the server's host loops). Failures are states with
reasons, never raised."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

from simtui.engine.status import failure_reason
from simtui.errors import SimtuiError
from simtui.hosts import Host, open_host
from simtui.model import HostFacts, HostSpec, HostState, ProbeResult, Sample

PROBE_INTERVAL = 0.2  # seconds: a one-shot sample's CPU % covers this long


async def first_sample(host: Host, interval: float) -> tuple[HostFacts, Sample]:
    async with contextlib.aclosing(host.readings(interval)) as stream:
        facts = await anext(stream)
        sample = await anext(stream)
    assert isinstance(facts, HostFacts) and isinstance(sample, Sample)
    return facts, sample


async def probe_host(host: Host, timeout: float, interval: float = PROBE_INTERVAL) -> ProbeResult:
    """Connect, read the facts and one sample, close; all within ``timeout``.

    Never raises: a host that cannot be reached is ``down``, one that answers but
    gives no sample is ``degraded``; both with the reason.
    """
    try:
        async with asyncio.timeout(timeout):
            await host.connect()
            facts, sample = await first_sample(host, interval)
        return ProbeResult(host.spec, sample, facts, HostState.UP)
    except (SimtuiError, TimeoutError) as err:
        return ProbeResult(host.spec, None, None, _failed_state(host), failure_reason(err, timeout))
    finally:
        await host.close()


def _failed_state(host: Host) -> HostState:
    """After a failure: ``degraded`` while the connection is still up, else ``down``."""
    return HostState.DEGRADED if host.connected else HostState.DOWN


async def probe_hosts(
    specs: Iterable[HostSpec], timeout: float, interval: float = PROBE_INTERVAL
) -> list[ProbeResult]:
    """One sample of every host, all at once, in the order given."""
    hosts = [open_host(s, timeout=timeout) for s in specs]
    return list(await asyncio.gather(*(probe_host(h, timeout, interval) for h in hosts)))


async def watch_connected(host: Host, interval: float, timeout: float) -> AsyncIterator[ProbeResult]:
    """Samples of a connected host as ``up`` results, a ``degraded`` one while
    they are late; ends by raising when the probe or the connection fails."""
    spec, late = host.spec, 3 * interval
    facts: HostFacts | None = None
    stalled = False
    pending: asyncio.Future | None = None
    async with contextlib.aclosing(host.readings(interval)) as stream:
        try:
            async with asyncio.timeout(timeout):  # the upload and the facts
                facts = await anext(stream)
            while True:
                pending = pending or asyncio.ensure_future(anext(stream))
                done, _ = await asyncio.wait({pending}, timeout=late)
                if not done:
                    if not stalled:
                        stalled = True
                        yield ProbeResult(spec, None, facts, HostState.DEGRADED, f"no sample for {late:g}s")
                    continue
                reading, pending, stalled = pending.result(), None, False
                if isinstance(reading, Sample):
                    yield ProbeResult(spec, reading, facts, HostState.UP)
        finally:
            if pending is not None:
                pending.cancel()
                await asyncio.wait({pending})
