"""The server process: one per ``$SIMTUI_HOME`` (a lock file says which), its
socket, its size-capped log, and the connections of its clients."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import logging.handlers
import os
import signal
import socket
import struct
from pathlib import Path
from typing import Any

from simtui.config import Config, simtui_home
from simtui.errors import SimtuiError, UsageError
from simtui.secret import MaskingFormatter
from simtui.server import protocol
from simtui.server.hub import Hub
from simtui.server.requests import Requests

log = logging.getLogger("simtui.server")
LOG_BYTES = 1 << 20  # the log file is cut here (one older file is kept)


def home_paths(home: Path | None = None) -> dict[str, Path]:
    home = home or simtui_home()
    return {"home": home, "lock": home / "server.lock", "log": home / "server.log", "pid": home / "server.pid",
            "socket": protocol.socket_path(home)}


def serve(config: Config, config_id: str, idle: float) -> bool:
    """Run the server in this process until it is stopped or idle; False when
    another one already serves this home."""
    os.umask(0o077)  # everything the server writes (lock, pid, log, socket) is its user's alone
    paths = home_paths()
    protocol.private_dir(paths["home"])
    lock = open(paths["lock"], "a+")  # noqa: SIM115 - held for the server's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return False
    handler = logging.handlers.RotatingFileHandler(paths["log"], maxBytes=LOG_BYTES, backupCount=1)
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(message)s"))  # no URL secret in the log
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # not every command and channel
    paths["pid"].write_text(f"{os.getpid()}\n")
    try:
        asyncio.run(_main(config, config_id, idle, paths))
    finally:
        with contextlib.suppress(OSError):
            paths["pid"].unlink()
        lock.close()
    return True


async def _main(config: Config, config_id: str, idle: float, paths: dict[str, Path]) -> None:
    from simtui.store import Store

    store = Store.open()
    hub = Hub(config, store)
    requests = Requests(hub, config_id)
    path = paths["socket"]
    protocol.private_dir(path.parent)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a server that was killed: we hold the lock now
    umask = os.umask(0o177)
    try:
        listener = await asyncio.start_unix_server(
            lambda r, w: _connection(hub, requests, r, w), path=str(path), limit=protocol.LIMIT)
    finally:
        os.umask(umask)
    os.chmod(path, 0o600)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, hub.stopping.set)
    log.info("simtui server %d up: %s (config %s)", os.getpid(), path, config_id)
    try:
        await hub.run(idle)
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        store.close()
        log.info("simtui server %d stopped", os.getpid())


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    return None


async def _connection(hub: Hub, requests: Requests, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
    """One client: its requests run side by side; they end when it goes."""
    if _peer_uid(writer) != os.getuid():
        log.warning("refused a connection from uid %s", _peer_uid(writer))
        writer.close()
        return
    hub.clients += 1
    lock = asyncio.Lock()
    tasks: dict[Any, asyncio.Task] = {}  # by request id

    async def send(message: dict[str, Any]) -> None:
        async with lock:
            writer.write(protocol.encode(message))
            await writer.drain()

    try:
        while (message := await protocol.read(reader)) is not None:
            if message.get("op") == "cancel":  # the client no longer wants that request's answer
                cancelled = tasks.get((message.get("args") or {}).get("request"))
                if cancelled is not None:
                    cancelled.cancel()
                continue
            ident = message.get("id")
            task = asyncio.create_task(_request(requests, message, send))
            tasks[ident] = task
            task.add_done_callback(lambda _, ident=ident: tasks.pop(ident, None))
    finally:
        for task in list(tasks.values()):
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        hub.clients -= 1
        writer.close()


async def _request(requests: Requests, message: dict[str, Any], send: Any) -> None:
    ident = message.get("id")
    handler = getattr(requests, f"op_{message.get('op')}", None)

    async def event(data: dict[str, Any]) -> None:
        await send({"id": ident, "event": data})

    try:
        if handler is None:
            raise UsageError(f"the simtui server does not know {message.get('op')!r} (a client of another version?)")
        result = await handler(event, **(message.get("args") or {}))
        await send({"id": ident, "result": result})
    except asyncio.CancelledError:
        raise
    except Exception as err:  # noqa: BLE001 - every error goes back to the client
        if not isinstance(err, SimtuiError):
            log.exception("request %s", message.get("op"))
        with contextlib.suppress(ConnectionError):
            await send({"id": ident, "error": protocol.error_message(err)})
