"""Is each host reachable? Checked concurrently, each within its own timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from simtui.errors import HostError, SimtuiError
from simtui.hosts import Host, open_host
from simtui.model import HostSpec, HostState, HostStatus


def failure_reason(err: SimtuiError | TimeoutError, timeout: float) -> str:
    """Why a host is not up, in one line (without the host's name)."""
    if isinstance(err, HostError):
        return err.detail
    if isinstance(err, TimeoutError):
        return f"no answer within {timeout:g}s"
    return str(err)


async def check_host(host: Host, timeout: float) -> HostStatus:
    """Connect, run ``true``, close. Never raises: a failure is a ``down`` state."""
    spec = host.spec
    start = time.perf_counter()
    state, reason = HostState.UP, None
    try:
        async with asyncio.timeout(timeout):
            await host.connect()
            await host.check(["true"])
    except (SimtuiError, TimeoutError) as err:
        state, reason = HostState.DOWN, failure_reason(err, timeout)
    finally:
        await host.close()
    latency = (time.perf_counter() - start) * 1000 if state is HostState.UP else None
    return HostStatus(spec.name, spec.kind, spec.display_address, state, reason, latency, spec.tags)


async def check_hosts(specs: Iterable[HostSpec], timeout: float) -> list[HostStatus]:
    hosts = [open_host(s, timeout=timeout) for s in specs]  # imports happen before the clocks start
    return list(await asyncio.gather(*(check_host(h, timeout) for h in hosts)))
