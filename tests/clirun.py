"""Run the real `simtui` command line in a subprocess, as scripts do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def simtui(*args: str, config: Path | str | None = None, timeout: float = 60, input: str | None = None,
           cwd: Path | str | None = None):
    cmd = [sys.executable, "-m", "simtui"] + (["--config", str(config)] if config else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input, cwd=cwd)


def simtui_json(*args: str, config: Path | str | None = None, timeout: float = 60,
                cwd: Path | str | None = None) -> Any:
    proc = simtui(*args, "--json", config=config, timeout=timeout, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def popen(*args: str, config: Path | str | None = None, **kwargs: Any) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "simtui"] + (["--config", str(config)] if config else []) + list(args)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
