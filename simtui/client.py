"""The one client of the simtui server: the CLI, the dashboard and the library
(``simtui.connect()``) all talk through it.

``connect()`` starts the server (detached, as build daemons do) when none serves
this ``$SIMTUI_HOME``, and restarts an idle one of another version or config. A
stream that loses the server (it was killed) reconnects, which starts a new one,
and resumes where it stopped: every log byte arrives once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import itertools
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from simtui.config import config_identity, simtui_home
from simtui.errors import SimtuiError, UsageError
from simtui.model import ClusterJob, JobSpec, Machine, Needs, ProcessInfo, Record
from simtui.server import protocol
from simtui.server.protocol import PROTOCOL, ServerGone

START_TIMEOUT = 20.0  # seconds for a new server to listen
RECONNECT = (0.1, 0.5, 1.0, 2.0)  # seconds between tries to reach a server that went away

OnData = Callable[[bytes], None]
Progress = Callable[[int, int], None]


class ServerNotRunning(SimtuiError):
    """No server serves this home (and the caller asked not to start one)."""


def _server_argv(config_file: str | None) -> list[str]:
    argv = [sys.executable, "-m", "simtui"]
    if config_file:
        argv += ["--config", str(Path(config_file).expanduser().resolve())]
    return argv + ["server", "run"]


def start_server(config_file: str | None) -> subprocess.Popen:
    """The server, detached: its own session, no terminal, output to its log."""
    home = protocol.private_dir(simtui_home())
    with open(os.open(home / "server.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
        return subprocess.Popen(_server_argv(config_file), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)


async def _dial(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        return await asyncio.open_unix_connection(str(path), limit=protocol.LIMIT)
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except PermissionError:
        raise SimtuiError(f"{path}: permission denied (the simtui server of another user?)") from None


def _log_tail(lines: int = 5) -> str:
    try:
        text = (simtui_home() / "server.log").read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


class Client:
    """A connection to the server. Requests may run side by side on it."""

    def __init__(self, config_file: str | None = None, *, start: bool = True) -> None:
        self.config_file = config_file
        self.start = start
        self.identity = config_identity(config_file)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Queue] = {}
        self._ids = itertools.count(1)
        self._dispatch: asyncio.Task | None = None
        self._reconnecting = asyncio.Lock()
        self.server_pid: int | None = None

    @property
    def connected(self) -> bool:
        """Whether the connection to a server is open and heard from."""
        return self._writer is not None and self._dispatch is not None and not self._dispatch.done()

    # -- the connection ----------------------------------------------------------------

    async def open(self) -> Client:
        path = protocol.socket_path(simtui_home())
        for attempt in range(2):
            streams = await _dial(path)
            if streams is None:
                if not self.start:
                    raise ServerNotRunning(f"no simtui server serves {simtui_home()}")
                streams = await self._start(path)
            self._attach(*streams)
            hello = await self.request("hello", version=PROTOCOL, config=self.identity)
            if hello["version"] == PROTOCOL and hello["config"] == self.identity:
                self.server_pid = hello["pid"]
                return self
            if hello["clients"] > 1 or attempt:
                await self.close()
                raise UsageError(
                    f"a simtui server of another {'version' if hello['version'] != PROTOCOL else 'config'} "
                    f"serves {simtui_home()} (pid {hello['pid']}, {hello['config']}) and has clients: "
                    "close them, or `simtui server stop`")
            await self.request("stop")  # idle but for us: make way for ours
            await self._wait_closed()
            await self._gone(path)
        raise AssertionError("unreachable")

    async def _start(self, path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        proc = start_server(self.config_file)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            streams = await _dial(path)
            if streams is not None:
                return streams
            if proc.poll() is not None:  # it lost the race to another one, or failed
                streams = await _dial(path)
                if streams is not None:
                    return streams
                if proc.returncode != 0:
                    raise SimtuiError(f"the simtui server did not start (exit {proc.returncode}): {_log_tail()}")
            await asyncio.sleep(0.05)
        raise SimtuiError(f"the simtui server did not listen within {START_TIMEOUT:g}s: {_log_tail()}")

    async def _gone(self, path: Path) -> None:
        """Wait until the old server no longer answers."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            streams = await _dial(path)
            if streams is None:
                return
            streams[1].close()
            await asyncio.sleep(0.05)

    def _attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._dispatch = asyncio.create_task(self._read_all(reader))

    async def _read_all(self, reader: asyncio.StreamReader) -> None:
        try:
            while (message := await protocol.read(reader)) is not None:
                queue = self._pending.get(message.get("id"))
                if queue is not None:
                    queue.put_nowait(message)
        finally:
            for queue in self._pending.values():
                queue.put_nowait(None)

    async def _wait_closed(self) -> None:
        if self._dispatch is not None:
            await asyncio.gather(self._dispatch, return_exceptions=True)
        await self.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._dispatch is not None:
            self._dispatch.cancel()
            await asyncio.gather(self._dispatch, return_exceptions=True)
        self._writer = self._dispatch = None

    async def reconnect(self) -> None:
        """After the server went away: reach it again (a new one starts), with a
        short backoff while the old one's lock is released. Several streams of one
        client may call it at once: the first reconnects, the others find it done."""
        async with self._reconnecting:
            if not self.connected:
                await self._reconnect()

    async def _reconnect(self) -> None:
        await self.close()
        for delay in (*RECONNECT, None):
            try:
                await self.open()
                return
            except SimtuiError:
                if delay is None:
                    raise
                await asyncio.sleep(delay)

    async def __aenter__(self) -> Client:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- requests ---------------------------------------------------------------------

    async def request(self, op: str, on_event: Callable[[dict[str, Any]], None] | None = None, **args: Any) -> Any:
        """Send a request; events of its stream go to ``on_event``; returns its result."""
        if self._writer is None:
            raise ServerGone("not connected to the simtui server")
        ident = next(self._ids)
        queue: asyncio.Queue = asyncio.Queue()
        self._pending[ident] = queue
        try:
            self._writer.write(protocol.encode({"id": ident, "op": op, "args": args}))
            await self._writer.drain()
            while True:
                message = await queue.get()
                if message is None:
                    raise ServerGone("the simtui server went away")
                if "event" in message:
                    if on_event is not None:
                        on_event(message["event"])
                elif "error" in message:
                    raise protocol.to_error(message["error"])
                else:
                    return message.get("result")
        except ConnectionError:
            raise ServerGone("the simtui server went away") from None
        except asyncio.CancelledError:
            if self.connected:  # the server stops it too (a stream that is no longer read)
                with contextlib.suppress(ConnectionError):
                    self._writer.write(protocol.encode({"id": next(self._ids), "op": "cancel",
                                                        "args": {"request": ident}}))
            raise
        finally:
            self._pending.pop(ident, None)

    async def stream(self, op: str, **args: Any) -> AsyncIterator[dict[str, Any]]:
        """The events of a subscription (hosts, jobs), until the caller stops."""
        queue: asyncio.Queue = asyncio.Queue()
        task = asyncio.create_task(self.request(op, on_event=queue.put_nowait, **args))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (item := await queue.get()) is not None:
                yield item
            task.result()  # raises what ended it
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    @staticmethod
    def _progress(progress: Progress | None, stage: Callable[[str], None] | None = None,
                  ) -> Callable[[dict[str, Any]], None] | None:
        """The events of a request that reports bytes sent (``progress``) and what it
        is doing (``stage``: a machine being made, say)."""
        if progress is None and stage is None:
            return None

        def heard(event: dict[str, Any]) -> None:
            if "progress" in event and progress is not None:
                progress(*event["progress"])
            elif "stage" in event and stage is not None:
                stage(event["stage"])

        return heard

    # -- jobs ---------------------------------------------------------------------------

    async def submit(self, spec: JobSpec, progress: Progress | None = None,
                     stage: Callable[[str], None] | None = None) -> Record:
        """Launch a job (``spec.cwd`` defaults to this process's directory); ``stage``
        hears each step of making its machine (run --provider)."""
        spec = spec if spec.cwd else dataclasses.replace(spec, cwd=os.getcwd())
        return Record.from_dict(await self.request("submit", self._progress(progress, stage), spec=spec.to_dict()))

    async def run(self, command: str | Sequence[str], *, host: str | None = None, needs: Needs | None = None,
                  params: dict[str, Any] | None = None, params_file: str | None = None, sync: bool = False,
                  project: str | os.PathLike | None = None, tags: Sequence[str] = (), reason: str | None = None,
                  workdir: str | None = None, after: str | None = None, inputs: Sequence[str] = (),
                  outputs_dir: str | None = None, image: str | None = None, provider: str | None = None,
                  size: str | None = None, progress: Progress | None = None) -> Record:
        """Launch a job, as `simtui run` does: ``command`` is an argv (a string is
        split as a shell would); ``params`` override those of ``params_file``. With
        ``provider`` it runs on a machine made for it (the project synced there
        unless a ``workdir`` is given)."""
        from simtui.engine.project import find_project
        from simtui.params import load_params, params_format

        argv = tuple(shlex.split(command)) if isinstance(command, str) else tuple(command)
        merged = load_params(params_file) if params_file else {}
        merged.update(params or {})
        sync = sync or bool(provider and not workdir)
        root = str(Path(project).resolve()) if project else (str(find_project().root) if sync else None)
        spec = JobSpec(argv=argv, host=host, needs=needs or Needs(), workdir=workdir, tags=tuple(tags),
                       reason=reason, params=merged, after=after, inputs=tuple(inputs), outputs_dir=outputs_dir,
                       params_file=params_file, params_format=params_format(params_file), sync=sync,
                       project_root=root, image=image, provider=provider, size=size)
        return await self.submit(spec, progress)

    async def kill(self, label: str) -> Record:
        return Record.from_dict(await self.request("kill", label=label))

    async def sweep(self, spec: JobSpec, points: Sequence[dict[str, Any]], progress: Progress | None = None,
                    stage: Callable[[str], None] | None = None) -> list[Record]:
        """One run per point (its parameters over ``spec.params``), sharing a new sweep id;
        ``stage`` hears each step of making their machines (--provider)."""
        spec = spec if spec.cwd else dataclasses.replace(spec, cwd=os.getcwd())
        found = await self.request("sweep", self._progress(progress, stage), spec=spec.to_dict(), points=list(points))
        return [Record.from_dict(record) for record in found]

    async def kill_sweep(self, sweep: str) -> list[Record]:
        """Kill every run of the sweep that has not ended; its runs as they are after."""
        return [Record.from_dict(record) for record in await self.request("kill_sweep", sweep=sweep)]

    async def rerun_sweep(self, sweep: str, failed: bool = False, progress: Progress | None = None) -> list[Record]:
        """Rerun the sweep's points (``failed``: those that did not succeed) into it."""
        found = await self.request("rerun_sweep", self._progress(progress), sweep=sweep, failed=failed)
        return [Record.from_dict(record) for record in found]

    async def rerun(self, label: str, host: str | None = None, progress: Progress | None = None) -> Record:
        return Record.from_dict(await self.request("rerun", self._progress(progress), label=label, host=host))

    async def reproduce(self, label: str, host: str | None = None, on_data: OnData | None = None,
                        progress: Progress | None = None) -> tuple[Record, dict[str, Any]]:
        """Rerun, wait, compare outputs: the rerun's record and the verdict."""

        def on_event(event: dict[str, Any]) -> None:
            if "data" in event and on_data is not None:
                on_data(event["data"])
            elif "progress" in event and progress is not None:
                progress(*event["progress"])

        result = await self.request("reproduce", on_event, label=label, host=host)
        return Record.from_dict(result["record"]), result["verdict"]

    async def outputs(self, label: str, pull_to: str | os.PathLike | None = None) -> tuple[Record, list[dict]]:
        result = await self.request("outputs", label=label,
                                    pull_to=str(Path(pull_to).resolve()) if pull_to is not None else None)
        return Record.from_dict(result["record"]), result["outputs"]

    def record(self, label: str) -> Record:
        """A record as stored (read straight from the database)."""
        from simtui.store import Store

        store = Store.open()
        try:
            return store.get(label)
        finally:
            store.close()

    # -- logs -----------------------------------------------------------------------------

    async def read(self, label: str, on_data: OnData, offset: int = 0) -> int:
        """The log so far from byte ``offset``; returns the offset after it."""

        def on_event(event: dict[str, Any]) -> None:
            if "data" in event:
                on_data(event["data"])

        return (await self.request("read", on_event, label=label, offset=offset))["offset"]

    async def follow(self, label: str, on_data: OnData | None = None, offset: int = 0,
                     tail: int | None = None, on_start: Callable[[int], None] | None = None) -> Record:
        """The log from byte ``offset`` until the job ends; through a server that
        goes away (a new one is started), every byte once. Returns the finished record.
        With ``tail``: only the last ``tail`` bytes held so far, then on; ``on_start``
        hears where they start."""
        at = offset

        def on_event(event: dict[str, Any]) -> None:
            nonlocal at, tail
            if "start" in event:
                at, tail = event["start"], None  # a resumed stream goes on from where this one got to
                if on_start is not None:
                    on_start(at)
            elif "data" in event:
                data = event["data"]
                at += len(data)
                if on_data is not None:
                    on_data(data)

        while True:
            try:
                result = await self.request("follow", on_event, label=label, offset=at, tail=tail)
                return Record.from_dict(result["record"])
            except ServerGone:
                await self.reconnect()

    async def lines(self, label: str) -> AsyncIterator[str]:
        """The job's log line by line, from the start until it ends."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        task = asyncio.create_task(self.follow(label, queue.put_nowait))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        rest = b""
        try:
            while (data := await queue.get()) is not None:
                *done, rest = (rest + data).split(b"\n")
                for line in done:
                    yield line.decode("utf-8", "replace")
            if rest:
                yield rest.decode("utf-8", "replace")
            task.result()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- hosts, projects ---------------------------------------------------------------------

    async def samples(self) -> AsyncIterator[dict[str, Any]]:
        """Every host's state and samples (ProbeResult.to_dict), as they come."""
        async for event in self.stream("hosts"):
            yield event

    async def jobs(self) -> AsyncIterator[dict[str, Any]]:
        """Each record the server writes ({"record": ...}), its notices ({"notice": ...}),
        and the jobs it starts following ({"following": label}); ignore other keys."""
        async for event in self.stream("jobs"):
            yield event

    async def processes(self, host: str) -> list[ProcessInfo]:
        return [ProcessInfo(**p) for p in await self.request("processes", host=host)]

    async def queue(self, host: str) -> list[ClusterJob]:
        """The user's jobs in a cluster's queue (squeue), simtui's or not."""
        return [ClusterJob(**job) for job in await self.request("queue", host=host)]

    async def destroy_machine(self, name: str) -> Machine:
        """Destroy a machine made for a job now; a job still running there is lost."""
        return Machine.from_dict(await self.request("destroy_machine", name=name))

    async def forget_machine(self, name: str) -> Machine:
        """Stop counting a machine live without destroying it (you destroyed it yourself)."""
        return Machine.from_dict(await self.request("forget_machine", name=name))

    async def cancel(self, host: str, job_id: str) -> Record | None:
        """Cancel one job of a cluster's queue: a simtui run is killed as ``kill``
        does (its record is returned), any other job is scancelled."""
        found = await self.request("cancel_job", host=host, job_id=job_id)
        return Record.from_dict(found) if found else None

    async def sync(self, host: str | None = None, project: str | os.PathLike | None = None,
                   progress: Progress | None = None) -> dict[str, Any]:
        return await self.request("sync", self._progress(progress), host=host, project_root=_root(project))

    async def push(self, local: str | os.PathLike, remote: str, host: str | None = None,
                   project: str | os.PathLike | None = None, progress: Progress | None = None) -> str:
        return await self.request("push", self._progress(progress), local=str(Path(local).resolve()), remote=remote,
                                  host=host, project_root=_root(project))

    async def pull(self, remote: str, local: str | os.PathLike, host: str | None = None,
                   project: str | os.PathLike | None = None, progress: Progress | None = None) -> str:
        return await self.request("pull", self._progress(progress), remote=remote, local=str(Path(local).resolve()),
                                  host=host, project_root=_root(project))

    def _output(self, on_output: OnData | None) -> Callable[[dict[str, Any]], None]:
        return lambda event: on_output(event["data"]) if on_output and "data" in event else None

    async def env(self, host: str | None = None, project: str | os.PathLike | None = None,
                  on_output: OnData | None = None) -> dict[str, Any]:
        """Sync, then make the project's venv on the host; the installer's output goes to ``on_output``."""
        return await self.request("env", self._output(on_output), host=host, project_root=_root(project))

    async def data(self, url: str, host: str | None = None, project: str | os.PathLike | None = None,
                   on_output: OnData | None = None, progress: bool = False) -> str:
        """Download ``url`` on the host into the project's data/; returns host:path."""
        return await self.request("data", self._output(on_output), url=url, host=host, project_root=_root(project),
                                  progress=progress)

    async def notebook(self, on_url: Callable[[str, str], None], host: str | None = None,
                       project: str | os.PathLike | None = None, port: int = 8888,
                       command: Sequence[str] | None = None) -> Record:
        """Jupyter in the project's folder on the host, forwarded to a local port:
        ``on_url(label, url)`` once it listens; returns when the server ends. Leaving
        (cancelling) kills it."""
        label = None

        def on_event(event: dict[str, Any]) -> None:
            nonlocal label
            if "url" in event:
                label = event["label"]
                on_url(event["label"], event["url"])

        try:
            return Record.from_dict(await self.request("notebook", on_event, host=host, project_root=_root(project),
                                                       port=port, command=list(command) if command else None))
        except asyncio.CancelledError:
            if label is not None:  # say so before going: the server kills it
                with contextlib.suppress(SimtuiError):
                    await self.kill(label)
            raise

    async def status(self) -> dict[str, Any]:
        return await self.request("status")

    async def stop(self) -> dict[str, Any]:
        return await self.request("stop")


def _root(project: str | os.PathLike | None) -> str:
    """The project's root: the checkout holding ``project`` (default: here)."""
    from simtui.engine.project import find_project

    return str(find_project(Path(project) if project else None).root)


class SyncClient:
    """The client for code that is not async (a notebook, a script): each call runs
    on a private event loop in a thread of its own and returns its result; the
    async iterators (``lines``, ``samples``, ``jobs``) become plain ones."""

    def __init__(self, config_file: str | None = None, *, start: bool = True) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="simtui-client", daemon=True)
        self._thread.start()
        self._client = Client(config_file, start=start)
        try:
            self._call(self._client.open())
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, agen: AsyncIterator[Any]) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self._call(anext(agen))
                except StopAsyncIteration:
                    return
        finally:
            self._call(agen.aclose())

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if inspect.iscoroutinefunction(attr):
            return functools.wraps(attr)(lambda *args, **kwargs: self._call(attr(*args, **kwargs)))
        if inspect.isasyncgenfunction(attr):
            return functools.wraps(attr)(lambda *args, **kwargs: self._iterate(attr(*args, **kwargs)))
        return attr

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._call(self._client.close())
            self._stop_loop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class connect:  # noqa: N801 - used as a function: simtui.connect()
    """The library's way in: ``async with simtui.connect() as client`` (a Client),
    or ``with simtui.connect() as client`` (a SyncClient) in code that is not async.
    ``config``: a config file (default: as the CLI finds it)."""

    def __init__(self, config: str | os.PathLike | None = None, *, start: bool = True) -> None:
        self.config = str(config) if config is not None else None
        self.start = start
        self._client: Client | None = None
        self._sync: SyncClient | None = None

    async def __aenter__(self) -> Client:
        self._client = await Client(self.config, start=self.start).open()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()

    def __enter__(self) -> SyncClient:
        self._sync = SyncClient(self.config, start=self.start)
        return self._sync

    def __exit__(self, *exc: object) -> None:
        if self._sync is not None:
            self._sync.close()
