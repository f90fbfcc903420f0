"""Hostile text: terminal controls, line breaks and bytes XML forbids in what a job or
a user puts in a record; and a line with no end.

The record commands run as a user runs them (``python -m simtui`` in a subprocess,
into a pipe and onto a pty) against a real SQLite file; the feed is parsed.
"""

from __future__ import annotations

import json
import os
import pty
import random
import re
import sqlite3
import subprocess
import sys
import tracemalloc
import tty
import xml.etree.ElementTree as ET
from pathlib import Path

import feedparser
import pytest
from clirun import simtui
from recordkit import make_record

from simtui.hosts.base import LineSplitter
from simtui.model import JobState
from simtui.store import Store
from simtui.textsafe import one_line, plain, sanitize, xml_text

OSC52 = "\x1b]52;c;cm0gLXJmIH4K\x07"  # write the clipboard
OSC0 = "\x1b]0;pwned\x1b\\"  # rename the window / tmux pane
CSI = "\x1b[2J\x1b[H\x1b[?1049h"  # clear, home, alternate screen
HOSTILE = f"{OSC52}{OSC0}{CSI}\x9b6n\x9d0;t\x9c\x07\x00\x08\x0b\x0c\x1b\x7f\ufffe\uffff"

# what may reach a terminal: text, tab, newline and SGR colours; nothing else starting with ESC or C1
SGR = re.compile(r"\x1b\[[0-9;:]*m")
FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def assert_terminal_safe(text: str) -> None:
    left = SGR.sub("", text)
    bad = FORBIDDEN.search(left)
    assert bad is None, f"control {bad.group()!r} at {bad.start()}: {left[max(0, bad.start() - 40):bad.start() + 40]!r}"


def assert_clean_exit(proc: subprocess.CompletedProcess, code: int = 0) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("pragma integrity_check").fetchone()[0]


@pytest.fixture
def hostile(simtui_env):
    """Two records full of hostile text in $SIMTUI_HOME/records.db; the raw values."""
    store = Store.open()
    a, b = store.insert(
        make_record(
            "c0ffee000001",
            command=f"python train.py \\\n  --lr 0.1{OSC52}\r\n  --name 'two\nlines'\t{CSI}end\u2028x",
            tags=[f"sweep{OSC0}", "red\x1b[31mtag\nnext", "bell\x07"],
            reason=f"why {OSC52} because\nsecond line{OSC0}",
            notes=f"note {HOSTILE} done",
            params={f"lr{OSC0}": f"0.1{OSC52}", "opt": {f"name\n{CSI}": "adam\x1b[5mblink"}},
            log_tail=f"\x1b[32mgreen line\x1b[0m\nline {HOSTILE}\n\x1b[1;31mbold red, no reset\n{OSC0}\n",
            workdir=f"/tmp/w{OSC0}",
            state=JobState.FAILED, exit_code=1,
        ),
        make_record(
            "c0ffee000002",
            command=f"python eval.py\n{OSC52}rm -rf ~",
            tags=["plain"],
            params={f"lr{OSC0}": 0.2, "opt": {f"name\n{CSI}": "sgd\x1b]8;;http://evil\x07link\x1b]8;;\x07"}},
            git={"commit": "1" * 40, "diff": f"--- a\n+++ b\n+{OSC52}added\n"},
        ),
    )
    store.add_tags(a.label, [f"late{OSC52}"])
    store.comment(a.label, f"a comment {CSI}{OSC0}\nwith a line")
    store.close()
    return a, b


def run_on_tty(*args: str) -> tuple[int, str, str]:
    """``simtui ARGS`` with stdout on a pty (raw: no newline translation), as a user sees it."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen([sys.executable, "-m", "simtui", *args], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=subprocess.PIPE)
    os.close(slave)
    out = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the pty
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return proc.wait(timeout=60), out.decode(), err


# -- the commands ------------------------------------------------------------------


def test_list_is_one_line_a_record_with_no_control(hostile, simtui_env):
    proc = simtui("list")
    assert_clean_exit(proc)
    assert_terminal_safe(proc.stdout)
    header, *rows = proc.stdout.splitlines()
    assert header.split()[0] == "LABEL"
    assert [row.split()[0] for row in rows] == ["c0ffee000002", "c0ffee000001"]  # one line each
    assert "python eval.py⏎rm -rf ~" in rows[0]  # the newline shows, the OSC 52 does not
    assert "python train.py \\⏎" in rows[1]
    assert "sweep, redtag⏎next, bell, late" in rows[1]
    assert integrity(simtui_env / "home" / "records.db") == "ok"


def test_list_on_a_terminal_has_no_control_either(hostile):
    code, out, err = run_on_tty("list")
    assert code == 0 and "Traceback" not in err, err
    assert_terminal_safe(out)
    assert "\x1b" not in out  # a table cell holds no colour
    assert len(out.splitlines()) == 3


def test_show_prints_every_field_without_its_controls(hostile, simtui_env):
    proc = simtui("show", "c0ffee000001")
    assert_clean_exit(proc)
    out = proc.stdout
    assert_terminal_safe(out)
    assert "pwned" not in out and "cm0gLXJmIH4K" not in out  # no payload of an OSC
    for visible in ("python train.py \\⏎  --lr 0.1⏎  --name 'two⏎lines' end⏎x", "sweep, redtag⏎next, bell, late",
                    "why  because", "second line", "note \ufffe\uffff done", "a comment", "with a line",
                    "Parameters\n  lr         0.1\n", "opt.name⏎  adamblink", "green line", "bold red, no reset",
                    "/tmp/w"):
        assert visible in out, visible
    assert integrity(simtui_env / "home" / "records.db") == "ok"


def test_show_on_a_terminal_keeps_only_the_logs_colours(hostile):
    code, out, err = run_on_tty("show", "c0ffee000001")
    assert code == 0 and "Traceback" not in err, err
    assert_terminal_safe(out)
    assert "\x1b[32mgreen line\x1b[0m" in out
    assert "\x1b[1;31mbold red, no reset\x1b[0m\n" in out  # a colour the log leaves on is ended
    assert "\x1b[31m" not in out.split("Log (last lines)")[0]  # a tag's colour is not a colour
    assert "\x1b[5m" not in out


def test_diff_prints_no_control(hostile):
    proc = simtui("diff", "c0ffee000001", "c0ffee000002")
    assert_clean_exit(proc)
    assert_terminal_safe(proc.stdout)
    assert "a c0ffee000001  b c0ffee000002" in proc.stdout
    assert "python eval.py⏎rm -rf ~" in proc.stdout
    assert "opt.name⏎  adamblink -> sgdlink" in proc.stdout
    code, out, err = run_on_tty("diff", "c0ffee000001", "c0ffee000002")
    assert code == 0 and "Traceback" not in err, err
    assert_terminal_safe(out)


def test_json_output_stays_the_raw_data(hostile):
    proc = simtui("show", "c0ffee000001", "--json")
    assert_clean_exit(proc)
    shown = json.loads(proc.stdout)
    assert shown["command"] == hostile[0].command
    assert shown["tags"] == [*hostile[0].tags, f"late{OSC52}"]
    assert shown["notes"].startswith(hostile[0].notes)
    assert "\x1b" not in proc.stdout  # JSON escapes the controls itself
    listed = json.loads(simtui("list", "--json").stdout)
    assert listed[0]["command"] == hostile[1].command


def test_hostile_text_from_the_tag_and_comment_commands(simtui_env):
    store = Store.open()
    store.insert(make_record("d00d00000001"))
    store.close()
    for args in (("tag", "d00d00000001", f"t{OSC52}", "two\nlines"), ("comment", "d00d00000001", f"c{OSC0}\x07{CSI}")):
        proc = simtui(*args)
        assert_clean_exit(proc)
    for args in (("list",), ("show", "d00d00000001")):
        proc = simtui(*args)
        assert_clean_exit(proc)
        assert_terminal_safe(proc.stdout)
    assert "t, two⏎lines" in simtui("list").stdout
    assert integrity(simtui_env / "home" / "records.db") == "ok"


def test_tag_and_comment_echo_no_control(simtui_env):
    Store.open().insert(make_record("d00d00000002"))
    for args in (("tag", "d00d00000002", f"t{OSC52}"), ("comment", "d00d00000002", f"c{OSC0}{CSI}")):
        proc = simtui(*args)
        assert_clean_exit(proc)
        assert_terminal_safe(proc.stdout)


def test_a_tag_that_is_not_utf8_is_stored_or_refused_in_one_line(simtui_env):
    Store.open().insert(make_record("d00d00000003"))
    proc = subprocess.run([sys.executable, "-m", "simtui", "tag", "d00d00000003", b"bad\xffbyte"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert Store.open().get("d00d00000003").tags == ["bad\ufffdbyte"]
    assert integrity(simtui_env / "home" / "records.db") == "ok"


def test_the_feed_stays_valid_xml(hostile, simtui_env):
    proc = subprocess.run([sys.executable, "-m", "simtui", "feed"], capture_output=True, timeout=60)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr
    root = ET.fromstring(proc.stdout)  # raises on any character XML forbids
    ns = {"a": "http://www.w3.org/2005/Atom"}
    entries = root.findall("a:entry", ns)
    assert len(entries) == 2
    for element in root.iter():
        for text in (element.text or "", *element.attrib.values()):
            assert "\x1b" not in text and not FORBIDDEN.search(text.replace("\n", "")), text
    first = next(e for e in entries if e.find("a:id", ns).text.endswith("c0ffee000001"))
    terms = [c.get("term") for c in first.findall("a:category", ns)]
    assert terms == ["sweep", "redtag⏎next", "bell", "late"]
    assert "\n" not in first.find("a:title", ns).text
    parsed = feedparser.parse(proc.stdout)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert len(parsed.entries) == 2
    assert integrity(simtui_env / "home" / "records.db") == "ok"


# -- the sanitiser -----------------------------------------------------------------


def test_one_line_shows_every_line_break():
    assert one_line("a\r\nb\nc\rd\u2028e\u2029f\tg") == "a⏎b⏎c⏎d⏎e⏎f g"
    assert one_line(f"x{OSC52}\x1b[31my\x1b[0m{OSC0}") == "xy"
    assert one_line("\x1b[31my\x1b[0m\n", colour=True) == "\x1b[31my\x1b[0m⏎"


def test_an_unterminated_string_goes_only_to_its_lines_end():
    assert sanitize("a\x1b]0;title\nnext line") == "a\nnext line"
    assert sanitize("a\x1bPdcs\nnext") == "a\nnext"
    assert plain("\x1b[1mbold\x1b[0m") == "bold"


def test_a_lone_surrogate_becomes_a_replacement_character():
    raw = b"ok \xff\xfe end".decode("utf-8", "surrogateescape")
    for clean in (sanitize, plain, one_line, xml_text):
        assert clean(raw) == "ok \ufffd\ufffd end"
        clean(raw).encode("utf-8")


def test_xml_text_of_every_code_point_is_valid_xml():
    every = "".join(map(chr, range(0x110000)))
    text, term = xml_text(every), xml_text(every, single_line=True)
    assert "\ufffe" not in text and "\uffff" not in text and "\x1b" not in text and "\n" not in term
    element = ET.Element("a", b=term)
    element.text = text
    parsed = ET.fromstring(ET.tostring(element, encoding="utf-8"))  # raises on a character XML forbids
    assert parsed.text == text and parsed.get("b") == term


# -- a line with no end ------------------------------------------------------------


def reference(data: bytes, cap: int) -> list[str]:
    """What LineSplitter gives for ``data`` read at once, whatever the chunks."""
    *lines, last = data.split(b"\n")
    lines += [last] if last else []
    out = []
    for line in lines:
        if len(line) <= cap:
            out.append(line.decode("utf-8", "replace"))
            continue
        kept = line[:cap]
        for back in range(1, min(4, len(kept)) + 1):  # a character cut in two is left out whole
            byte = kept[-back]
            if byte & 0xC0 != 0x80:
                width = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
                if width > back:
                    kept = kept[:-back]
                break
        out.append(kept.decode("utf-8", "replace") + f" [line cut: {len(line) - len(kept)} bytes left out]")
    return out


def split_all(splitter: LineSplitter, data: bytes, rng: random.Random, most: int) -> list[str]:
    out, at = [], 0
    while at < len(data):
        size = rng.randint(1, most)
        out += splitter.feed(data[at : at + size])
        at += size
    return out + splitter.flush()


@pytest.mark.parametrize("cap", [None, 1, 5, 16, 64])
def test_any_chunking_gives_the_same_lines(cap):
    rng = random.Random(cap or 0)
    words = [b"", b"a", b"line", "αβγ".encode(), "日本語".encode(), "😀".encode(), b"\xff\xfe", b"x" * 40, b"\r"]
    for trial in range(200):
        data = b"".join(rng.choice(words) + (b"\n" if rng.random() < 0.3 else b"")
                        for _ in range(rng.randint(0, 60)))
        expected = reference(data, cap or LineSplitter.MAX_LINE_BYTES)
        for most in (1, 3, 7, 64, len(data) + 1):
            assert split_all(LineSplitter(cap), data, rng, most) == expected, (trial, data, most)


def test_a_cut_line_keeps_whole_characters_and_says_how_much_is_left_out():
    splitter = LineSplitter(7)
    assert splitter.feed("ab日本語\n".encode()) == ["ab日 [line cut: 6 bytes left out]"]
    assert splitter.feed(b"x" * 10) == []
    assert splitter.feed(b"y\nshort\n") == ["xxxxxxx [line cut: 4 bytes left out]", "short"]
    assert splitter.feed(b"z" * 9) == [] and splitter.flush() == ["zzzzzzz [line cut: 2 bytes left out]"]
    assert splitter.flush() == []


def test_a_100_mb_line_without_a_newline_is_cut_in_bounded_memory():
    cap = LineSplitter.MAX_LINE_BYTES
    chunk = bytes(range(32, 127)) * (65536 // 95) + b"z" * (65536 % 95)  # 64 KiB, no newline
    count = 100 * 2**20 // len(chunk)  # 100 MiB
    splitter = LineSplitter()
    tracemalloc.start()
    try:
        out = []
        for _ in range(count):
            out += splitter.feed(chunk)
        out += splitter.feed(b"\nafter\n")
        out += splitter.flush()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(out) == 2 and out[1] == "after"
    left_out = count * len(chunk) - cap
    assert out[0] == (chunk * (cap // len(chunk) + 1))[:cap].decode() + f" [line cut: {left_out} bytes left out]"
    assert peak < 3 * cap, f"peak {peak} bytes for a cap of {cap}"
