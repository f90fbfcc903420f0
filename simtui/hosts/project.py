"""A project folder on a host, over any Host: the manifest sync keeps there, the
receiving end of a sync, path checks, ports, and commands shown live.

The work on the host is done by project_helper.py, sent with each command
(``python3 -S -c``): nothing to install, and never an old copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from simtui.errors import CommandFailed, SimtuiError
from simtui.hosts import project_helper
from simtui.hosts.base import Host, command_line
from simtui.hosts.project_helper import SEP

NO_COMMAND = 127  # what a shell answers for a command it cannot find
_EXIT = re.compile(rb"\nsimtui-exit: (\d+)\n$")
_EXIT_TAIL = 32  # bytes held back from live output: the exit line is in them


@functools.cache
def _source() -> str:
    return Path(project_helper.__file__).read_text(encoding="utf-8")


def _helper(host: Host, command: str, *args: str) -> list[str]:
    """The helper's command line; ``--private`` (owner-only modes in the project
    folder) unless the host's config says ``share = true``."""
    mode = "--share" if getattr(host.spec, "share", False) else "--private"
    return ["python3", "-S", "-c", _source(), mode, command, *args]


def _failed(host: Host, command: str, status: int | None, stderr: str) -> SimtuiError:
    if status == NO_COMMAND:
        return SimtuiError(f"{host.name}: python3 is not installed there (simtui needs it for projects)")
    return CommandFailed(host.name, f"project_helper.py {command}", status, stderr)


async def _call(host: Host, command: str, *args: str) -> str:
    result = await host.run(_helper(host, command, *args))
    if not result.ok:
        raise _failed(host, command, result.exit_status, result.stderr)
    return result.stdout


def _manifest(fields: list[str]) -> dict[str, list]:
    """Runs of path, size, mtime_ns, st_mode, sha256 -> path -> [size, mtime_ns, st_mode, sha256]."""
    found = {}
    for i in range(0, len(fields), 5):
        path, size, mtime, mode, sha = fields[i : i + 5]
        found[path] = [int(size), int(mtime), int(mode), sha]
    return found


@dataclass(frozen=True)
class TreeState:
    """What the host says about a synced project folder."""

    manifest: dict[str, list] | None  # None: the caller's copy (of ``version``) is current
    version: str | None
    stale: tuple[str, ...]  # files that no longer match the manifest


async def tree_state(host: Host, root: str, known_version: str) -> TreeState:
    fields = (await _call(host, "state", root, known_version)).split(SEP)[:-1]
    if fields[0] == "same":
        return TreeState(None, None, tuple(fields[1:]))
    end = fields.index("", 2)
    return TreeState(_manifest(fields[2:end]), fields[1], tuple(fields[end + 1 :]))


class Receiver:
    """The receiving end of a sync on the host, started before the caller knows what
    to send: the start of a Python process there is most of its cost, and it can
    overlap the caller's planning. Then exactly one of ``send`` or ``nothing``."""

    def __init__(self, host: Host, root: str) -> None:
        self.host = host
        self._start: asyncio.Future[tuple[bytes, AsyncIterator[bytes] | None, dict[str, str]] | None] = (
            asyncio.get_running_loop().create_future())
        self._done = asyncio.ensure_future(host.run_with_input(_helper(host, "receive", root), self._input()))

    async def _input(self) -> AsyncIterator[bytes]:
        """The frames project_helper's ``receive`` reads: header, tar, end, trailer."""
        start = await self._start
        if start is None:
            yield _framed(b"")
            return
        header, tar, sent = start
        yield _framed(header)
        if tar is not None:
            async for chunk in tar:
                if chunk:
                    yield _frame_size(len(chunk))
                    yield chunk
        yield _framed(b"")
        yield _framed(os.fsencode(SEP.join(item for pair in sent.items() for item in pair)))

    async def send(self, version: str, gone: dict[str, str], tar: AsyncIterator[bytes] | None,
                   sent: dict[str, str]) -> dict[str, list]:
        """The sync's header (the new ``version``; ``gone``: path -> ``D`` to delete
        or ``F`` to forget), its tar stream (None: no files) and ``sent``: path ->
        sha256 of each file in it, complete once the stream has ended (the stream
        may fill it as it goes). Returns the ``[size, mtime_ns, st_mode]`` of each
        file sent, as the host sees them."""
        fields = [version]
        for path, kind in gone.items():
            fields += [kind, path]
        self._start.set_result((os.fsencode(SEP.join(fields)), tar, sent))
        result = await self._done
        if not result.ok:
            raise _failed(self.host, "receive", result.exit_status, result.stderr)
        numbers = [int(field) for field in result.stdout.split(SEP)[:-1]]
        return {path: numbers[i : i + 3] for i, path in zip(range(0, len(numbers), 3), sent)}

    async def nothing(self) -> None:
        """Nothing to send: the command ends without a change (and without a word,
        if it could not even start)."""
        if not self._start.done():
            self._start.set_result(None)
        with contextlib.suppress(SimtuiError):
            await self._done


def _framed(data: bytes) -> bytes:
    """A frame as project_helper reads it: its length in ASCII digits, then it."""
    return _frame_size(len(data)) + data


def _frame_size(size: int) -> bytes:
    return b"%0*d" % (project_helper.HEADER_DIGITS, size)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def run_tree(host: Host, root: str, label: str, entries: Sequence[tuple[str, str, int, str]]) -> list[str]:
    """Start making the run's own folder (``<root>/.simtui-runs/<label>``) from a tree
    of ``(kind, path, mode, value)``: ``F`` entries (value: sha256) copied from the
    project folder where it holds that content, ``L`` entries (value: target) made
    as links. Returns the paths it lacks: give them to ``run_fill``."""
    fields = [str(item) for entry in entries for item in entry]
    result = await host.run_with_input(_helper(host, "run-tree", root, label),
                                       _once(_framed(os.fsencode(SEP.join(fields)))))
    if not result.ok:
        raise _failed(host, "run-tree", result.exit_status, result.stderr)
    return result.stdout.split(SEP)[:-1]


async def run_fill(host: Host, root: str, label: str, tar: AsyncIterator[bytes]) -> None:
    """The paths ``run_tree`` lacked, as a tar stream; then the run's folder is whole."""
    result = await host.run_with_input(_helper(host, "run-fill", root, label), tar)
    if not result.ok:
        raise _failed(host, "run-fill", result.exit_status, result.stderr)


@dataclass(frozen=True)
class Place:
    """A path in a project folder on a host."""

    inside: bool  # it stays inside the folder, symlinks resolved
    kind: str  # file, dir, link or missing
    files: int  # files and links there (one, for a file)
    bytes: int  # their sizes


async def where(host: Host, root: str, path: str) -> Place:
    """What is at ``path`` (relative to ``root``) on the host."""
    return Place(**json.loads(await _call(host, "where", root, path)))


async def hashes(host: Host, root: str, paths: Sequence[str]) -> dict[str, dict]:
    """Size and sha256 of each regular file at ``paths`` under ``root`` (``missing``
    where there is none, or it leads outside)."""
    if not paths:
        return {}
    return {item["path"]: item for item in json.loads(await _call(host, "hashes", root, *paths))}


async def free_port(host: Host) -> int:
    return int(await _call(host, "free-port"))


async def port_open(host: Host, port: int) -> bool:
    return (await host.run(_helper(host, "port-open", str(port)))).ok


async def run_live(host: Host, argv: Sequence[str], on_output: Callable[[bytes], None]) -> int:
    """Run a command, handing its stdout and stderr (merged) to ``on_output`` as
    they come; returns its exit status."""
    script = '"$@" 2>&1; printf "\\nsimtui-exit: %s\\n" "$?"'
    held = b""
    async for chunk in host.stream(["sh", "-c", script, "sh", *argv]):
        held += chunk
        if len(held) > _EXIT_TAIL:
            on_output(held[:-_EXIT_TAIL])
            held = held[-_EXIT_TAIL:]
    found = _EXIT.search(held)
    if found is None:
        raise SimtuiError(f"{host.name}: `{command_line(argv)}` ended without an exit status (connection lost?)")
    on_output(held[: found.start()])
    return int(found[1])
