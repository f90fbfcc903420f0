"""The one interface every host connection offers, whatever carries it."""

from __future__ import annotations

import abc
import contextlib
import shlex
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simtui.errors import CommandFailed, UsageError
from simtui.model import ClusterJob, HostFacts, HostSpec, ProcessInfo, Record, Sample

if TYPE_CHECKING:
    from simtui.hosts.jobs import Capture, Follower, Launched, Params, RemoteJob, Request

CHUNK = 1 << 20  # read size for streams: big reads keep per-chunk overhead low


@dataclass(frozen=True)
class CommandResult:
    exit_status: int | None  # None when killed by a signal
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def why(self) -> str:
        """Why it failed, in one line: the last line of its stderr, else its exit status."""
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit {self.exit_status}"


@dataclass(frozen=True)
class PortForward:
    """A local port that reaches a port on the host while it is open."""

    port: int  # the local port to connect to
    close: Callable[[], None]


async def pump(chunks: AsyncIterable[bytes], write: Callable[[bytes], Awaitable[None]],
               end: Callable[[], None], abort: Callable[[], None],
               gone: tuple[type[BaseException], ...]) -> None:
    """Copy ``chunks`` into a command's stdin, then ``end`` it. ``write`` returns once
    there is room again. A command that stops reading (``gone`` is raised) ends the
    copy quietly: its exit status says why. An error making the chunks ``abort``s
    the command (it would wait for the rest forever) and propagates."""
    source = aiter(chunks)
    while True:
        try:
            chunk = await anext(source, None)
        except BaseException:
            abort()
            raise
        try:
            if chunk is None:
                end()
                return
            await write(chunk)
        except gone:
            return


def command_line(argv: Sequence[str]) -> str:
    """The argv as one shell-safe string: every word quoted (for remote shells)."""
    if isinstance(argv, str) or not argv:
        raise TypeError("a command is a non-empty sequence of words, not a string")
    return shlex.join(argv)


def home_relative(path: str) -> str:
    """A remote path for a command or SFTP: both start in the home dir, and a
    quoted ``~`` is not expanded (``~/x`` -> ``x``, ``~`` -> ``.``)."""
    if path == "~":
        return "."
    return path[2:] if path.startswith("~/") else path


class LineSplitter:
    """Bytes in, complete lines out; a partial line waits for the rest.

    Splitting on b"\\n" before decoding keeps a multi-byte character that arrives
    across two reads intact; undecodable bytes become U+FFFD.

    Linear in the input, memory bounded: a partial line is kept in one growing buffer
    (no re-joining per read), and a line longer than ``max_line`` bytes (default
    MAX_LINE_BYTES) is cut: its first ``max_line`` bytes (less a character cut in
    two) are kept, the rest is counted, not held, and the line comes out when its
    newline (or flush) does, as the kept text then ``" [line cut: N bytes left out]"``.

    ``feed`` gives lines one by one; ``feed_block`` gives the same lines as one piece
    of bytes, for passing a stream on in big pieces at the cost of a copy.
    """

    MAX_LINE_BYTES = 1 << 20  # the longest line kept whole: 1 MiB
    CUT_MARK = " [line cut: {} bytes left out]"

    def __init__(self, max_line: int | None = None) -> None:
        self.max_line = max(1, max_line or self.MAX_LINE_BYTES)
        self._rest = bytearray()  # the start of the line that has no newline yet
        self._dropped = 0  # bytes of that line left out past max_line

    def feed(self, data: bytes) -> list[str]:
        """The lines ``data`` completes, decoded, without their newlines."""
        if b"\n" not in data:
            self._hold(data)
            return []
        first, *middle, last = data.split(b"\n")
        self._hold(first)
        lines = [self._take()]
        if len(data) > self.max_line:  # else no line in it can be too long
            middle = [self._fit(line) for line in middle]
        lines += middle
        self._hold(last)
        return [line.decode("utf-8", "replace") for line in lines]

    def feed_block(self, data: bytes) -> bytes:
        """The lines ``data`` completes, as ``feed`` gives them but undecoded: one
        piece of bytes, each line ending in a newline."""
        first, last = data.find(b"\n"), data.rfind(b"\n") + 1
        if first < 0:
            self._hold(data)
            return b""
        self._hold(data[:first])
        head = self._take()
        middle = data[first + 1 : last]
        if len(middle) > self.max_line:  # else no line in it can be too long
            middle = b"".join(self._fit(line) + b"\n" for line in middle.split(b"\n")[:-1])
        self._hold(data[last:])
        return b"".join((head, b"\n", middle))

    def flush(self) -> list[str]:
        return [self._take().decode("utf-8", "replace")] if self._rest else []

    def flush_block(self) -> bytes:
        """The partial line, as ``flush`` gives it but undecoded, with a newline."""
        return self._take() + b"\n" if self._rest else b""

    def _hold(self, data: bytes) -> None:
        room = self.max_line - len(self._rest)
        if len(data) <= room:
            self._rest += data
        else:
            self._rest += data[:room]
            self._dropped += len(data) - room

    def _take(self) -> bytearray:
        rest, dropped = self._rest, self._dropped
        self._rest, self._dropped = bytearray(), 0
        return self._cut(rest, dropped) if dropped else rest

    def _fit(self, line: bytes) -> bytes:
        """A whole line, cut when it is longer than max_line."""
        cap = self.max_line
        return line if len(line) <= cap else self._cut(bytearray(memoryview(line)[:cap]), len(line) - cap)

    def _cut(self, kept: bytearray, dropped: int) -> bytearray:
        """``kept`` without a last character cut in two, and the mark of what is left out."""
        tail = 0  # bytes of an incomplete UTF-8 sequence at the end of kept
        for back in range(1, min(4, len(kept)) + 1):
            byte = kept[-back]
            if byte & 0xC0 != 0x80:  # not a continuation byte: where the character starts
                width = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
                tail = back if width > back else 0
                break
        if tail:
            del kept[-tail:]
        kept += self.CUT_MARK.format(dropped + tail).encode()
        return kept


class Host(abc.ABC):
    """A connection to one host. Commands are argv sequences, never shell strings:
    where a shell is needed, pass ``["sh", "-c", script]`` and it is quoted for you.
    """

    # The interpreter for simtui's own helper scripts there (not the jobs': they get
    # the python3 on their PATH).
    helper_python = "python3"

    def __init__(self, spec: HostSpec) -> None:
        self.spec = spec
        # What this connection has learned of its host (where the agent is, ...),
        # so that it costs no round trip again; forgotten when it dials again.
        self.known: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def connected(self) -> bool:
        """Whether commands can run now (an SSH connection may drop at any time)."""
        return True

    # -- what differs between kinds of host: overridden where it does --------------------

    @classmethod
    def default_workdir(cls, cwd: str | None = None) -> str:
        """Where a job asked for from ``cwd`` runs when it is given no workdir: the home dir."""
        return "~"

    def readings(self, interval: float) -> AsyncIterator[HostFacts | Sample]:
        """The host's HostFacts, then a Sample per ``interval`` seconds: from the agent
        (see simtui.hosts.probe), for as long as the caller iterates."""
        from simtui.hosts.probe import agent_readings

        return agent_readings(self, interval)

    async def processes(self, limit: int = 1000) -> list[ProcessInfo]:
        """Its processes by CPU, then memory; at most ``limit`` (from ``ps``)."""
        from simtui.hosts.processes import ps_processes

        return await ps_processes(self, limit)

    # -- jobs: how this kind of host runs them (detached under setsid: hosts.jobs) ------------

    # Whether a job's folder has the last word on how it ended; where a scheduler
    # has it, the end a follower sees is checked with job_status.
    settles_from_folder = True
    # Whether its scheduler takes a sweep as one job array (see SlurmHost.submit_array).
    takes_arrays = False

    async def launch_job(self, jobs_dir: str, label: str, argv: Sequence[str], workdir: str,
                         capture: Capture | None, venv: str | None, *, own_dir: bool = False,
                         params: Params | None = None, share: bool = False,
                         request: Request | None = None, environment: Sequence[str] = ()) -> Launched:
        """Start the job (see hosts.jobs.launch); ``request`` is for a scheduler: unused here."""
        from simtui.hosts import jobs

        return await jobs.launch(self, jobs_dir, label, argv, workdir, capture, venv, own_dir=own_dir,
                                 params=params, share=share, environment=environment)

    async def job_status(self, jobs_dir: str, labels: Sequence[str]) -> dict[str, RemoteJob]:
        """What each job's folder says now, all in one command (see hosts.jobs.status);
        a job the host has nothing to say of this time (a scheduler's host) is left out."""
        from simtui.hosts import jobs

        return await jobs.status(self, jobs_dir, labels)

    async def cancel_job(self, jobs_dir: str, label: str) -> tuple[int, int | None] | None:
        """Make sure a job that has not started never will (see hosts.jobs.claim)."""
        from simtui.hosts import jobs

        return await jobs.claim(self, jobs_dir, label)

    async def kill_job(self, jobs_dir: str, label: str, grace: float, pid: int | None = None,
                       pid_start: int | None = None) -> str:
        """Stop the job: "killed", "ended" or "gone" (see hosts.jobs.kill)."""
        from simtui.hosts import jobs

        return await jobs.kill(self, jobs_dir, label, grace, pid, pid_start)

    def follow_job(self, jobs_dir: str, label: str, pid: int, offset: int = 0,
                   pid_start: int | None = None) -> Follower:
        """The job's log from ``offset``, live, until it ends (see hosts.jobs.Follower)."""
        from simtui.hosts import jobs

        return jobs.Follower(self, jobs_dir, label, pid, offset, pid_start)

    async def queue(self) -> list[ClusterJob]:
        """The user's jobs in this host's scheduler queue (a host without one has none)."""
        return []

    async def cancel(self, job_id: str) -> None:
        """Cancel a job of this host's scheduler queue."""
        raise UsageError(f"{self.name} has no scheduler queue to cancel {job_id} in")

    @classmethod
    def chains_after(cls, host: str, record: Record) -> bool:
        """Whether a job on ``host`` (of this kind) can wait for ``record``'s job in the
        host's own queue (started now, it runs once that one has succeeded); else
        simtui's queue holds it until then."""
        return False

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection; raises a HostError subclass on failure."""

    @abc.abstractmethod
    async def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        """Run a command to completion and collect its output."""

    @abc.abstractmethod
    def stream(self, argv: Sequence[str]) -> AsyncIterator[bytes]:
        """Run a command and yield its stdout in chunks as it arrives."""

    @abc.abstractmethod
    async def run_with_input(self, argv: Sequence[str], chunks: AsyncIterable[bytes]) -> CommandResult:
        """Run a command with ``chunks`` as its stdin (streamed: never all in memory)
        and collect its output."""

    @abc.abstractmethod
    async def forward_local_port(self, local_port: int, remote_host: str, remote_port: int) -> PortForward:
        """Listen on 127.0.0.1:``local_port`` (0: any free port) and carry each
        connection to ``remote_host:remote_port`` as seen from the host."""

    @abc.abstractmethod
    async def put(self, local: Path, remote: str) -> None:
        """Copy a local file to the host (remote relative to the home dir)."""

    @abc.abstractmethod
    async def get(self, remote: str, local: Path) -> None:
        """Copy a file from the host to a local path."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection; safe to call twice."""

    async def check(self, argv: Sequence[str], *, input: str | None = None) -> str:
        """Run a command that must succeed; its stdout, else CommandFailed."""
        result = await self.run(argv, input=input)
        if not result.ok:
            raise CommandFailed(self.name, command_line(argv), result.exit_status, result.stderr)
        return result.stdout

    async def lines(self, argv: Sequence[str]) -> AsyncIterator[str]:
        """Run a command and yield its stdout line by line (without the newline)."""
        splitter = LineSplitter()
        async with contextlib.aclosing(self.stream(argv)) as chunks:  # a reader that stops stops the command
            async for chunk in chunks:
                for line in splitter.feed(chunk):
                    yield line
        for line in splitter.flush():
            yield line

    async def __aenter__(self) -> Host:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
