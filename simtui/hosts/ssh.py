"""SSH hosts through asyncssh: the only module that imports it.

Host keys are always verified against known_hosts (the spec's file, else
``~/.ssh/known_hosts``); a missing file means no key is trusted, never that any
key is. Every failure becomes a typed HostError with a one-line message.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import socket
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from pathlib import Path

import asyncssh

from simtui.errors import (
    AuthRefused,
    ChangedHostKey,
    ConnectionRefused,
    HostDisconnected,
    HostError,
    HostTimeout,
    HostUnreachable,
    UnknownHostKey,
)
from simtui.hosts.base import CHUNK, CommandResult, Host, PortForward, command_line, home_relative, pump
from simtui.model import HostSpec

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
DEFAULT_SSH_CONFIG = "~/.ssh/config"
STREAM_WINDOW = 8 << 20  # SSH flow-control window for streams (asyncssh default: 2 MiB)
# Offered first unless the user's ssh config chooses its Ciphers: with AES-NI they
# cost asyncssh far less a packet than its first choice, chacha20 (about a tenth of
# a first sync's time); asyncssh's own list follows.
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


class SshHost(Host):
    def __init__(self, spec: HostSpec, *, timeout: float = 10.0, keepalive: float = 15.0) -> None:
        super().__init__(spec)
        self.timeout = timeout
        self.keepalive = keepalive
        self._conn: asyncssh.SSHClientConnection | None = None

    # -- connection --------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def _known_hosts_file(self) -> str:
        return os.path.expanduser(self.spec.known_hosts or DEFAULT_KNOWN_HOSTS)

    def _known_hosts(self) -> asyncssh.SSHKnownHosts:
        path = self._known_hosts_file()
        if not os.path.exists(path):
            return asyncssh.import_known_hosts("")  # trust nothing
        return asyncssh.read_known_hosts(path)

    def _config_files(self) -> list[str]:
        path = os.path.expanduser(self.spec.ssh_config or DEFAULT_SSH_CONFIG)
        if self.spec.ssh_config and not os.path.exists(path):
            raise HostError(self.name, f"ssh config {path} does not exist (check ssh_config)")
        return [path] if os.path.exists(path) else []

    def _options(self) -> dict:
        spec = self.spec
        options: dict = {
            "config": self._config_files(),
            "known_hosts": self._known_hosts(),
            "keepalive_interval": self.keepalive,
            "keepalive_count_max": 3,
            "connect_timeout": self.timeout,
            "login_timeout": self.timeout,
        }
        if spec.user:
            options["username"] = spec.user
        if spec.port:
            options["port"] = spec.port
        if spec.identity:
            options["client_keys"] = [os.path.expanduser(spec.identity)]
            options["agent_path"] = None
        if not self._config_sets("Ciphers", options["config"]):
            default = [alg.decode() for alg in asyncssh.encryption.get_default_encryption_algs()]
            options["encryption_algs"] = [*FAST_CIPHERS, *(alg for alg in default if alg not in FAST_CIPHERS)]
        return options

    def _config_sets(self, option: str, paths: list[str]) -> bool:
        """Whether the ssh config files say ``option`` for this host (as asyncssh reads
        them, Include and Match too); True where that cannot be told."""
        if not paths:
            return False
        try:
            config = asyncssh.config.SSHClientConfig.load(
                None, paths, False, False, False, getpass.getuser(), self.spec.user or (), self.spec.target,
                self.spec.port or ())
            return config.get(option) is not None
        except Exception:  # noqa: BLE001 - asyncssh's loader is not public API: keep its defaults
            return True

    async def connect(self) -> None:
        if self.connected:
            return
        await self.close()  # a dropped connection: forget it before dialling again
        self.known.clear()
        options = self._options()
        port = options.pop("port", ())
        try:
            self._conn = await asyncio.wait_for(
                asyncssh.connect(self.spec.target, port, **options), self.timeout + 1
            )
        except asyncssh.HostKeyNotVerifiable:
            raise self._host_key_error(options, port) from None
        except asyncssh.PermissionDenied:
            who = f"user {self.spec.user!r}" if self.spec.user else "the configured user"
            raise AuthRefused(
                self.name, f"authentication refused for {who}: check identity / ssh-agent / authorized_keys"
            ) from None
        except ConnectionRefusedError:
            raise ConnectionRefused(
                self.name, f"connection refused by {self.spec.display_address}: is sshd running on that port?"
            ) from None
        except (asyncio.TimeoutError, TimeoutError):
            raise HostTimeout(
                self.name, f"no answer from {self.spec.display_address} within {self.timeout:g}s"
            ) from None
        except socket.gaierror as err:
            raise HostUnreachable(self.name, f"cannot resolve {self.spec.target!r}: {err.strerror}") from None
        except (OSError, asyncssh.Error) as err:
            raise HostUnreachable(self.name, f"cannot connect: {err}") from None

    def _host_key_error(self, options: dict, port: object) -> HostError:
        """Tell an unknown key from a changed one: do we trust any key for it?"""
        resolved = asyncssh.SSHClientConnectionOptions(
            host=self.spec.target, port=port, config=options["config"], known_hosts=None
        )
        host, port_ = resolved.host, resolved.port
        known = self._known_hosts_file()
        trusted = self._known_hosts().match(host, host, port_)[0]
        where = f"[{host}]:{port_}" if port_ != 22 else host
        if trusted:
            return ChangedHostKey(
                self.name,
                f"host key for {where} has CHANGED since it was stored in {known}; if that is "
                f"expected, remove the old key with: ssh-keygen -R '{where}' -f {known}",
            )
        return UnknownHostKey(
            self.name,
            f"host key for {where} is not in {known}; verify it and add it with: "
            f"ssh-keyscan -p {port_} {host} >> {known}",
        )

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            await conn.wait_closed()

    def _connection(self) -> asyncssh.SSHClientConnection:
        if self._conn is None:
            raise HostDisconnected(self.name, "not connected")
        return self._conn

    # -- commands ----------------------------------------------------------

    async def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        line = command_line(argv)
        try:
            result = await self._connection().run(line, input=input, check=False, timeout=timeout)
        except asyncssh.TimeoutError:
            raise HostTimeout(self.name, f"`{line}` did not finish within {timeout:g}s") from None
        except (asyncssh.Error, OSError) as err:
            raise HostDisconnected(self.name, f"connection lost: {err}") from None
        status = result.exit_status if result.exit_status is not None and result.exit_status >= 0 else None
        if status is None and not self.connected:  # the channel closed with the connection
            raise HostDisconnected(self.name, "connection lost while a command ran")
        return CommandResult(status, str(result.stdout or ""), str(result.stderr or ""))

    async def stream(self, argv: Sequence[str]) -> AsyncIterator[bytes]:
        line = command_line(argv)
        try:
            proc = await self._connection().create_process(
                line, encoding=None, stderr=asyncssh.DEVNULL, window=STREAM_WINDOW
            )
        except (asyncssh.Error, OSError) as err:
            raise HostDisconnected(self.name, f"connection lost: {err}") from None
        try:
            while True:
                try:
                    chunk = await proc.stdout.read(CHUNK)
                except (asyncssh.Error, OSError) as err:
                    raise HostDisconnected(self.name, f"connection lost: {err}") from None
                if not chunk:
                    break
                yield chunk
        finally:
            proc.close()

    async def run_with_input(self, argv: Sequence[str], chunks: AsyncIterable[bytes]) -> CommandResult:
        line = command_line(argv)
        try:
            proc = await self._connection().create_process(line, encoding=None, window=STREAM_WINDOW)
        except (asyncssh.Error, OSError) as err:
            raise HostDisconnected(self.name, f"connection lost: {err}") from None

        async def write(chunk: bytes) -> None:
            proc.stdin.write(chunk)
            await proc.stdin.drain()

        gone = (asyncssh.Error, OSError)  # the command stopped reading
        feeding = asyncio.ensure_future(pump(chunks, write, proc.stdin.write_eof, proc.close, gone))
        try:
            out, err = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
            result = await proc.wait()
        except (asyncssh.Error, OSError) as error:
            raise HostDisconnected(self.name, f"connection lost: {error}") from None
        finally:
            if not feeding.done():  # the command ended without reading all of its input
                feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding  # an error making the input propagates
            proc.close()
        status = result.exit_status if result.exit_status is not None and result.exit_status >= 0 else None
        return CommandResult(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    async def forward_local_port(self, local_port: int, remote_host: str, remote_port: int) -> PortForward:
        try:
            listener = await self._connection().forward_local_port("127.0.0.1", local_port, remote_host, remote_port)
        except OSError as err:
            raise HostError(self.name, f"cannot listen on local port {local_port}: {err.strerror or err}") from None
        except asyncssh.Error as err:
            raise HostDisconnected(self.name, f"connection lost: {err}") from None
        return PortForward(listener.get_port(), listener.close)

    # -- files -------------------------------------------------------------

    async def put(self, local: Path, remote: str) -> None:
        try:
            async with self._connection().start_sftp_client() as sftp:
                await sftp.put(str(local), home_relative(remote))
        except (asyncssh.Error, OSError) as err:
            raise HostError(self.name, f"cannot copy {local} to {remote}: {err}") from None

    async def get(self, remote: str, local: Path) -> None:
        try:
            async with self._connection().start_sftp_client() as sftp:
                await sftp.get(home_relative(remote), str(local))
        except (asyncssh.Error, OSError) as err:
            raise HostError(self.name, f"cannot copy {remote} to {local}: {err}") from None
