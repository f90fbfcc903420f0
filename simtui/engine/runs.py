"""The run contract: what a job gets besides its command (see DESIGN.md).

- its own folder: a synced run runs in its own copy of the synced tree,
  ``<project folder>/.simtui-runs/<label>/``, made from a tree kept here (trees.py),
  so concurrent runs never see each other's files, a later sync never changes a
  run's code or outputs, and a rerun sends exactly the tree that ran;
- its parameters: the merged parameters (file + ``-p`` overrides) written in the
  file's format into the run's folder, ``$SIMTUI_PARAMS``; an argument naming the
  ``--params`` file names the merged one instead;
- who is starting it: a record ``starting`` whose client process is gone was left
  by a simtui that died, and is settled by the next one that reaches its host.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import posixpath
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

from simtui.engine import trees
from simtui.engine.project import Project, find_project
from simtui.engine.sync import sync
from simtui.engine.tarstream import tar_stream
from simtui.engine.venv import venv_ready
from simtui.errors import UsageError
from simtui.hosts import Host
from simtui.hosts.jobs import Params
from simtui.hosts.project import run_fill, run_tree
from simtui.hosts.project_helper import RUNS
from simtui.model import JobSpec, Record
from simtui.params import dump_params
from simtui.provenance import git_info
from simtui.secret import mask

Progress = Callable[[int, int], None]

# -- parameters -----------------------------------------------------------------------


def param_positions(spec: JobSpec) -> tuple[int, ...]:
    """The job's arguments (1-based) that name the --params file: equal to it as a path."""
    if not spec.params_file:
        return ()
    given = os.path.normpath(spec.params_file)
    return tuple(i for i, arg in enumerate(spec.argv, 1) if os.path.normpath(arg) == given)


def params_plan(spec: JobSpec, params: dict[str, Any]) -> tuple[Params, dict[str, Any]] | None:
    """The merged parameters file to write, and what the record says of it (format,
    sha256); None when the run has no parameters."""
    if not spec.params_file and not params:
        return None
    fmt = spec.params_format or "json"
    text = dump_params(params, fmt)
    target = f"work:{spec.params_target}" if spec.params_target else f"job:params.{fmt}"
    info = {"given": spec.params_file, "format": fmt, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    return Params(text, target, param_positions(spec)), info


def ran_argv(argv: list[str], positions: tuple[int, ...], path: str | None) -> list[str]:
    """The argv as the job got it: the arguments at ``positions`` name ``path``."""
    if not path:
        return argv
    return [path if i in positions else arg for i, arg in enumerate(argv, 1)]


# -- the run's own folder ----------------------------------------------------------------


def run_folder(project_folder: str, label: str) -> str:
    return posixpath.join(project_folder, RUNS, label)


def project_folder(run_dir: str) -> str:
    """The project folder that a run's own folder is in (the inverse of run_folder)."""
    return posixpath.dirname(posixpath.dirname(run_dir))


async def prepare(host: Host, spec: JobSpec, label: str, progress: Progress | None = None) -> JobSpec:
    """The spec to launch under ``label`` on ``host``: for ``sync``, the project
    synced and its tree kept here (git provenance from the local checkout plus the
    tree's sha256); for a spec with a ``tree`` (a rerun), that tree; the workdir
    is then the run's own folder, and the project's venv there is used when ready."""
    if spec.tree:
        trees.load(spec.tree)  # a clear error now when it is not kept
        project = Project(Path(spec.project_root or spec.project or "project"))
    elif spec.sync:
        project = Project(Path(spec.project_root)) if spec.project_root else find_project()
        info = await asyncio.to_thread(git_info, project.root)
        if info and info.get("remote"):  # a remote URL may hold a token: never stored
            info["remote"] = mask(info["remote"])
        if spec.require_clean and info and info["dirty"]:
            changed = info["changed"] + info["untracked"]
            raise UsageError(f"--require-clean: {project.root} has uncommitted changes: {', '.join(changed[:10])}"
                             " (commit or stash them, or drop --require-clean)")
        result = await sync(host, project, progress)
        digest = await asyncio.to_thread(trees.keep, project.root, result.tree)
        spec = replace(spec, tree=digest, project_root=str(project.root), require_clean=False,
                       git={**(info or {}), "tree_sha256": digest},
                       params_target=_inside(project.root, spec.params_file, spec.cwd))
    else:
        return spec
    return replace(spec, project=project.name, workdir=run_folder(project.folder(host.spec), label),
                   venv=await venv_ready(host, project))


def _inside(root: Path, path: str | None, cwd: str | None) -> str | None:
    """``path`` (relative to ``cwd``) relative to ``root`` when it is a file there (a
    params file in the synced tree)."""
    if not path:
        return None
    try:
        rel = (Path(cwd or os.getcwd()) / path).resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return rel.as_posix() if (root / rel).is_file() else None


async def make_run_folder(host: Host, project_folder: str, label: str, digest: str) -> None:
    """Make the run's own folder on the host from the kept tree: what the project
    folder there holds is copied (hashed again on the way), the rest is sent."""
    tree = await asyncio.to_thread(trees.load, digest)
    entries = []
    for path, (mode, sha) in sorted(tree.items()):
        link = (mode & 0o170000) == 0o120000
        entries.append(("L" if link else "F", path, mode, trees.link_target(sha) if link else sha))
    missing = await run_tree(host, project_folder, label, entries)
    if missing:
        members = [(trees.blob(tree[path][1]), path, tree[path][0]) for path in missing]
        await run_fill(host, project_folder, label, tar_stream(members))


# -- who is starting a job ------------------------------------------------------------------


@functools.cache
def this_client() -> str:
    """This process, as a record ``starting`` names it: host, pid and start time."""
    return f"{socket.gethostname()}:{os.getpid()}:{psutil.Process().create_time():.2f}"


def client_alive(record: Record) -> bool:
    """Whether the process starting the record may still be at it (one on another
    machine is assumed to be)."""
    if not record.client:
        return False
    host, _, rest = record.client.partition(":")
    pid, _, created = rest.partition(":")
    if host != socket.gethostname():
        return True
    try:
        return f"{psutil.Process(int(pid)).create_time():.2f}" == created
    except (psutil.Error, ValueError):
        return False
