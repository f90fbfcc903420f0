"""Text from a job or a user made safe before it reaches a terminal, a screen
title, a table cell or XML: the one sanitiser for log lines, tags, reasons, notes,
commands, host messages and parameters.

- ``sanitize``: for a terminal. SGR colours (``ESC [ ... m``), tabs and newlines
  stay; every other control goes: cursor moves, screen clears, OSC sequences
  (window titles, hyperlinks, clipboard writes), DCS/SOS/PM/APC strings, bells and
  the other C0/C1 controls; a lone carriage return is dropped. An unterminated
  OSC or DCS string is dropped up to the end of its line.
- ``plain``: the same without the colours.
- ``one_line``: for a table cell, a title or a one-line field: every line break
  (``\\r\\n``, ``\\n``, ``\\r``, U+2028, U+2029) shows as ``⏎`` and a tab as a space, so
  one value stays one line; no colours unless asked for.
- ``xml_text``: for XML 1.0 (the Atom feed): ``plain`` text holding only
  characters XML allows (tab, newline and ``#x20-#xD7FF | #xE000-#xFFFD |
  #x10000-#x10FFFF``).

All of them turn a lone surrogate (from bytes decoded with ``surrogateescape``)
into U+FFFD, so the result always encodes as UTF-8. None of them is needed for
``--json`` output, which is data: JSON escapes control characters itself.
"""

from __future__ import annotations

import re

LINE_BREAK_MARK = "⏎"

# ESC [ params intermediates final | ESC ] ... (BEL | ESC \) | other ESC X | C1 CSI/OSC
_SEQUENCE = re.compile(
    r"""
    \x1b\[ (?P<csi>[0-?]*[ -/]*[@-~])      # CSI
  | \x9b [0-?]*[ -/]*[@-~]                 # 8-bit CSI
  | (?:\x1b\]|\x9d) .*? (?:\x07|\x1b\\|\x9c|(?=\n)|\Z)   # OSC up to its terminator (or the line's end)
  | (?:\x1b[PX^_]|[\x90\x98\x9e\x9f]) .*? (?:\x1b\\|\x9c|(?=\n)|\Z)  # DCS, SOS, PM, APC strings
  | \x1b[ -/]*[0-~]?                        # any other escape
  | [\x00-\x08\x0b-\x1f\x7f\x80-\x9f]       # C0 (but tab, newline) and C1 controls
  | (?P<surrogate>[\ud800-\udfff])          # a lone surrogate: not text
    """,
    re.VERBOSE | re.DOTALL,
)
_SGR = re.compile(r"[0-9;:]*m")
_BREAK = re.compile("\r\n|[\n\r\u2028\u2029]")
_NOT_XML = re.compile("[\ufffe\uffff]")  # what plain() leaves that XML 1.0 forbids


def _keep_colour(match: re.Match[str]) -> str:
    csi = match.group("csi")
    if csi is not None and _SGR.fullmatch(csi):
        return match.group(0)
    return "\ufffd" if match.group("surrogate") else ""


def _no_colour(match: re.Match[str]) -> str:
    return "\ufffd" if match.group("surrogate") else ""


def sanitize(text: str) -> str:
    """``text`` with every terminal control sequence removed except SGR colours."""
    return _SEQUENCE.sub(_keep_colour, text)


def plain(text: str) -> str:
    """``text`` with every terminal control sequence removed, colours too."""
    return _SEQUENCE.sub(_no_colour, text)


def one_line(text: str, colour: bool = False) -> str:
    """``text`` as one line: line breaks shown as ``⏎``, tabs as spaces, controls
    removed (SGR colours kept only with ``colour``)."""
    text = _BREAK.sub(LINE_BREAK_MARK, text).replace("\t", " ")
    return sanitize(text) if colour else plain(text)


def xml_text(text: str, single_line: bool = False) -> str:
    """``text`` holding only characters XML 1.0 allows, controls and colours removed;
    with ``single_line``, as ``one_line``."""
    text = one_line(text) if single_line else plain(text)
    return _NOT_XML.sub("\ufffd", text)
