"""Projects for the sync, push/pull, data, env and notebook tests: a git checkout
with a random name, so that its folder on the shared sshd hosts is its own."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from simtui.engine.project import Project

FILES = {"train.py": "print('trained')\n", "lib/model.py": "DEPTH = 4\n", "lib/util/io.py": "", "README": "x\n"}


def write(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def new_project(parent: Path) -> Project:
    """FILES in a new git checkout under ``parent``, committed."""
    root = parent / f"proj-{secrets.token_hex(4)}"
    write(root, FILES)
    git(parent, "init", "-q", "-b", "main", root.name)
    git(root, "add", ".")
    git(root, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", "init")
    return Project(root)


def folder_on(host, project: Project) -> Path:
    """The project's folder on an sshd host of the lab, read directly."""
    return host.home / "simtui" / "projects" / project.name


def remove_folder(host, project: Project) -> None:
    shutil.rmtree(folder_on(host, project), ignore_errors=True)


# Fixtures for the modules that import them.


@pytest.fixture
def host0(lab):
    return lab.hosts[0]


@pytest.fixture
def project(tmp_path, host0):
    """A new project; its folder on h0 goes afterwards."""
    made = new_project(tmp_path)
    yield made
    remove_folder(host0, made)
