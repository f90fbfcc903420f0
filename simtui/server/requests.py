"""What a client may ask of the server: one ``op_<name>`` per request.

Each takes ``event`` (an async function that sends a piece of a stream to the
client) and the request's arguments, and returns the result (JSON-ready). A
SimtuiError goes back to the client with its message and exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from simtui.engine.project import Project, find_project
from simtui.errors import SimtuiError
from simtui.model import JobSpec, Record, to_dict
from simtui.server.hub import Hub
from simtui.server.protocol import DATA_CHUNK, PROTOCOL
from simtui.store.logs import LocalLog

Event = Callable[[dict[str, Any]], Awaitable[None]]


class Requests:
    def __init__(self, hub: Hub, config_id: str) -> None:
        self.hub, self.config_id = hub, config_id
        self.engine, self.store = hub.engine, hub.store
        self.started = time.time()

    # -- the server itself ----------------------------------------------------------

    async def op_hello(self, event: Event, version: int, config: str | None = None) -> dict[str, Any]:
        return {"version": PROTOCOL, "pid": os.getpid(), "config": self.config_id, "clients": self.hub.clients}

    async def op_status(self, event: Event) -> dict[str, Any]:
        hub = self.hub
        return {
            "version": PROTOCOL, "pid": os.getpid(), "started": self.started, "config": self.config_id,
            "clients": hub.clients, "hosts": [view.to_dict() for view in hub.views.values()],
            "active": [r.label for r in self.engine.active()], "followers": sorted(hub.followers),
        }

    async def op_stop(self, event: Event) -> dict[str, Any]:
        asyncio.get_running_loop().call_later(0.05, self.hub.stopping.set)
        return {"pid": os.getpid()}

    # -- jobs --------------------------------------------------------------------------

    def _progress(self, event: Event) -> Callable[[int, int], None]:
        """A progress callback (called from worker threads too) that sends events."""
        loop = asyncio.get_running_loop()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done < total and now - last[0] < 0.1:
                return
            last[0] = now
            asyncio.run_coroutine_threadsafe(event({"progress": [done, total]}), loop)

        return progress

    @staticmethod
    def _stage(event: Event) -> Callable[[str], None]:
        """A callback that tells the client what its request is doing now."""

        def stage(text: str) -> None:
            asyncio.ensure_future(event({"stage": text}))

        return stage

    def _done(self, record: Record) -> dict[str, Any]:
        self.hub.wake.set()
        return record.to_dict()

    # A launch or a kill goes on to its end when the client that asked goes away
    # (shielded): a record is never left half-written by a client's Ctrl-C.

    async def op_submit(self, event: Event, spec: dict[str, Any]) -> dict[str, Any]:
        launch = self.engine.submit(JobSpec.from_dict(spec), progress=self._progress(event), stage=self._stage(event))
        return self._done(await asyncio.shield(launch))

    async def op_rerun(self, event: Event, label: str, host: str | None = None) -> dict[str, Any]:
        return self._done(await asyncio.shield(self.engine.rerun(label, host, progress=self._progress(event))))

    async def op_kill(self, event: Event, label: str) -> dict[str, Any]:
        return self._done(await asyncio.shield(self.engine.kill(label)))

    async def op_sweep(self, event: Event, spec: dict[str, Any], points: list[dict[str, Any]]) -> list[dict[str, Any]]:
        launch = self.engine.sweep(JobSpec.from_dict(spec), points, progress=self._progress(event),
                                   stage=self._stage(event))
        return [self._done(record) for record in await asyncio.shield(launch)]

    async def op_kill_sweep(self, event: Event, sweep: str) -> list[dict[str, Any]]:
        return [self._done(record) for record in await asyncio.shield(self.engine.kill_sweep(sweep))]

    async def op_rerun_sweep(self, event: Event, sweep: str, failed: bool = False) -> list[dict[str, Any]]:
        rerun = self.engine.rerun_sweep(sweep, failed=failed, progress=self._progress(event))
        return [self._done(record) for record in await asyncio.shield(rerun)]

    async def op_reproduce(self, event: Event, label: str, host: str | None = None) -> dict[str, Any]:
        """Rerun, stream its log to the end, compare outputs; the verdict is kept."""
        original = self.store.get(label)
        rerun = await asyncio.shield(self.engine.rerun(original.label, host, progress=self._progress(event)))
        self.hub.wake.set()
        await event({"label": rerun.label})
        finished = Record.from_dict((await self.op_follow(event, rerun.label, 0))["record"])
        record, verdict = self.engine.keep_verdict(original, finished)
        return {"record": record.to_dict(), "verdict": verdict}

    async def op_outputs(self, event: Event, label: str, pull_to: str | None = None) -> dict[str, Any]:
        record, found = await self.engine.outputs(label, Path(pull_to) if pull_to else None)
        return {"record": record.to_dict(), "outputs": [o.to_dict() for o in found]}

    # -- logs --------------------------------------------------------------------------

    async def op_read(self, event: Event, label: str, offset: int = 0) -> dict[str, Any]:
        """The log so far, from byte ``offset``."""
        sent = await self._send_all(event, lambda on_data: self.engine.read(label, on_data, offset))
        return {"offset": sent, "record": self.store.get(label).to_dict()}

    @contextlib.asynccontextmanager
    async def _output(self, event: Event) -> AsyncIterator[Callable[[bytes], None]]:
        """A callback whose bytes go out as data events, in order, all of them sent
        before the block ends (so before the request's result or error)."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def pump() -> None:
            while (data := await queue.get()) is not None:
                await self._send_bytes(event, data)

        sender = asyncio.create_task(pump())
        try:
            yield queue.put_nowait
        finally:
            queue.put_nowait(None)
            await sender

    async def _send_all(self, event: Event, produce: Callable[[Callable[[bytes], None]], Awaitable[int]]) -> int:
        """Bytes from ``produce(on_data)`` sent as data events, in order."""
        async with self._output(event) as on_data:
            return await produce(on_data)

    async def op_follow(self, event: Event, label: str, offset: int = 0, tail: int | None = None) -> dict[str, Any]:
        """The log from byte ``offset`` (with ``tail``: the last ``tail`` bytes of the
        local copy, said first as ``{"start": offset}``) until the job ends: the
        local copy, then live bytes from the job's one follower; every byte once."""
        label = self.store.resolve(label)
        if tail is not None:
            offset = max(await asyncio.to_thread(LocalLog(label).size) - tail, 0)
            await event({"start": offset})
        while True:
            topic = self.hub.subscribed_log(label)
            if topic is not None:
                with topic.subscribe() as queue:
                    held = LocalLog(label).size()  # what the copy holds when live bytes start to queue
                    at = offset
                    for chunk in LocalLog(label).chunks(offset) if offset < held else ():
                        await self._send_bytes(event, chunk[: held - at])
                        at += len(chunk)
                        if at >= held:
                            break
                    offset = max(offset, held)
                    at = held
                    while True:
                        item = await queue.get()
                        if isinstance(item, Record):
                            return {"record": item.to_dict(), "offset": offset}
                        if at + len(item) > offset:
                            await self._send_bytes(event, item[max(offset - at, 0):])
                            offset = at + len(item)
                        at += len(item)
            record = self.store.get(label)
            if record.state.finished:
                offset = await self._send_all(event, lambda on_data: self.engine.read(label, on_data, offset))
                return {"record": self.store.get(label).to_dict(), "offset": offset}
            self.hub.wake.set()  # queued or starting: wait for its follower
            with self.hub.jobs.subscribe() as changes:
                if self.hub.subscribed_log(label) is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changes.get(), self.hub.interval)

    async def _send_bytes(self, event: Event, data: bytes) -> None:
        for i in range(0, len(data), DATA_CHUNK):
            await event({"data": data[i : i + DATA_CHUNK]})

    # -- subscriptions -------------------------------------------------------------------

    async def op_hosts(self, event: Event) -> None:
        """Every host's state and samples: the current views, then each change."""
        with self.hub.hosts.subscribe() as queue:
            for wake in self.hub.host_wake.values():
                wake.set()  # sampling starts now
            for view in list(self.hub.views.values()):
                await event(view.to_dict())
            while True:  # a view, or {"host": NAME, "gone": True} for a machine destroyed
                item = await queue.get()
                await event(item if isinstance(item, dict) else item.to_dict())

    async def op_jobs(self, event: Event) -> None:
        """Each record the server writes, and its notices."""
        with self.hub.jobs.subscribe() as queue:
            await event({"attached": True})
            while True:
                await event(await queue.get())

    # -- hosts and projects -----------------------------------------------------------------

    async def op_processes(self, event: Event, host: str) -> list[dict[str, Any]]:
        on = await self.engine.host(host)
        return [to_dict(p) for p in await on.processes()]

    async def op_queue(self, event: Event, host: str) -> list[dict[str, Any]]:
        on = await self.engine.host(host)
        return [job.to_dict() for job in await on.queue()]

    async def op_cancel_job(self, event: Event, host: str, job_id: str) -> dict[str, Any] | None:
        """A run of simtui's is killed through its record; another job scancelled."""
        on = await self.engine.host(host)
        for job in await on.queue():
            if job.job_id == job_id and job.label:
                with contextlib.suppress(SimtuiError):
                    record = self.store.get(job.label)
                    if record.host == host:
                        return (await asyncio.shield(self.engine.kill(record.label))).to_dict()
        await on.cancel(job_id)
        return None

    async def op_destroy_machine(self, event: Event, name: str) -> dict[str, Any]:
        """Destroy a machine made for a job now, whatever its job does (it is lost)."""
        machine = await asyncio.shield(self.engine.machines.destroy_now(name))
        self.hub.wake.set()
        return machine.to_dict()

    async def op_forget_machine(self, event: Event, name: str) -> dict[str, Any]:
        """No longer count a machine live, without its destroy (the user destroyed it)."""
        machine = self.engine.machines.forget(name)
        self.hub.wake.set()
        return machine.to_dict()

    def _project_host(self, project_root: str | None, host: str | None) -> tuple[Project, str]:
        project = Project(Path(project_root)) if project_root else find_project()
        return project, self.hub.config.project_host(host)

    async def op_sync(self, event: Event, project_root: str | None = None, host: str | None = None) -> dict[str, Any]:
        from simtui.engine.sync import sync

        project, name = self._project_host(project_root, host)
        return (await sync(await self.engine.host(name), project, self._progress(event))).to_dict()

    async def op_push(self, event: Event, local: str, remote: str, project_root: str | None = None,
                      host: str | None = None) -> str:
        from simtui.engine.transfer import push

        project, name = self._project_host(project_root, host)
        on = await self.engine.host(name)
        rel = await push(on, project, Path(local), remote, self._progress(event))
        return f"{name}:{posixpath.join(project.folder(on.spec), rel)}"

    async def op_env(self, event: Event, project_root: str | None = None, host: str | None = None) -> dict[str, Any]:
        """Sync, then make the project's venv there; the installer's output streams."""
        from simtui.engine.sync import sync
        from simtui.engine.venv import make_env

        project, name = self._project_host(project_root, host)
        on = await self.engine.host(name)
        await sync(on, project)
        async with self._output(event) as on_output:
            return (await make_env(on, project, on_output)).to_dict()

    async def op_data(self, event: Event, url: str, project_root: str | None = None, host: str | None = None,
                      progress: bool = False) -> str:
        """Download ``url`` on the host into the project's data/; returns where it went."""
        from simtui.engine.transfer import download

        project, name = self._project_host(project_root, host)
        on = await self.engine.host(name)
        async with self._output(event) as on_output:
            rel = await download(on, project, url, on_output, progress)
        return f"{name}:{posixpath.join(project.folder(on.spec), rel)}"

    async def op_notebook(self, event: Event, project_root: str | None = None, host: str | None = None,
                          port: int = 8888, command: list[str] | None = None) -> dict[str, Any]:
        """Start Jupyter (or ``command``) as a job in the project's folder, forward a
        local port to it, say ``{"label", "url"}``; then hold the forward until the
        job ends, or until the client goes (then the job is killed)."""
        from simtui.engine.notebook import start_notebook

        project, name = self._project_host(project_root, host)
        started = await start_notebook(self.engine, name, project, port, command)
        label = started.record.label
        self.hub.wake.set()
        try:
            with self.hub.jobs.subscribe() as changes:
                await event({"label": label, "url": started.url})
                while not self.store.get(label).state.finished:
                    await changes.get()
            return self.store.get(label).to_dict()
        finally:
            started.forward.close()
            if not self.store.get(label).state.finished:
                with contextlib.suppress(SimtuiError):
                    await asyncio.shield(self.engine.kill(label))

    async def op_pull(self, event: Event, remote: str, local: str, project_root: str | None = None,
                      host: str | None = None) -> str:
        from simtui.engine.transfer import pull

        project, name = self._project_host(project_root, host)
        return str(await pull(await self.engine.host(name), project, remote, Path(local), self._progress(event)))

