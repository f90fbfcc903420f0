"""Byte sizes: parse "1.5G" / "500M" / "4096" and format bytes for people."""

from __future__ import annotations

import re

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str | int | float) -> int:
    """Bytes from a size like ``4G``, ``1.5GiB``, ``500M``, ``512k`` or a plain number.

    Units are binary (K = 1024). Raises ValueError with the accepted forms.
    """
    if isinstance(text, bool):
        raise ValueError(f"expected a size like 4G, 500M or 1.5GiB, got {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"a size cannot be negative, got {text}")
        return int(text)
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"expected a size like 4G, 500M or 1.5GiB, got {text!r}")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


def format_size(n: float | None) -> str:
    """``1536`` -> ``1.5K``; ``None`` -> ``n/a``. Binary units, one decimal at most."""
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(value) < 1024 or unit == "T":
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)}B"
    return f"{value:.1f}".rstrip("0").rstrip(".") + unit


def format_gib(n: float | None) -> str:
    """Bytes as ``0.9 GiB`` for reasons in prose."""
    return "n/a" if n is None else f"{n / 1024**3:.1f} GiB"
