"""Plain-text output for the command line: aligned tables and JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from simtui.textsafe import one_line


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; None shows as ``-``. Each cell is
    one line of plain text (textsafe.one_line): no control sequence, no colour, a line
    break shown as ``⏎``; so a row is always one line."""
    cells = [[cell(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    return "\n".join(table_lines(headers, widths, cells))


def cell(value: Any) -> str:
    """A value as a table cell: ``-`` for None, else one line of plain text (textsafe.one_line)."""
    if value is None:
        return "-"
    return one_line(str(value))


def table_lines(headers: Sequence[str], widths: Sequence[int], rows: Iterable[Sequence[str]]) -> Iterator[str]:
    """The lines of a table whose columns are ``widths`` wide: the headers, then a line
    a row of cells (see ``cell``), as the rows come."""
    line = "  ".join(f"{{:<{width}}}" for width in widths).format
    yield line(*(h.upper() for h in headers)).rstrip()
    for row in rows:
        yield line(*row).rstrip()


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def json_list(items: Iterable[str]) -> Iterator[str]:
    """``to_json`` of a list in pieces, from each item's own ``to_json`` text, as they come."""
    empty = True
    for item in items:
        yield ("[\n  " if empty else ",\n  ") + item.replace("\n", "\n  ")
        empty = False
    yield "[]" if empty else "\n]"
