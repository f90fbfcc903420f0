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
