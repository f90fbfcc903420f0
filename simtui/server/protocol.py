"""How the server and its clients talk: JSON lines on a Unix socket.

A request is ``{"id": N, "op": NAME, "args": {...}}``; ``{"op": "cancel", "args":
{"request": N}}`` stops request N (its client no longer reads it). The server answers with any
number of ``{"id": N, "event": {...}}`` (a stream: log bytes, samples, job
changes, progress), then exactly one ``{"id": N, "result": ...}`` or ``{"id": N,
"error": {"message": ..., "exit_code": ...}}``. A connection may carry several
requests at once. An event's log bytes (``{"data": bytes}``) travel raw: its line
says how many follow it (``"bytes": N``), then come the N bytes, never in the JSON.
The first request of a connection is ``hello``, which says both ends' PROTOCOL version.

The socket is ``$SIMTUI_HOME/server.sock`` (the folder 0700, the socket 0600:
no other user can talk to it), or, where that path is too long for a Unix
socket, ``/tmp/simtui-<uid>/<hash of the home>.sock`` in a 0700 folder of ours.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from simtui.errors import SimtuiError

PROTOCOL = 3
LIMIT = 16 << 20  # bytes a line may hold
DATA_CHUNK = 1 << 20  # log bytes per message at most
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes, NUL included


class RemoteError(SimtuiError):
    """An error the server reported, with its message and exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ServerGone(SimtuiError):
    """The connection to the server closed before the answer came."""


def private_dir(path: Path) -> Path:
    """``path`` as a folder of ours that no one else can enter (made 0700 if new)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise SimtuiError(f"{path} is not a folder of this user's: simtui will not put its socket there")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def socket_path(home: Path) -> Path:
    path = home / "server.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:16]
    return Path(f"/tmp/simtui-{os.getuid()}") / f"{digest}.sock"


def encode(message: dict[str, Any]) -> bytes:
    event = message.get("event")
    if isinstance(event, dict) and isinstance(event.get("data"), (bytes, bytearray, memoryview)):
        data = event["data"]
        head = {**message, "event": {k: v for k, v in event.items() if k != "data"}, "bytes": len(data)}
        return _line(head) + bytes(data)
    return _line(message)


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


async def read(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message (an event's raw bytes put back as its ``data``), or None at
    the end of the connection."""
    try:
        line = await reader.readline()
        if not line:
            return None
        message = json.loads(line)
        size = message.pop("bytes", None)
        if size is not None:
            message["event"]["data"] = await reader.readexactly(size)
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        return None
    return message


def error_message(err: BaseException) -> dict[str, Any]:
    if isinstance(err, SimtuiError):
        return {"message": str(err), "exit_code": err.exit_code, "type": type(err).__name__}
    return {"message": f"internal error in the simtui server: {type(err).__name__}: {err} (see `simtui server log`)",
            "exit_code": 1, "type": type(err).__name__}


def to_error(data: dict[str, Any]) -> RemoteError:
    return RemoteError(data.get("message", "error"), int(data.get("exit_code", 1)))
