"""The server's state and its loops: one per host (connection, state, samples,
reconcile), one for the queue, one follower per active job, and the idle clock.

No failure inside a loop stops it: each catches, logs, tells attached clients (a
notice), backs off and goes on. Clients read what the loops publish through
subscriptions (``Topic``): host views, job changes and notices, log bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from simtui.config import Config
from simtui.engine.jobs import Engine
from simtui.engine.sampler import watch_connected
from simtui.engine.status import failure_reason
from simtui.errors import HostError, SimtuiError
from simtui.model import HostSpec, HostState, JobState, ProbeResult, Record
from simtui.store import Store

log = logging.getLogger("simtui.server")
RETRY, RETRY_MAX = 1.0, 30.0  # seconds between attempts to reach a host that is down: one capped backoff
PLACEMENT_WAIT = 5.0  # seconds placement waits for fresh samples
FINISH_EVERY = 30  # queue passes between looks for local log copies left unfinished


class Topic:
    """Subscribers, each with a queue of what was published since it last looked."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue] = set()

    def publish(self, item: Any) -> None:
        for queue in self.queues:
            queue.put_nowait(item)

    @contextlib.contextmanager
    def subscribe(self):
        queue: asyncio.Queue = asyncio.Queue()
        self.queues.add(queue)
        try:
            yield queue
        finally:
            self.queues.discard(queue)


class Hub:
    def __init__(self, config: Config, store: Store) -> None:
        self.config, self.store = config, store
        self.engine = Engine(config, store)
        self.engine.on_change = self._changed
        self.engine.notifier.report = lambda outcome: self.notice(f"notify {outcome}")
        self.engine.probe = self.fresh_samples
        self.engine.reachable = lambda name: name not in self.views or self.views[name].state is not HostState.DOWN
        self.engine.poll_soon = lambda name: self.host_wake[name].set() if name in self.host_wake else None
        self.interval = config.defaults.interval
        self.views: dict[str, ProbeResult] = {
            h.name: ProbeResult(h, None, None, HostState.CONNECTING) for h in config.hosts}
        self.hosts = Topic()  # ProbeResult: a host's state or sample
        self.jobs = Topic()  # {"record": ...}, {"notice": ...} or {"following": label}
        self.logs: dict[str, Topic] = {}  # label -> bytes, then the finished Record
        self.followers: dict[str, asyncio.Task] = {}
        self.wake = asyncio.Event()  # the queue loop looks again now
        self.machines_wake = asyncio.Event()  # the machines loop looks again now (a job ended)
        self.machine_loops: dict[str, asyncio.Task] = {}  # a live machine's host loop, by name
        self.engine.machines.on_destroy = self._machine_going
        self.host_wake = {h.name: asyncio.Event() for h in config.hosts}
        self.sampling_until = 0.0  # monotonic: placement wants samples until then
        self.clients = 0
        self.idle_since = time.monotonic()
        self.stopping = asyncio.Event()

    # -- running -----------------------------------------------------------------------

    async def run(self, idle: float) -> None:
        tasks = [asyncio.create_task(self._host_loop(spec), name=f"host {spec.name}") for spec in self.config.hosts]
        tasks += [asyncio.create_task(self._queue_loop(), name="queue"),
                  asyncio.create_task(self._machines_loop(), name="machines"),
                  asyncio.create_task(self._idle_loop(idle), name="idle")]
        try:
            await self.stopping.wait()
        finally:
            tasks += self.followers.values()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.engine.close()

    def notice(self, text: str) -> None:
        """Something went wrong in a loop: logged, and told to attached clients."""
        log.warning("%s", text)
        self.jobs.publish({"notice": text})

    async def _nap(self, event: asyncio.Event, seconds: float) -> None:
        """Until ``event`` or ``seconds``. Every loop naps here, so once the server is
        stopping each ends here too, even where a cancel that came as the event was
        set got lost on the way (asyncio.wait_for may drop it)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()
        event.clear()
        if self.stopping.is_set():
            raise asyncio.CancelledError

    # -- hosts -------------------------------------------------------------------------

    def sampling(self) -> bool:
        return bool(self.hosts.queues) or time.monotonic() < self.sampling_until

    def _view(self, result: ProbeResult) -> None:
        old = self.views.get(result.spec.name)
        if result.sample is None and result.state is HostState.UP and old is not None and old.sample is not None:
            result = ProbeResult(result.spec, old.sample, old.facts, result.state, result.reason)
        self.views[result.spec.name] = result
        self.hosts.publish(result)

    async def _host_loop(self, spec: HostSpec, tell: bool = True) -> None:
        """Keep the host's one connection: up, down (retried with a capped backoff),
        samples while someone wants them, its active jobs reconciled each interval.
        A host going down or up is notified (``tell``; not for a machine made for a job)."""
        name, delay = spec.name, RETRY
        timeout = self.config.defaults.timeout
        while True:
            try:
                self._view(ProbeResult(spec, None, None, HostState.CONNECTING))
                try:
                    host = await self.engine.host(name)
                except (HostError, TimeoutError) as err:
                    reason = failure_reason(err, timeout)
                    self._view(ProbeResult(spec, None, None, HostState.DOWN, reason))
                    if tell:
                        self.engine.notifier.host_state(name, HostState.DOWN, reason)
                    await self.engine.pool.drop(name)
                    await self._nap(self.host_wake[name], delay)
                    delay = min(2 * delay, RETRY_MAX)
                    continue
                delay = RETRY
                if tell:
                    self.engine.notifier.host_state(name, HostState.UP)
                self._view(ProbeResult(spec, None, None, HostState.UP))
                await self._while_up(spec, host)
                await self.engine.pool.drop(name)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - a loop never dies
                log.exception("host loop %s", name)
                self.notice(f"{name}: {err}")
                await self.engine.pool.drop(name)
                await asyncio.sleep(delay)
                delay = min(2 * delay, RETRY_MAX)

    async def _while_up(self, spec: HostSpec, host: Any) -> None:
        """Until the connection is lost: samples while wanted, reconcile each interval."""
        sampler: asyncio.Task | None = None
        try:
            while host.connected:
                if self.sampling() and sampler is None:
                    sampler = asyncio.create_task(self._sample(spec, host))
                elif not self.sampling() and sampler is not None:
                    sampler.cancel()
                    await asyncio.gather(sampler, return_exceptions=True)
                    sampler = None
                if sampler is not None and sampler.done():
                    failed = sampler.exception()
                    sampler = None
                    if failed is not None and host.connected:
                        self._view(ProbeResult(spec, None, None, HostState.DEGRADED, str(failed)))
                if self.engine.active(spec.name):
                    try:
                        await self.engine.reconcile(spec.name)
                    except HostError as err:
                        log.info("%s: %s", spec.name, err)
                        return
                await self._nap(self.host_wake[spec.name], self.interval)
        finally:
            if sampler is not None:
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)

    async def _sample(self, spec: HostSpec, host: Any) -> None:
        async for result in watch_connected(host, self.interval, self.config.defaults.timeout):
            self._view(result)

    async def fresh_samples(self, specs: list[HostSpec], timeout: float) -> list[ProbeResult]:
        """Placement's view of the hosts: their latest samples, waiting a little for
        the first ones where sampling was not running."""
        asked = time.time()
        self.sampling_until = time.monotonic() + 60
        for event in self.host_wake.values():
            event.set()
        deadline = time.monotonic() + min(timeout, PLACEMENT_WAIT)

        def ready(view: ProbeResult) -> bool:
            fresh = view.sample is not None and view.sample.time >= asked - self.interval
            return view.state is HostState.DOWN or fresh

        with self.hosts.subscribe() as queue:
            while not all(ready(self.views[s.name]) for s in specs) and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.get(), deadline - time.monotonic())
        return [self.views[s.name] for s in specs]

    # -- jobs --------------------------------------------------------------------------

    def _changed(self, record: Record) -> None:
        self.jobs.publish({"record": record.to_dict()})
        if record.state.finished or record.state is JobState.RUNNING:
            self.wake.set()
        if record.state.finished and record.machine is not None:
            self.machines_wake.set()

    async def _queue_loop(self) -> None:
        """Start what may start, and give every running job its follower: each
        interval, and at once when a job ends (its slot is free again)."""
        passes = 0
        while True:
            try:
                if passes % FINISH_EVERY == 0:  # at start (after a kill -9), then now and then
                    await self.engine.finish_copies(skip=set(self.followers))
                passes += 1
                await self.engine.schedule()
                for record in self.engine.active():
                    if record.state is JobState.RUNNING and record.label not in self.followers:
                        self.followers[record.label] = asyncio.create_task(self._follow(record.label))
                        self.jobs.publish({"following": record.label})  # log subscribers waiting for it
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - a loop never dies
                log.exception("queue loop")
                self.notice(f"queue: {err}")
                await asyncio.sleep(RETRY)
            await self._nap(self.wake, self.interval)

    async def _machines_loop(self) -> None:
        """Machines made for a job: each one whose job ended is seen out and
        destroyed, each interval and at once when such a job ends (a machine that
        cannot be reached holds up this loop alone, never the queue)."""
        try:
            while True:
                try:
                    await self.engine.machines.tend()
                    self._machine_views()
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # noqa: BLE001 - a loop never dies
                    log.exception("machines loop")
                    self.notice(f"machines: {err}")
                await self._nap(self.machines_wake, self.interval)
        finally:
            for task in self.machine_loops.values():
                task.cancel()
            await asyncio.gather(*self.machine_loops.values(), return_exceptions=True)

    def _machine_views(self) -> None:
        """Live machines as hosts: one that is up has a host loop (its samples),
        one being made a view that says so; a destroyed one is forgotten."""
        live = {m.name: m for m in self.engine.machines.live()}
        configured = {h.name for h in self.config.hosts}
        for name in [name for name in self.views if name not in configured and name not in live]:
            self._forget(name)
        for machine in live.values():
            spec = self.engine.machines.spec_of(machine)  # None: no address yet, or its provider left the config
            if machine.state == "up" and spec is not None and machine.name not in self.machine_loops:
                self.views.setdefault(machine.name, ProbeResult(spec, None, None, HostState.CONNECTING))
                self.host_wake[machine.name] = asyncio.Event()
                self.machine_loops[machine.name] = asyncio.create_task(
                    self._host_loop(spec, tell=False), name=f"machine {machine.name}")
            elif machine.name not in self.machine_loops:
                reason = f"{machine.state} ({machine.provider}, {machine.size})" + (
                    f": {machine.error}" if machine.error else "")
                old = self.views.get(machine.name)
                if old is None or old.reason != reason:
                    self._view(ProbeResult(HostSpec(machine.name, address=machine.address, tags=("machine",)),
                                           None, None, HostState.CONNECTING, reason))

    def _machine_going(self, name: str) -> None:
        """A machine is about to be destroyed: its host loop ends first (so it never
        looks down), its view says why."""
        self._end_machine_loop(name)
        if name in self.views:
            self._view(ProbeResult(self.views[name].spec, None, None, HostState.CONNECTING, "destroying"))

    def _end_machine_loop(self, name: str) -> None:
        task = self.machine_loops.pop(name, None)
        if task is not None:
            task.cancel()

    def _forget(self, name: str) -> None:
        """A destroyed machine's view goes; subscribers hear it is gone."""
        self.views.pop(name, None)
        self.host_wake.pop(name, None)
        self._end_machine_loop(name)
        self.hosts.publish({"host": name, "gone": True})

    async def _follow(self, label: str) -> None:
        """The one follower of a job: local copy, log_tail, compression; its bytes go
        to whoever subscribed to its log."""
        topic = self.logs.setdefault(label, Topic())
        try:
            record = await self.engine.follow(label, topic.publish)
            topic.publish(record)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - the next pass starts another
            log.exception("follower %s", label)
            self.notice(f"{label}: {err}")
        finally:
            self.followers.pop(label, None)
            if not topic.queues:
                self.logs.pop(label, None)
            self.wake.set()
            self.machines_wake.set()  # a job on a machine made for it: its log copy is whole now

    def active_work(self) -> bool:
        return (bool(self.engine.active()) or bool(self.engine.tasks) or bool(self.engine.machines.live())
                or next(self.store.find(state=JobState.QUEUED, limit=1), None) is not None)

    async def _idle_loop(self, idle: float) -> None:
        """Stop once no client is attached and no job is queued, starting or
        running, for ``idle`` seconds."""
        while True:
            await asyncio.sleep(min(1.0, idle / 4))
            try:
                busy = self.clients > 0 or self.active_work()
            except SimtuiError as err:
                self.notice(str(err))
                busy = True
            if busy:
                self.idle_since = time.monotonic()
            elif time.monotonic() - self.idle_since >= idle:
                log.info("idle for %gs: exiting", idle)
                self.stopping.set()
                return

    def subscribed_log(self, label: str) -> Topic | None:
        """The topic of a job's live bytes while it has a follower."""
        return self.logs.get(label) if label in self.followers else None
