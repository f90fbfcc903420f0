"""This machine, behind the same interface as an SSH host: asyncio subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from pathlib import Path

from simtui.hosts.base import CHUNK, CommandResult, Host, PortForward, command_line, pump
from simtui.model import HostFacts, ProcessInfo, Sample


def _home_path(path: str) -> Path:
    """A remote-style path (relative = relative to home, ``~`` expanded)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path.home() / p


class LocalHost(Host):
    """This machine: commands are subprocesses started in the home dir; readings and
    processes come from psutil (and NVML) in this process; jobs default to the
    current directory."""

    helper_python = sys.executable  # simtui's own: started at once (a python3 on PATH may be a slow shim)

    async def connect(self) -> None:
        """Nothing to open: this machine is always reachable."""

    @classmethod
    def default_workdir(cls, cwd: str | None = None) -> str:
        """Where it was asked for."""
        return cwd or os.getcwd()

    def readings(self, interval: float) -> AsyncIterator[HostFacts | Sample]:
        from simtui.hosts import local_sample

        return local_sample.readings(self.spec, interval)

    async def processes(self, limit: int = 1000) -> list[ProcessInfo]:
        from simtui.hosts.processes import local_processes, ranked

        return ranked(await asyncio.to_thread(local_processes), limit)

    async def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        command_line(argv)  # same argument rules as remote hosts
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=Path.home(),  # like a command over SSH: relative paths are relative to home
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(input.encode() if input is not None else None), timeout
            )
        except (asyncio.TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        status = proc.returncode if proc.returncode is not None and proc.returncode >= 0 else None
        return CommandResult(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    async def stream(self, argv: Sequence[str]) -> AsyncIterator[bytes]:
        command_line(argv)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=Path.home(),
            stdin=asyncio.subprocess.PIPE,  # closed when we stop: the command sees EOF
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None and proc.stdin is not None
        ended = False
        try:
            while chunk := await proc.stdout.read(CHUNK):
                yield chunk
            ended = True
        finally:
            proc.stdin.close()
            # Signal only a command we stop early: signalling one that has exited makes
            # Popen reap it behind asyncio's child watcher ("Unknown child process").
            if not ended:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
            await proc.wait()

    async def run_with_input(self, argv: Sequence[str], chunks: AsyncIterable[bytes]) -> CommandResult:
        command_line(argv)
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=Path.home(), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stdin = proc.stdin

        async def write(chunk: bytes) -> None:
            stdin.write(chunk)
            await stdin.drain()

        def abort() -> None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

        feeding = pump(chunks, write, stdin.close, abort, (BrokenPipeError, ConnectionResetError))
        try:
            _, out, err = await asyncio.gather(feeding, proc.stdout.read(), proc.stderr.read())
        finally:
            await proc.wait()
        status = proc.returncode if proc.returncode is not None and proc.returncode >= 0 else None
        return CommandResult(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    async def forward_local_port(self, local_port: int, remote_host: str, remote_port: int) -> PortForward:
        """Nothing to forward on this machine: the server's own port is the local port."""
        return PortForward(remote_port, lambda: None)

    async def put(self, local: Path, remote: str) -> None:
        target = _home_path(remote)
        await asyncio.to_thread(shutil.copyfile, local, target)

    async def get(self, remote: str, local: Path) -> None:
        await asyncio.to_thread(shutil.copyfile, _home_path(remote), local)

    async def close(self) -> None:
        """Nothing to close."""


def this_machine() -> LocalHost:
    """This machine as a host, for work done here (unpacking what a host sent)."""
    from simtui.model import LOCAL, HostKind, HostSpec

    return LocalHost(HostSpec(LOCAL, HostKind.LOCAL))
