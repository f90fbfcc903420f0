from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sshd import SSHD, SshdLab, wait_for  # noqa: E402

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_sshd() -> None:
    if SSHD is None:
        message = "OpenSSH sshd is not installed (the README test command installs it)"
        if ON_CI:
            pytest.fail(message + "; CI must run the SSH tests", pytrace=False)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def simtui_env(tmp_path, monkeypatch):
    """Every test gets its own SIMTUI_HOME and no stray user config; the simtui
    server its commands started there is stopped afterwards."""
    monkeypatch.setenv("SIMTUI_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SIMTUI_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    yield tmp_path
    stop_server(tmp_path / "home")


def stop_server(home: Path) -> None:
    """TERM every simtui server of ``home`` (the one in server.pid, and any still
    starting) and wait for them to go."""
    servers = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline[-2:] != ["server", "run"] or "simtui" not in cmdline:
            continue
        try:
            if proc.environ().get("SIMTUI_HOME") == str(home):
                servers.append(proc)
        except psutil.Error:
            continue
    for proc in servers:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    gone = lambda p: not p.is_running() or p.status() == psutil.STATUS_ZOMBIE  # noqa: E731
    for proc in servers:
        with contextlib.suppress(psutil.Error):
            wait_for(lambda: gone(proc), timeout=20, what=f"the simtui server {proc.pid} to stop")


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """Three real sshd hosts (h0..h2 on 127.0.0.2..4), shared by the session."""
    need_sshd()
    lab = SshdLab(tmp_path_factory.mktemp("lab"), 3)
    yield lab
    lab.close()


@pytest.fixture
def make_lab(tmp_path_factory):
    """A private lab for tests that stop, pause or break their hosts."""
    need_sshd()
    labs: list[SshdLab] = []

    def make(count: int = 1, prefix: str = "x") -> SshdLab:
        first = 20 + 10 * len(labs)
        labs.append(SshdLab(tmp_path_factory.mktemp("lab"), count, first_address=first, prefix=prefix))
        return labs[-1]

    yield make
    for made in labs:
        made.close()


# -- Slurm -------------------------------------------------------------------------
# A real single-node Slurm cluster (tests/slurmd.py) plus one sshd login host whose
# user submits to it over ssh. Needs root and slurm-wlm + munge (scripts/test installs
# them): skipped otherwise, a failure under CI.

import pwd  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import ClassVar  # noqa: E402

import tomli_w  # noqa: E402
from slurmd import SlurmCluster  # noqa: E402
from sshd import IS_ROOT, SshdHost, _ensure_user  # noqa: E402


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """The Slurm cluster, started once per session (~3 s: it stops any slurmctld,
    slurmd or munged already running here, and runs one warm-up job) and stopped at
    the end. Its state, logs and jobcomp.log are under ``cluster.root``."""
    reason = SlurmCluster.available()
    if reason:
        if ON_CI:
            pytest.fail(reason + "; CI must run the Slurm tests", pytrace=False)
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    cluster.up()
    yield cluster
    cluster.down()


@dataclass
class OneHost:
    """One sshd host of a lab, named ``name`` in the configs it writes (with ``extra``
    keys in its ``[[hosts]]`` entry), and real ssh to it as its user."""

    lab: SshdLab
    host: SshdHost

    name: ClassVar[str] = "host"
    extra: ClassVar[dict] = {}

    def host_table(self, **keys) -> dict:
        h = self.host
        return {"name": self.name, "address": h.address, "port": h.port, "user": h.user,
                "identity": str(self.lab.client_key), "known_hosts": str(self.lab.known_hosts),
                "ssh_config": str(self.lab.ssh_config), **self.extra, **keys}

    def config_toml(self, local: bool = False, **keys) -> str:
        """A simtui config with its one ``[[hosts]]`` entry plus the keys given
        (``partitions=["gpu"]``, ``container="podman"``...); no local host unless ``local``."""
        config = {} if local else {"local": {"enabled": False}}
        return tomli_w.dumps({**config, "hosts": [self.host_table(**keys)]})

    def write_config(self, path, local: bool = False, **keys) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.config_toml(local, **keys))
        return path

    def quick_config(self, path, **keys) -> Path:
        """write_config, polled every 0.2 s and with a 2 s kill grace: tests wait less."""
        path = self.write_config(path, **keys)
        path.write_text("[defaults]\ninterval = 0.2\nkill_grace = 2\n" + path.read_text())
        return path

    def ssh(self, command: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        """Run ``command`` on the host as its user, over real ssh."""
        h = self.host
        return subprocess.run(
            ["ssh", "-F", str(self.lab.ssh_config), "-i", str(self.lab.client_key),
             "-o", f"UserKnownHostsFile={self.lab.known_hosts}", "-o", "BatchMode=yes",
             "-p", str(h.port), f"{h.user}@{h.address}", command],
            capture_output=True, text=True, timeout=timeout, **kwargs,
        )


def own_home(name: str) -> pwd.struct_passwd:
    """The Unix user ``name`` (made if missing) with a home that exists and is theirs:
    their jobs, images and outputs are written there."""
    user = _ensure_user(name)
    home = Path(user.pw_dir)
    home.mkdir(parents=True, exist_ok=True)
    if home.stat().st_uid != user.pw_uid:
        shutil.chown(home, user.pw_uid, user.pw_gid)
    return user


@dataclass
class SlurmLab(OneHost):
    """The cluster plus the sshd login host "lab" whose user submits jobs over ssh."""

    cluster: SlurmCluster | None = None
    name = "lab"
    extra = {"kind": "slurm"}


@pytest.fixture(scope="session")
def _slurm_login(tmp_path_factory):
    """One sshd host (login0 on 127.0.0.60, user simtui-t58), shared by the session."""
    need_sshd()
    if IS_ROOT:
        own_home("simtui-t58")  # the user SshdLab gives first_address=60
    lab = SshdLab(tmp_path_factory.mktemp("slurmlab"), 1, first_address=60, prefix="login")
    yield lab
    lab.close()


@pytest.fixture
def slurm_lab(slurm_cluster, _slurm_login):
    """The Slurm cluster with an empty queue (every job left by an earlier test is
    cancelled first) and its ssh login host. Function scope, but cheap: the cluster
    and the sshd are the session's; a test that stops or pauses ``.host`` gets it
    back running in the next test. Yields a SlurmLab: ``.cluster``, ``.lab``,
    ``.host``, ``.config_toml(**keys)``, ``.write_config(path, **keys)``, ``.ssh(cmd)``."""
    host = _slurm_login.hosts[0]
    if host.proc is None:
        host.start()
    else:
        with contextlib.suppress(ProcessLookupError):
            host.resume()
    assert pwd.getpwnam(host.user).pw_uid == Path(host.home).stat().st_uid
    slurm_cluster.cancel_all()
    yield SlurmLab(_slurm_login, host, slurm_cluster)


# -- Podman ------------------------------------------------------------------------
# Rootless podman (tests/podman.py) for the user of one sshd host, "box", whose jobs
# run in containers of the image localhost/busybox:test. Needs root (to install
# podman, runc, uidmap and busybox-static, as scripts/test does, and to give the user
# subuids): skipped otherwise, a failure under CI.

import time  # noqa: E402

from podman import IMAGE as PODMAN_IMAGE, Podman  # noqa: E402


@dataclass
class PodmanLab(OneHost):
    """The sshd host "box" whose user runs rootless podman, and the image it has:
    ``image`` ("localhost/busybox:test"), its ``image_id`` (64 hex) and ``digest``
    ("sha256:<64 hex>", also in RepoDigests as "localhost/busybox@<digest>"; the same
    for every rootless user on this machine: the build is reproducible)."""

    image_id: str = ""
    digest: str = ""
    image: str = PODMAN_IMAGE
    name = "box"


@pytest.fixture(scope="session")
def podman_lab(tmp_path_factory):
    """One sshd host (box0 on 127.0.0.90, user simtui-t88) whose user runs rootless
    podman with ``localhost/busybox:test``, shared by the session. Bring-up: ~2 s when
    the user has the image already, ~10 s more to build it, plus apt-get the first time
    on a machine. At the end the containers the session made are removed (the image
    stays).
    Yields a PodmanLab: ``.lab``, ``.host``, ``.image``, ``.image_id``, ``.digest``,
    ``.config_toml(**keys)``, ``.write_config(path, **keys)``, ``.ssh(cmd)``."""
    need_sshd()
    reason = Podman.available()
    if reason:
        if ON_CI:
            pytest.fail(reason + "; CI must run the podman tests", pytrace=False)
        pytest.skip(reason)
    user = own_home("simtui-t88")  # the user SshdLab gives first_address=90; podman keeps its images there
    Podman.prepare([user.pw_name])
    started = time.time()
    lab = SshdLab(tmp_path_factory.mktemp("podlab"), 1, first_address=90, prefix="box")
    try:
        assert lab.hosts[0].user == user.pw_name
        info = Podman.image_info(user.pw_name)
        yield PodmanLab(lab, lab.hosts[0], image_id=info["Id"], digest=info["Digest"])
    finally:
        Podman.clean(user.pw_name, since=started)  # the session's containers, not another's
        lab.close()


# -- Machines made for a job ----------------------------------------------------------
# A provider (tests/fixtures/loop_provider.py) whose create makes a new Unix user with
# its own sshd and host key on a loopback address, and whose destroy takes both away.
# Needs root (useradd): skipped otherwise, a failure under CI.

LOOP_PROVIDER = Path(__file__).parent / "fixtures" / "loop_provider.py"


@dataclass
class LoopProvider:
    """``.state`` (the provider's folder: one subfolder per live machine, calls.log),
    ``.client_key``; ``.config(path, **provider_keys)`` writes a simtui config whose
    provider "loop" (sizes small 0.5/h, big 2/h) passes ``env`` to its scripts."""

    state: Path
    client_key: Path

    def command(self, which: str, **env: str) -> str:
        settings = {"LOOP_STATE": str(self.state), "LOOP_CLIENT_KEY": f"{self.client_key}.pub", **env}
        return " ".join(f"{k}={shlex.quote(v)}" for k, v in settings.items()) + \
            f" {shlex.quote(sys.executable)} {shlex.quote(str(LOOP_PROVIDER))} {which}"

    def config(self, path: Path, env: dict | None = None, **keys) -> Path:
        provider = {"name": "loop", "create": self.command("create", **(env or {})),
                    "destroy": self.command("destroy", **(env or {})), "host_key": self.command("host_key"),
                    "size": "small", "prices": {"small": 0.5, "big": 2.0}, "identity": str(self.client_key),
                    "ssh_config": str(self.state / "ssh_config"), "boot_timeout": 20, **keys}
        provider = {key: value for key, value in provider.items() if value is not None}
        path.write_text("[defaults]\ninterval = 0.2\nkill_grace = 2\n"
                        + tomli_w.dumps({"local": {"enabled": False}, "providers": [provider]}))
        return path

    def live(self) -> list[str]:
        """The machines whose files are still there."""
        return sorted(p.name for p in self.state.iterdir() if p.is_dir())

    def calls(self) -> list[str]:
        log = self.state / "calls.log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def loop_provider(tmp_path_factory):
    need_sshd()
    if not IS_ROOT:
        message = "the loopback provider makes a Unix user per machine: it needs root"
        if ON_CI:
            pytest.fail(message + "; CI must run the machine tests", pytrace=False)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("provider")
    os.chmod(root, 0o755)
    state = root / "state"
    state.mkdir()
    (state / "ssh_config").write_text("")
    from sshd import keygen

    provider = LoopProvider(state, keygen(root / "client_key", "simtui-machines"))
    yield provider
    for name in provider.live():  # whatever a failing test left
        subprocess.run(provider.command("destroy"), shell=True, env={**os.environ, "SIMTUI_MACHINE": name},
                       check=False)
