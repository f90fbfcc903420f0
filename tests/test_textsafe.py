import random

import pytest

from simtui.hosts.base import LineSplitter
from simtui.textsafe import sanitize, sanitize_bytes


def test_colours_stay():
    assert sanitize("\x1b[1;31mred\x1b[0m \x1b[38;5;82mgreen\x1b[m") == "\x1b[1;31mred\x1b[0m \x1b[38;5;82mgreen\x1b[m"


def test_every_other_control_goes():
    hostile = (
        "\x1b[2J\x1b[H"  # clear screen, cursor home
        "\x1b]0;pwned title\x07"  # window title (OSC, BEL-terminated)
        "\x1b]52;c;ZXZpbA==\x1b\\"  # clipboard write (OSC, ST-terminated)
        "\x1bP1$qm\x1b\\"  # DCS request
        "\x9b6n"  # 8-bit CSI: report cursor position
        "\x1b[?1049h"  # alternate screen
        "\x1bc"  # full reset
        "\x07\x08\x00\x7f\r"  # bell, backspace, NUL, DEL, carriage return
        "text\tkept\n"
    )
    assert sanitize(hostile) == "text\tkept\n"


def test_unterminated_sequences_do_not_leak():
    assert sanitize("before\x1b]0;never ends") == "before"
    assert sanitize("x\x1b[") == "x"


def test_plain_unicode_is_untouched():
    assert sanitize("ünï ☃ 日本 — ok") == "ünï ☃ 日本 — ok"


def test_8bit_c1_controls_go_with_what_they_start():
    every = "a\x9b31mb\x9d0;title\x9cc\x90dcs\x9cd\x98sos\x9ce\x9epm\x9cf\x9fapc\x9cg\x85\x8d\x9ch"
    assert sanitize(every) == "abcdefgh"  # CSI, OSC, DCS, SOS, PM, APC, NEL, RI, a lone ST
    assert sanitize("x\x9b2Jy\x9d52;c;evil\x07z") == "xyz"  # an 8-bit CSI is never a colour; OSC ends at BEL


def test_sanitize_bytes_is_sanitize_on_utf8():
    for text in ("plain line\n", "\x1b[31mred\x1b[0m\t\n", "\x1b]0;t\x07\x1b[2J\x9b6nx\r\n", "日本\x85\x1bc\n", ""):
        assert sanitize_bytes(text.encode()) == sanitize(text).encode()
    assert sanitize_bytes(b"bad \xff\xfe utf8\n") == "bad \ufffd\ufffd utf8\n".encode()
    clean = b"nothing to take out\tat all\n" * 1000
    assert sanitize_bytes(clean) is clean  # passed on as it came


HOSTILE_PIECES = [b"ok ", b"\x1b[1;31m", b"red", b"\x1b[0m", b"\x1b]0;title\x07", b"\x1b]52;c;ZXZpbA==\x1b\\",
                  b"\x1bP1$qm\x1b\\", b"\x1b[2J", b"\x1b[?1049h", b"\x1bc", "\x9b6n".encode(), "\x9d0;t\x9c".encode(),
                  "\x90dcs\x9c".encode(), b"\x07\x08\x00\x7f", b"\r", b"\t", "日本".encode(), b"\xff", b"\x1b",
                  b"\x1b]0;never ends", b"\n", b"\n", b"\n"]


@pytest.mark.parametrize("cap", [None, 3, 16])
def test_a_sequence_cut_by_the_pieces_of_a_stream_is_removed_whole(cap):
    """What a terminal gets of a log (whole lines, as the CLI writes them: feed_block,
    then sanitize_bytes) is the whole log sanitised at once, however it was cut up."""
    rng = random.Random(cap or 0)
    for trial in range(300):
        data = b"".join(rng.choice(HOSTILE_PIECES) for _ in range(rng.randint(0, 40)))
        splitter, out, at = LineSplitter(cap), [], 0
        while at < len(data):
            size = rng.randint(1, 9)
            out.append(sanitize_bytes(splitter.feed_block(data[at : at + size])))
            at += size
        out.append(sanitize_bytes(splitter.flush_block()))
        whole = LineSplitter(cap)
        lines = whole.feed(data) + whole.flush()  # the lines (cut where too long) as one piece
        assert b"".join(out) == sanitize("".join(line + "\n" for line in lines)).encode(), (trial, data)
        if cap is None:  # no line cut: the whole log sanitised at once
            ending = "\n" if data and not data.endswith(b"\n") else ""
            assert b"".join(out) == sanitize(data.decode("utf-8", "replace") + ending).encode(), (trial, data)
