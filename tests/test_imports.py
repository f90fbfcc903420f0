"""What the command path imports: only what that command needs.

A cold ``simtui run`` talks to the local server, and ``simtui list`` reads the
records file: neither may pay for SSH, the dashboard, GPU bindings, psutil or a
notification library (each tens of milliseconds, or more, at every start). The
real command runs in a subprocess that reports, as it exits, every module it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

AUDIT = """
import atexit, json, sys
atexit.register(lambda: print("\\nMODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["simtui", *sys.argv[1:]]
from simtui.cli import main
main()
"""

HEAVY = {"asyncssh", "textual", "rich", "pynvml", "psutil", "apprise", "pandas", "sqlite_utils", "cryptography"}


def loaded(*args: str, cwd) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", AUDIT, *args], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stderr.rsplit("MODULES ", 1)[1]))


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("")  # the local machine alone
    return path


def test_run_and_list_import_only_what_they_need(config, tmp_path):
    ran = loaded("--config", str(config), "run", "--host", "local", "--", "true", cwd=tmp_path)
    assert {"simtui.cli", "simtui.client", "click"} <= ran  # the audit sees the command's own modules
    tops = {name.split(".")[0] for name in ran}
    assert not tops & HEAVY, sorted(tops & HEAVY)
    # run is a client of the server: no store, no engine, no connection of its own
    assert not {"sqlite3", "simtui.store", "simtui.engine.jobs", "simtui.hosts.ssh", "simtui.ui"} & ran

    listed = loaded("--config", str(config), "list", "--limit", "0", cwd=tmp_path)  # the records file exists
    tops = {name.split(".")[0] for name in listed}
    assert not tops & HEAVY, sorted(tops & HEAVY)
    assert not {"simtui.client", "simtui.engine", "simtui.hosts.ssh", "simtui.ui", "asyncio"} & listed
