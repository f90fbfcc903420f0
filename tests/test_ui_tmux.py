"""End to end: `simtui` in a real terminal (tmux), driven with keys like a person."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest
from conftest import ON_CI
from sshd import wait_for

from simtui.model import JobState
from simtui.store import Store

TMUX = shutil.which("tmux")


@pytest.fixture
def tmux(tmp_path):
    """A private tmux server; ``tmux(*args)`` runs a command against it."""
    if TMUX is None:
        message = "tmux is not installed (./scripts/test installs it)"
        if ON_CI:
            pytest.fail(message + "; CI must run the end-to-end test", pytrace=False)
        pytest.skip(message)
    socket = str(tmp_path / "tmux.sock")

    def run(*args: str) -> str:
        return subprocess.run([TMUX, "-S", socket, "-f", "/dev/null", *args], check=True,
                              capture_output=True, text=True).stdout

    yield run
    subprocess.run([TMUX, "-S", socket, "kill-server"], capture_output=True)


def test_start_a_job_with_keys_see_it_kill_it_quit(tmux, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[defaults]\ninterval = 0.3\nkill_grace = 2\n[local]\njobs_dir = "{tmp_path}/jobs"\n')
    home = tmp_path / "home"
    # The pane's size, not COLUMNS/LINES: a parent that loaded readline (pytest does) exports
    # its own terminal's, 80x24 without one, and Textual would take those.
    command = (f"env -u COLUMNS -u LINES SIMTUI_HOME={shlex.quote(str(home))} TERM=xterm-256color "
               f"{shlex.quote(sys.executable)} -m simtui --config {shlex.quote(str(config))}; "
               "echo simtui exited $?; sleep 60")
    tmux("new-session", "-d", "-x", "150", "-y", "45", "-s", "e2e", command)

    def screen() -> str:
        return tmux("capture-pane", "-p", "-t", "e2e")

    def shows(*texts: str, timeout: float = 30) -> None:
        try:
            wait_for(lambda: all(t in screen() for t in texts), timeout=timeout, what=f"{texts} on screen")
        except TimeoutError:
            print(screen())
            raise

    shows("Hosts", "● local  up", "n New", "k Kill")
    tmux("send-keys", "-t", "e2e", "n")
    shows("New job", "Host (ordered by fit)")
    tmux("send-keys", "-t", "e2e", "-l", "sh -c 'i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done'")
    tmux("send-keys", "-t", "e2e", "Enter")
    shows("tick 3", "running")
    store = Store.open(home / "records.db")
    try:
        record = next(store.find())
        assert record.state is JobState.RUNNING and record.host == "local"
        tmux("send-keys", "-t", "e2e", "k")
        shows(f"Kill {record.label} on local?")
        tmux("send-keys", "-t", "e2e", "y")
        shows("killed")
        assert store.get(record.label).state is JobState.KILLED
    finally:
        store.close()
    tmux("send-keys", "-t", "e2e", "q")
    shows("simtui exited 0")
