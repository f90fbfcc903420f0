"""Text from a job or a user made safe before it reaches a terminal, a screen
title, a table cell or XML: the one sanitiser for log lines, tags, reasons, notes,
commands, host messages and parameters.

- ``sanitize``: for a terminal. SGR colours (``ESC [ ... m``), tabs and newlines
  stay; every other control goes: cursor moves, screen clears, OSC sequences
  (window titles, hyperlinks, clipboard writes), DCS/SOS/PM/APC strings, bells and
  the other C0/C1 controls; a lone carriage return is dropped. An unterminated
  OSC or DCS string is dropped up to the end of its line.
- ``sanitize_bytes``: the same for UTF-8 bytes (a log on its way to a terminal),
  passed on untouched where there is nothing to remove.
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

# What a removed piece starts with: C0 controls but tab and newline, DEL, C1 controls
# (8-bit: U+0080-U+009F) and lone surrogates. The pattern opens with this one class,
# so a search skips plain text at C speed; what follows the opening character is
# told apart by looking back at it.
_OPENER = r"\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff"
_OSC_END = r"(?:\x07|\x1b\\|\x9c|(?=\n)|\Z)"  # BEL or ST ends an OSC string (else its line's end)
_STRING_END = r"(?:\x1b\\|\x9c|(?=\n)|\Z)"  # ST ends a DCS, SOS, PM or APC string (else its line's end)
_SEQUENCE = re.compile(
    rf"""
    [{_OPENER}]
    (?: (?<=\x1b) (?: \[ (?P<csi>[0-?]*[ -/]*[@-~])    # CSI: ESC [ params intermediates final
                    | \] .*? {_OSC_END}                # OSC up to its terminator
                    | [PX^_] .*? {_STRING_END}          # DCS, SOS, PM, APC strings
                    | [ -/]*[0-~]? )                    # any other escape
      | (?<=\x9b) [0-?]*[ -/]*[@-~]                    # 8-bit CSI
      | (?<=\x9d) .*? {_OSC_END}                       # 8-bit OSC
      | (?<=[\x90\x98\x9e\x9f]) .*? {_STRING_END}     # 8-bit DCS, SOS, PM, APC
      | (?<=[\ud800-\udfff]) (?P<surrogate>)           # a lone surrogate: not text
      |                                                 # any other C0 or C1 control, alone
    )
    """,
    re.VERBOSE | re.DOTALL,
)
# The bytes that open a removed piece in ASCII text (where nothing else can).
_ASCII_OPENERS = bytes([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F])
_SGR = re.compile(r"[0-9;:]*m")
_BREAK = re.compile("\r\n|[\n\r\u2028\u2029]")
_NOT_XML = re.compile("[\ufffe\uffff]")  # what plain() leaves that XML 1.0 forbids


def _keep_colour(match: re.Match[str]) -> str:
    csi = match.group("csi")
    if csi is not None and _SGR.fullmatch(csi):
        return match.group(0)
    return _no_colour(match)


def _no_colour(match: re.Match[str]) -> str:
    return "\ufffd" if match.group("surrogate") is not None else ""


def _nothing_to_remove(data: bytes) -> bool:
    """Whether ``data`` is ASCII with no control byte but tab and newline: the usual
    log, told at the speed of a copy."""
    return data.isascii() and len(data.translate(None, _ASCII_OPENERS)) == len(data)


def sanitize(text: str) -> str:
    """``text`` with every terminal control sequence removed except SGR colours."""
    if text.isascii() and _nothing_to_remove(text.encode()):
        return text
    return _SEQUENCE.sub(_keep_colour, text)


def sanitize_bytes(data: bytes) -> bytes:
    """UTF-8 ``data`` as ``sanitize`` leaves it, as UTF-8 (undecodable bytes become
    U+FFFD); ``data`` itself where there is nothing to remove. Meant for whole lines:
    a sequence cut in two by the end of ``data`` would lose only its first part."""
    if _nothing_to_remove(data):
        return data
    return sanitize(data.decode("utf-8", "replace")).encode()


def plain(text: str) -> str:
    """``text`` with every terminal control sequence removed, colours too."""
    return _SEQUENCE.sub(_no_colour, text)


def _printable_ascii(text: str) -> bool:
    """Printable ASCII, the usual text: what one_line and xml_text leave as it is,
    told without running their regular expressions."""
    return text.isascii() and text.isprintable()


def one_line(text: str, colour: bool = False) -> str:
    """``text`` as one line: line breaks shown as ``⏎``, tabs as spaces, controls
    removed (SGR colours kept only with ``colour``)."""
    if _printable_ascii(text):
        return text
    text = _BREAK.sub(LINE_BREAK_MARK, text).replace("\t", " ")
    return sanitize(text) if colour else plain(text)


def xml_text(text: str, single_line: bool = False) -> str:
    """``text`` holding only characters XML 1.0 allows, controls and colours removed;
    with ``single_line``, as ``one_line``."""
    if _printable_ascii(text if single_line else text.replace("\n", "")):
        return text
    text = one_line(text) if single_line else plain(text)
    return _NOT_XML.sub("\ufffd", text)
