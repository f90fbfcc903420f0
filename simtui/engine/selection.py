"""Which files of a project sync sends.

In a git checkout: what git tracks plus the untracked files it does not ignore
(``git ls-files --cached --others --exclude-standard``), plus the untracked files
that match ``.simtui/include`` (ignored by git or not). Outside git: every file.
Then minus what matches ``.simtui/exclude``, and never ``.git``, the host's
``.venv`` or sync's own manifest.

Patterns follow .gitignore: ``*``, ``?``, ``[...]`` and ``**``; a leading or
inner ``/`` anchors a pattern to the project root, else it matches at any depth;
a trailing ``/`` matches folders (so everything under them); ``!`` takes a path
back; ``#`` starts a comment.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

from simtui.hosts.project_helper import MANIFEST

INCLUDE = ".simtui/include"
EXCLUDE = ".simtui/exclude"
VENV = ".venv"
ALWAYS_EXCLUDED = (".git/", f"/{VENV}/", f"/{MANIFEST}")


def git(root: Path, *args: str) -> bytes | None:
    """stdout of ``git -C root ARGS``; None outside a checkout or without git."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False)
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


class Patterns:
    """.gitignore-style patterns; the last one that matches a path decides."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.rules: list[tuple[bool, re.Pattern[str], bool]] = []  # (negated, regex, folders only)
        self._folders: dict[str, bool] = {}  # the folders of one project: few, asked often
        for line in lines:
            line = line.rstrip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            line = line[1:] if negated else line
            folders_only = line.endswith("/")
            line = line.rstrip("/")
            anchored = "/" in line
            body = _glob_regex(line.lstrip("/"))
            self.rules.append((negated, re.compile(("" if anchored else "(?:.*/)?") + body), folders_only))

    @classmethod
    def read(cls, path: Path, *extra: str) -> Patterns:
        """The patterns of a file (none when it is missing), after ``extra``."""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        return cls([*extra, *lines])

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, path: str, is_dir: bool = False) -> bool:
        """Whether ``path`` (relative, with ``/``) matches, or a folder above it does
        (as in git, a path in a matched folder cannot be taken back)."""
        parent = path.rpartition("/")[0]
        return bool(parent) and self._folder(parent) or self._decide(path, is_dir)

    def _folder(self, folder: str) -> bool:
        if folder not in self._folders:
            self._folders[folder] = self.match(folder, is_dir=True)
        return self._folders[folder]

    def _decide(self, path: str, is_dir: bool) -> bool:
        matched = False
        for negated, regex, folders_only in self.rules:
            if (is_dir or not folders_only) and regex.fullmatch(path):
                matched = not negated
        return matched


def _glob_regex(glob: str) -> str:
    out, i, n = [], 0, len(glob)
    while i < n:
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and (end := glob.find("]", i + 2)) != -1:
            body = glob[i + 1 : end]
            body = "^" + body[1:] if body[0] in "!^" else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif glob[i] == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def project_files(root: Path) -> list[str]:
    """The files sync sends, relative to ``root`` with ``/``, sorted."""
    exclude = Patterns.read(root / EXCLUDE, *ALWAYS_EXCLUDED)
    listed = _git_files(root)
    if listed is None:
        return sorted(_walk(root, "", exclude))
    return sorted({path for path in listed if not exclude.match(path)})


def _git_files(root: Path) -> set[str] | None:
    out = git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if out is None:
        return None
    files = set(os.fsdecode(out).split("\0"))
    if (root / INCLUDE).is_file():
        included = git(root, "ls-files", "-z", "--others", "--ignored", f"--exclude-from={root / INCLUDE}")
        files.update(os.fsdecode(included or b"").split("\0"))
    files.discard("")
    return files


def _walk(root: Path, prefix: str, exclude: Patterns) -> Iterable[str]:
    """Every file and link under ``root/prefix``; excluded folders are not entered."""
    with os.scandir(root / prefix if prefix else root) as entries:
        for entry in entries:
            path = prefix + entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if exclude.match(path, is_dir):
                continue
            if is_dir:
                yield from _walk(root, path + "/", exclude)
            else:
                yield path
