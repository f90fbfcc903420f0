"""What differs between two records: the run, parameters, code, environment, files.

Only differences appear. Each changed value is ``{"a": ..., "b": ...}`` with a
side left out where that record has no such value. Nested parameters are
compared by dotted path (``optimizer.lr``), files by path and sha256.
"""

from __future__ import annotations

import difflib
from typing import Any

from simtui.model import Record

_ABSENT = object()
RUN_FIELDS = ("command", "host", "workdir", "project", "state", "exit_code")
GIT_FIELDS = ("remote", "branch", "commit", "dirty", "untracked")


def diff_records(a: Record, b: Record) -> dict[str, Any]:
    left, right = a.to_dict(), b.to_dict()
    sections = {
        "run": changes(_pick(left, RUN_FIELDS), _pick(right, RUN_FIELDS)),
        "params": changes(flatten(a.params), flatten(b.params)),
        "git": _git(a.git or {}, b.git or {}),
        "environment": _environment(a.environment or {}, b.environment or {}),
        "inputs": changes(_hashes(a.inputs), _hashes(b.inputs)),
        "outputs": changes(_hashes(a.outputs), _hashes(b.outputs)),
    }
    return {"a": a.label, "b": b.label, **{name: diff for name, diff in sections.items() if diff}}


def changes(left: dict[str, Any], right: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Keys whose values differ, in order of first appearance."""
    out = {}
    for key in {**left, **right}:
        if left.get(key, _ABSENT) != right.get(key, _ABSENT):
            out[key] = {side: value[key] for side, value in (("a", left), ("b", right)) if key in value}
    return out


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"opt": {"lr": 1}}`` -> ``{"opt.lr": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _pick(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: data[name] for name in names if data.get(name) is not None}


def _hashes(files: list[dict[str, Any]]) -> dict[str, str | None]:
    return {f["path"]: f.get("sha256") for f in files}


def _git(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = changes(_pick(a, GIT_FIELDS), _pick(b, GIT_FIELDS))
    if a.get("diff", "") != b.get("diff", ""):
        lines = difflib.unified_diff(
            (a.get("diff") or "").splitlines(keepends=True),
            (b.get("diff") or "").splitlines(keepends=True),
            "a: git diff HEAD", "b: git diff HEAD",
        )
        out["diff"] = "".join(lines)
    return out


def _environment(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    skip = ("packages", "packages_sha256")
    out: dict[str, Any] = changes(
        {k: v for k, v in a.items() if k not in skip}, {k: v for k, v in b.items() if k not in skip}
    )
    if a.get("packages_sha256") != b.get("packages_sha256"):
        moved = changes(a.get("packages") or {}, b.get("packages") or {})
        packages = {
            "added": {name: c["b"] for name, c in moved.items() if "a" not in c},
            "removed": {name: c["a"] for name, c in moved.items() if "b" not in c},
            "changed": {name: c for name, c in moved.items() if len(c) == 2},
        }
        if moved:
            out["packages"] = {kind: names for kind, names in packages.items() if names}
    return out
