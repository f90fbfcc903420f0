"""``simtui watch``: keep every host's records current, headless, until stopped.

Each pass: start queued jobs whose turn has come, reconcile every host with
active jobs, and make sure each running job has a follower copying its log.
A host that cannot be reached is retried on the next pass, never fatal; its
going down and coming back are told to the notifier (host_down, host_up).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from simtui.engine.jobs import Engine
from simtui.errors import HostError
from simtui.model import HostState, JobState


async def watch_once(engine: Engine, followers: dict[str, asyncio.Task]) -> None:
    await engine.schedule()
    active = engine.active()
    for host in sorted({r.host for r in active}):
        try:
            await engine.reconcile(host)
        except HostError as err:  # retried on the next pass; told once (host_down)
            engine.notifier.host_state(host, HostState.DOWN, err.detail)
        else:
            engine.notifier.host_state(host, HostState.UP)
    for record in active:
        if record.state is JobState.RUNNING and record.label not in followers:
            followers[record.label] = asyncio.create_task(engine.follow(record.label))
    for label, task in list(followers.items()):
        if task.done():
            del followers[label]


async def watch_forever(engine: Engine, interval: float | None = None) -> None:
    """Until SIGINT or SIGTERM: then stop followers and return (exit 0)."""
    interval = interval or engine.config.defaults.interval
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    followers: dict[str, asyncio.Task] = {}
    try:
        while not stop.is_set():
            await watch_once(engine, followers)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    finally:
        for task in followers.values():
            task.cancel()
        await asyncio.gather(*followers.values(), return_exceptions=True)
