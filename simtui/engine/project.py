"""A project: the local checkout that sync sends, and its folder on each host
(``<projects_dir>/<project>``, the project named after the checkout's folder)."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from simtui.engine.selection import git
from simtui.errors import UsageError
from simtui.hosts.base import home_relative
from simtui.model import HostSpec


@dataclass(frozen=True)
class Project:
    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    def folder(self, spec: HostSpec) -> str:
        """Its folder on a host, as the config spells it (``~/simtui/projects/x``)."""
        return posixpath.join(spec.projects_dir, self.name)

    def folder_arg(self, spec: HostSpec) -> str:
        """Its folder as an argument of a command on the host (which starts in home)."""
        return home_relative(self.folder(spec))


def find_project(cwd: Path | None = None) -> Project:
    """The git checkout holding ``cwd`` (default: the current directory), else ``cwd``."""
    here = (cwd or Path.cwd()).resolve()
    top = git(here, "rev-parse", "--show-toplevel")
    root = Path(os.fsdecode(top).strip()) if top else here
    if not root.name:
        raise UsageError(f"{root} cannot be a project: run simtui from the project's folder")
    return Project(root)


def inside(path: str) -> str:
    """A path given relative to the project folder, normalised; a UsageError when it
    would leave the folder (absolute, ``~`` or ``..``). Symlinks are checked on the host."""
    if not path or path.startswith(("/", "~")) or ".." in path.split("/"):
        raise UsageError(f"{path!r} is outside the project folder: give a path relative to it, "
                         "without '..'")
    return posixpath.normpath(path)
