"""A notebook server in a project's folder on a host: a tracked job (Engine.submit),
reached through a local port forwarded over the host's connection, and killed
when the one who started it stops (Ctrl-C)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from simtui.engine.jobs import Engine
from simtui.engine.project import Project
from simtui.engine.venv import venv_ready
from simtui.errors import SimtuiError, UsageError
from simtui.hosts import scripts
from simtui.hosts import Host
from simtui.hosts.base import PortForward
from simtui.hosts.project import free_port, port_open
from simtui.model import JobSpec, Record

JUPYTER = ("jupyter-lab", "jupyter-notebook")
START_TIMEOUT = 120.0  # seconds for the server to listen
TOKEN_TIMEOUT = 10.0  # seconds for Jupyter to log its URL once it listens
POLL = 0.2
_TOKEN = re.compile(r"[?&]token=([0-9A-Za-z]+)")


@dataclass(frozen=True)
class Notebook:
    record: Record
    url: str  # on this machine
    forward: PortForward


async def start_notebook(engine: Engine, host_name: str, project: Project, local_port: int,
                         command: Sequence[str] | None = None) -> Notebook:
    """Start Jupyter (or ``command``, each ``{port}`` in it replaced by the port it
    should listen on) in the project folder; once it listens, forward
    ``local_port`` (0: any free one) to it."""
    host = await engine.host(host_name)
    await host.check(["mkdir", "-p", project.folder_arg(host.spec)])
    venv = await venv_ready(host, project)
    port = await free_port(host)
    if command is None:
        jupyter = await _jupyter(host, project, venv)
        argv = [jupyter, "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0"]
    else:
        argv = [word.replace("{port}", str(port)) for word in command]
    spec = JobSpec(tuple(argv), host=host_name, workdir=project.folder(host.spec), project=project.name,
                   venv=venv, tags=("notebook",))
    record = await engine.submit(spec)
    try:
        await _listening(engine, host, record.label, port)
        token = await _token(engine, record.label) if command is None else None
        forward = await host.forward_local_port(local_port, "127.0.0.1", port)
    except BaseException:
        with contextlib.suppress(SimtuiError):
            await engine.kill(record.label)
        raise
    return Notebook(record, f"http://127.0.0.1:{forward.port}/" + (f"?token={token}" if token else ""), forward)


async def _jupyter(host: Host, project: Project, venv: str | None) -> str:
    argv = ["sh", "-c", scripts.FIND_COMMAND, "sh", project.folder_arg(host.spec), venv or "", *JUPYTER]
    found = await host.run(argv)
    if not found.ok:
        raise UsageError(f"Jupyter is not installed on {host.name}: add jupyterlab to the project's "
                         "requirements and run `simtui env`, or install it there")
    return found.stdout.strip()


async def _listening(engine: Engine, host: Host, label: str, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not await port_open(host, port):
        await engine.reconcile(host.name)
        record = engine.store.get(label)
        if record.state.finished:
            raise SimtuiError(f"the notebook server {label} ended before it listened: {record.log_tail or ''}".strip())
        if time.monotonic() > deadline:
            raise SimtuiError(f"the notebook server {label} did not listen on port {port} within {START_TIMEOUT:g}s")
        await asyncio.sleep(POLL)


async def _token(engine: Engine, label: str) -> str | None:
    """The token in the URL Jupyter logs; None when it logs none in time."""
    deadline = time.monotonic() + TOKEN_TIMEOUT
    while True:
        log = bytearray()
        await engine.read(label, log.extend)
        found = _TOKEN.search(log.decode("utf-8", "replace"))
        if found or time.monotonic() > deadline:
            return found[1] if found else None
        await asyncio.sleep(POLL)
