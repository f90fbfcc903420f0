from simtui.textsafe import sanitize


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
