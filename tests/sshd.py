"""Real OpenSSH sshd hosts on loopback for tests and benchmarks.

Each host listens on its own address (127.0.0.2, 127.0.0.3, ...) with its own
generated host key. One generated client key logs into all of them; a
known_hosts file lists every host key. Run as root, each host has its own Unix
user (``simtui-t0``, ``simtui-t1``, ...); otherwise every host logs in as the
current user.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from simtui.model import HostKind, HostSpec

SSHD = shutil.which("sshd") or next(
    (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.path.exists(p)), None
)
IS_ROOT = os.geteuid() == 0


def wait_for(condition, timeout: float = 10.0, what: str = "condition", interval: float = 0.02):
    """Poll ``condition()`` until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _banner(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5) as s:
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
        # A '*' password unlocks the account for key logins under UsePAM no.
        subprocess.run(["usermod", "-p", "*", name], check=True)
        return pwd.getpwnam(name)


def keygen(path: Path, comment: str = "simtui-test") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True
    )
    return path


@dataclass
class SshdHost:
    """One sshd on loopback. ``stop()``/``start()`` may be called mid-test."""

    name: str
    address: str
    port: int
    user: str
    home: Path
    dir: Path
    lab: SshdLab
    proc: subprocess.Popen | None = None
    host_key: Path = field(init=False)

    def __post_init__(self) -> None:
        self.host_key = keygen(self.dir / "host_key", f"host-{self.name}")
        self.config = self.dir / "sshd_config"
        auth_keys = self.lab.authorized_keys_for(self)
        self.config.write_text(
            textwrap.dedent(
                f"""\
                ListenAddress {self.address}:{self.port}
                HostKey {self.host_key}
                PidFile {self.dir}/sshd.pid
                AuthorizedKeysFile {auth_keys}
                AllowUsers {self.user}
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                PubkeyAuthentication yes
                UsePAM no
                StrictModes no
                PermitRootLogin prohibit-password
                Subsystem sftp internal-sftp
                AllowTcpForwarding yes
                MaxStartups 100:30:200
                MaxSessions 50
                ClientAliveInterval 0
                LogLevel ERROR
                """
            )
        )

    @property
    def spec(self) -> HostSpec:
        return HostSpec(
            name=self.name,
            kind=HostKind.SSH,
            address=self.address,
            port=self.port,
            user=self.user,
            identity=str(self.lab.client_key),
            known_hosts=str(self.lab.known_hosts),
            ssh_config=str(self.lab.ssh_config),
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "sshd.log", "ab"),
        )
        try:
            wait_for(lambda: _banner(self.address, self.port) or self.proc.poll() is not None,
                     what=f"sshd on {self.address}:{self.port}")
        finally:
            if self.proc.poll() is not None:
                log = (self.dir / "sshd.log").read_text(errors="replace")
                raise RuntimeError(f"sshd for {self.name} exited: {log[-2000:]}")

    def stop(self, sessions: bool = True) -> None:
        """Stop the listener and (by default) every session sshd it forked."""
        if self.proc is None:
            return
        victims = [self.proc.pid]
        if sessions:
            try:
                victims += [
                    c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)
                    if c.name().startswith("sshd")
                ]
            except psutil.NoSuchProcess:
                pass
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL if pid != self.proc.pid else signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.proc = None

    def pause(self) -> None:
        """Freeze the listener: connections are accepted by the kernel, never answered."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


class SshdLab:
    """N sshd hosts plus the client side: a key, known_hosts, ssh_config and TOML config."""

    def __init__(self, root: Path, count: int, first_address: int = 2, prefix: str = "h") -> None:
        if SSHD is None:
            raise FileNotFoundError("sshd not found (apt-get install openssh-server)")
        if IS_ROOT:
            os.makedirs("/run/sshd", exist_ok=True)
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.client_key = keygen(root / "client_key", "simtui-client")
        self.known_hosts = root / "known_hosts"
        self.ssh_config = root / "ssh_config"
        self.ssh_config.write_text("")
        self.hosts: list[SshdHost] = []
        for i in range(count):
            address = f"127.0.0.{first_address + i}"
            name = f"{prefix}{i}"
            if IS_ROOT:
                user = _ensure_user(f"simtui-t{first_address + i - 2}")
                user_name, home = user.pw_name, Path(user.pw_dir)
            else:
                user_name, home = getpass.getuser(), Path.home()
            host_dir = root / name
            host_dir.mkdir()
            self.hosts.append(
                SshdHost(name, address, _free_port(address), user_name, home, host_dir, self)
            )
        self.known_hosts.write_text(
            "".join(f"[{h.address}]:{h.port} {self.host_key_line(h)}\n" for h in self.hosts)
        )
        self.config = root / "config.toml"
        self.config.write_text(self.config_toml())
        for host in self.hosts:
            host.start()

    def authorized_keys_for(self, host: SshdHost) -> str:
        """Write the client key where sshd (reading as the host's user) can see it."""
        pub = (self.root / "client_key.pub").read_text()
        if IS_ROOT:
            # One file per lab, so that labs running side by side never clobber each other.
            ssh_dir = host.home / ".ssh"
            ssh_dir.mkdir(mode=0o700, exist_ok=True)
            name = f"authorized_keys.{hashlib.sha256(str(self.root).encode()).hexdigest()[:12]}"
            path = ssh_dir / name
            path.write_text(pub)
            user = pwd.getpwnam(host.user)
            for p in (ssh_dir, path):
                os.chown(p, user.pw_uid, user.pw_gid)
            return f".ssh/{name}"
        path = self.root / "authorized_keys"
        path.write_text(pub)
        return str(path)

    @staticmethod
    def host_key_line(host: SshdHost) -> str:
        return " ".join((host.dir / "host_key.pub").read_text().split()[:2])

    def config_toml(self, local: bool = True, hosts: list[SshdHost] | None = None) -> str:
        parts = [] if local else ["[local]\nenabled = false\n"]
        for h in self.hosts if hosts is None else hosts:
            parts.append(
                textwrap.dedent(
                    f"""\
                    [[hosts]]
                    name = "{h.name}"
                    address = "{h.address}"
                    port = {h.port}
                    user = "{h.user}"
                    identity = "{self.client_key}"
                    known_hosts = "{self.known_hosts}"
                    ssh_config = "{self.ssh_config}"
                    """
                )
            )
        return "\n".join(parts)

    def close(self) -> None:
        for host in self.hosts:
            try:
                if host.proc is not None:
                    host.resume()
            except ProcessLookupError:
                pass
            host.stop()
