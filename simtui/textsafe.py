"""Remote output made safe for a terminal: colours stay, every other control goes.

A job's log may hold cursor moves, screen clears, OSC sequences (window titles,
hyperlinks, clipboard writes), bells and other C0/C1 controls; none of them may
reach the user's terminal or the dashboard. SGR sequences (``ESC [ ... m``) are
kept; tabs and newlines are kept; a lone carriage return is dropped.
"""

from __future__ import annotations

import re

# ESC [ params intermediates final | ESC ] ... (BEL | ESC \) | other ESC X | C1 CSI/OSC
_SEQUENCE = re.compile(
    r"""
    \x1b\[ (?P<csi>[0-?]*[ -/]*[@-~])      # CSI
  | \x9b [0-?]*[ -/]*[@-~]                 # 8-bit CSI
  | (?:\x1b\]|\x9d) .*? (?:\x07|\x1b\\|\x9c|$)   # OSC up to its terminator
  | (?:\x1b[PX^_]|[\x90\x98\x9e\x9f]) .*? (?:\x1b\\|\x9c|$)  # DCS, SOS, PM, APC strings
  | \x1b[ -/]*[0-~]?                        # any other escape
  | [\x00-\x08\x0b-\x1f\x7f\x80-\x9f]       # C0 (but tab, newline) and C1 controls
    """,
    re.VERBOSE | re.DOTALL,
)
_SGR = re.compile(r"[0-9;:]*m")


def _keep_colour(match: re.Match[str]) -> str:
    csi = match.group("csi")
    return match.group(0) if csi is not None and _SGR.fullmatch(csi) else ""


def sanitize(text: str) -> str:
    """``text`` with every terminal control sequence removed except SGR colours."""
    return _SEQUENCE.sub(_keep_colour, text)
