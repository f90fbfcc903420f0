"""A project's virtual environment on a host: ``.venv`` in its folder, made from
requirements.txt (else pyproject.toml) with ``uv`` where the host has it, else
``python3 -m venv`` and pip. It is made again only when that file changes: its
sha256 is kept in the venv, written last, so a venv whose making failed is never
taken as ready. Jobs run with ``--sync`` run inside a ready one."""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simtui.engine.project import Project
from simtui.engine.selection import VENV
from simtui.errors import SimtuiError, UsageError
from simtui.hosts import scripts
from simtui.hosts import Host
from simtui.hosts.project import run_live
from simtui.model import to_dict

STAMP = "simtui-requirements.sha256"
REQUIREMENTS = {"requirements.txt": ["-r", "requirements.txt"], "pyproject.toml": ["."]}


@dataclass(frozen=True)
class EnvResult:
    host: str
    venv: str  # its path on the host
    requirements: str  # the file it was made from
    made: bool  # False: it was up to date

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def requirements(project: Project) -> tuple[str, str]:
    """The file the venv is made from, and its sha256 (with its name)."""
    for name in REQUIREMENTS:
        path = project.root / name
        if path.is_file():
            return name, hashlib.sha256(name.encode() + b"\0" + path.read_bytes()).hexdigest()
    raise UsageError(f"{project.root} has no requirements.txt or pyproject.toml to make an environment from")


def _stamp(host: Host, project: Project) -> str:
    return posixpath.join(project.folder_arg(host.spec), VENV, STAMP)


async def venv_ready(host: Host, project: Project) -> str | None:
    """The venv (relative to the project folder) when one is ready there, else None."""
    return VENV if (await host.run(["test", "-f", _stamp(host, project)])).ok else None


async def make_env(host: Host, project: Project, on_output: Callable[[bytes], None]) -> EnvResult:
    """Make the venv on the host unless it was made from these requirements;
    the installer's output goes to ``on_output`` as it comes. Sync first."""
    name, want = requirements(project)
    venv = posixpath.join(project.folder(host.spec), VENV)
    current = await host.run(["cat", _stamp(host, project)])
    if current.ok and current.stdout.strip() == want:
        return EnvResult(host.name, venv, name, made=False)
    argv = ["sh", "-c", scripts.MAKE, "sh", project.folder_arg(host.spec), VENV, STAMP, want, *REQUIREMENTS[name]]
    status = await run_live(host, argv, on_output)
    if status:
        raise SimtuiError(f"{host.name}: making {venv} from {name} failed (exit {status}); see the output above")
    return EnvResult(host.name, venv, name, made=True)
