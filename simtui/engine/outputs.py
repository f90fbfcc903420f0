"""A run's outputs where its record says they are: checked on the host, pulled by
label (one tar stream, each file's sha256 verified against the record), and
compared with another run's (reproduce)."""

from __future__ import annotations

import asyncio
import os
import posixpath
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simtui.engine.project import inside
from simtui.errors import SimtuiError, UsageError
from simtui.hosts import scripts
from simtui.hosts import Host
from simtui.hosts.base import home_relative
from simtui.hosts.local import this_machine
from simtui.hosts.project import hashes
from simtui.model import JobState, Record, to_dict
from simtui.provenance import hash_file

UNCHANGED, CHANGED, MISSING = "unchanged", "changed", "missing"


@dataclass(frozen=True)
class Output:
    """One output as recorded, and what is there now."""

    path: str
    size: int | None
    sha256: str | None
    state: str  # unchanged, changed or missing

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def recorded(record: Record) -> list[dict[str, Any]]:
    """The record's outputs (without the notes of a scan that stopped early)."""
    return [item for item in record.outputs if item.get("path")]


def outputs_root(record: Record) -> str:
    """Where the record's output paths are, on its host."""
    if record.outputs_root:
        return record.outputs_root
    return posixpath.join(record.workdir or "~", record.outputs_dir or ".")


def _state(item: dict[str, Any], sha: str | None) -> str:
    if sha is None:
        return MISSING
    return UNCHANGED if sha == item.get("sha256") else CHANGED


async def check(host: Host, record: Record) -> list[Output]:
    """Each recorded output, and whether it is still on the host unchanged."""
    items = recorded(record)
    for item in items:
        inside(item["path"])
    found = await hashes(host, home_relative(outputs_root(record)), [item["path"] for item in items])
    return [Output(item["path"], item.get("size"), item.get("sha256"), _state(item, found[item["path"]].get("sha256")))
            for item in items]


async def pull(host: Host, record: Record, dest: Path) -> list[Output]:
    """Fetch the recorded outputs into ``dest`` (keeping their folders) in one tar
    stream, and check each file's sha256 against the record. Nothing is moved into
    ``dest`` until all arrived; a file there with other content is never replaced."""
    items = recorded(record)
    paths = [inside(item["path"]) for item in items]
    for item, path in zip(items, paths):
        there = dest / path
        if there.exists() and not (there.is_file() and hash_file(there) == item.get("sha256")):
            raise UsageError(f"{there} exists already (with other content): pull into another folder")
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".simtui-outputs-", dir=dest))
    try:
        archive = host.stream(["sh", "-c", scripts.TAR_FILES, "sh", home_relative(outputs_root(record)), *paths])
        untar = ["tar", "-x", "--no-same-owner", "-f", "-", "-C", str(staging)]
        result = await this_machine().run_with_input(untar, archive)
        if not result.ok:
            raise SimtuiError(f"{record.host}: pulling the outputs of {record.label} failed: "
                              f"{result.stderr.strip() or 'tar failed'}")
        return await asyncio.to_thread(_place, items, paths, staging, dest)
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)


def _place(items: list[dict[str, Any]], paths: list[str], staging: Path, dest: Path) -> list[Output]:
    """Move what arrived (regular files only) from ``staging`` into ``dest``; ``paths``
    are the items' paths, checked."""
    done = []
    for item, path in zip(items, paths):
        got = staging / path
        try:
            regular = stat.S_ISREG(os.lstat(got).st_mode) and got.resolve().is_relative_to(staging.resolve())
        except OSError:
            regular = False
        if not regular:
            done.append(Output(item["path"], item.get("size"), item.get("sha256"), MISSING))
            continue
        sha = hash_file(got)
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        os.replace(got, dest / path)
        done.append(Output(item["path"], item.get("size"), item.get("sha256"), _state(item, sha)))
    return done


def compare(original: Record, rerun: Record) -> dict[str, Any]:
    """How the rerun's outputs compare with the original's, by path and sha256: the
    verdict reproduce keeps in the rerun's record."""
    a = {item["path"]: item.get("sha256") for item in recorded(original)}
    b = {item["path"]: item.get("sha256") for item in recorded(rerun)}
    differ = []
    for path in sorted(a.keys() | b.keys()):
        if path not in b:
            differ.append({"path": path, "original": a[path], "rerun": None, "why": "not made by the rerun"})
        elif path not in a:
            differ.append({"path": path, "original": None, "rerun": b[path], "why": "made by the rerun only"})
        elif a[path] != b[path] or a[path] is None:
            differ.append({"path": path, "original": a[path], "rerun": b[path], "why": "content differs"})
    identical = sum(1 for path in a if path in b and a[path] is not None and a[path] == b[path])
    return {"of": original.label, "outputs": len(a), "identical": identical, "differ": differ,
            "rerun_state": rerun.state.value,
            "reproduced": not differ and rerun.state is JobState.SUCCEEDED}
