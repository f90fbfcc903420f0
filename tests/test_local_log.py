import subprocess
import sys

import pytest
from faults.test_text import run_on_tty
from recordkit import make_record

from simtui.store import Store
from simtui.store.logs import READ_CHUNK, LocalLog
from simtui.textsafe import sanitize


def test_append_resume_point_and_compression(tmp_path):
    log = LocalLog("abc", home=tmp_path)
    assert log.claim()
    assert log.size() == 0 and list(log.chunks()) == []
    log.append("α\n".encode()[:1])  # half of a two-byte character
    log.append("α\n".encode()[1:] + b"more\n")
    assert log.size() == len("α\nmore\n".encode())
    log.compress()
    assert log.compressed and not log.path.exists()
    assert b"".join(log.chunks()) == "α\nmore\n".encode()
    assert b"".join(LocalLog("abc", home=tmp_path).chunks(offset=3)) == b"more\n"
    assert LocalLog("abc", home=tmp_path).size() == 8


def test_tail_of_a_plain_and_a_compressed_copy(tmp_path):
    log = LocalLog("big", home=tmp_path)
    assert log.claim()
    data = b"".join(b"line %06d\n" % i for i in range(50_000))  # 550 kB: several read chunks
    log.append(data)
    assert log.tail(100) == (len(data) - 100, data[-100:])
    log.compress()
    assert log.tail(100) == (len(data) - 100, data[-100:])
    assert log.tail(10**9) == (0, data)


def test_only_the_writer_compresses_and_keeps_the_claim_until_done(tmp_path):
    writer, other = LocalLog("one", home=tmp_path), LocalLog("one", home=tmp_path)
    assert writer.claim()
    writer.append(b"x\n")
    assert not other.claim()  # one writer per log, in this process too
    try:
        other.compress()
    except RuntimeError as err:
        assert "claim" in str(err)
    else:
        raise AssertionError("compressed without the claim")
    writer.compress()
    assert writer.compressed and other.claim()  # released once compressed
    other.compress()  # nothing left to do
    assert b"".join(other.chunks()) == b"x\n"


def log_across_reads() -> bytes:
    """A log of a few reads' worth whose controls straddle where one read of the
    local copy ends and the next starts: an OSC, a colour, an 8-bit CSI cut inside its
    UTF-8 bytes, and a line longer than a read."""
    filler = b"".join(b"%05d %s\n" % (i, b"x" * 93) for i in range(READ_CHUNK // 100))  # 100 bytes a line
    data = filler + b"y" * (READ_CHUNK - 3 - len(filler)) + b"\x1b]0;pwned\x07 after the title\n"
    data += filler + b"\x1b[1;31m"
    data += b"z" * (2 * READ_CHUNK - 1 - len(data)) + "\x9b2J".encode() + b"red\x1b[0m\n"
    data += b"\xff bad byte, then a long line " + b"w" * (READ_CHUNK + 10) + b"\n" + b"no newline at the end"
    assert data[READ_CHUNK - 3 : READ_CHUNK + 1] == b"\x1b]0;"
    assert data[2 * READ_CHUNK - 1 : 2 * READ_CHUNK + 1] == "\x9b".encode()
    return data


@pytest.mark.parametrize("finished", [True, False], ids=["compressed", "plain"])
def test_log_shows_a_copy_sanitised_on_a_terminal_and_byte_exact_into_a_pipe(finished, simtui_env):
    label = "feed0000beef"
    data = log_across_reads()
    Store.open().insert(make_record(label))
    log = LocalLog(label)
    assert log.claim()
    log.append(data)
    log.compress() if finished else log.close()

    code, out, err = run_on_tty("log", label)
    assert code == 0 and not err, err
    assert out == sanitize(data.decode("utf-8", "replace")) + "\n\x1b[0m"  # the last line ended, the colour reset
    assert "pwned" not in out and "\x1b[1;31mzzz" in out and "zzzred\x1b[0m" in out
    piped = subprocess.run([sys.executable, "-m", "simtui", "log", label], capture_output=True, timeout=60)
    assert piped.returncode == 0 and piped.stdout == data  # the job's bytes exactly
    assert b"".join(LocalLog(label).chunks()) == data
