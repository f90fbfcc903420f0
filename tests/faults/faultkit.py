"""What the fault tests share: the one line a fault must end in."""

from __future__ import annotations

import subprocess


def one_line(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """The fault's one line: ``simtui: ...`` naming ``words``, exit ``code``, no traceback."""
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simtui: "), proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]
