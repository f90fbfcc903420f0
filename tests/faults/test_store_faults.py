"""The records database under faults, through the real command line against a real
SQLite file: read-only (a read-only bind mount; chmod for a user who is not root),
a write lock another process holds, a full filesystem (a small tmpfs), garbage,
a truncated file and an empty one.

Each fault ends in one line on stderr that names the file, what is wrong and what
to do, with the documented exit code (simtui.errors: 1 for the machine, 2 for the
data), no traceback, and the records written before intact.
"""

from __future__ import annotations

import gzip
import os
import pwd
import queue
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from clirun import popen, simtui
from conftest import stop_server
from recordkit import make_record
from sshd import _ensure_user, wait_for

from simtui.errors import RecordsBusy
from simtui.store import Store, db
from faults.faultkit import one_line

LABELS = ["aa1100000000", "bb2200000000", "cc3300000000"]


# -- helpers ---------------------------------------------------------------------------


def home() -> Path:
    return Path(os.environ["SIMTUI_HOME"])


def records_db() -> Path:
    return home() / "records.db"


def seed(n: int = 3, **fields) -> list[str]:
    """Records made through the store (closed again: no -wal or -shm is left)."""
    store = Store.open()
    made = [make_record(label, tags=["before"], notes=f"note {label} " + "n" * 2000, **fields)
            for label in (LABELS + [f"dd{i:010d}" for i in range(n)])[:n]]
    store.insert(*made)
    store.close()
    return [r.label for r in made]


def intact(labels: list[str], path: Path | None = None) -> None:
    """SQLite finds nothing wrong with the file, and every earlier record is in it."""
    conn = sqlite3.connect(path or records_db())
    try:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        found = {row[0] for row in conn.execute("select label from records")}
    finally:
        conn.close()
    assert set(labels) <= found


def mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"`mount {' '.join(args)}` is not permitted here ({proc.stderr.strip()}); these faults "
                    "need root (or CAP_SYS_ADMIN) to make a read-only mount or a small tmpfs")


def unmount(path: Path) -> None:
    stop_server(path)  # its files are open in the mount
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def read_only_home():
    """$SIMTUI_HOME with records, then bound read-only onto itself; writable again after."""
    labels = seed()
    assert not Path(f"{records_db()}-shm").exists()  # the case SQLite cannot open for reading as it is
    mount("--bind", str(home()), str(home()))
    try:
        mount("-o", "remount,bind,ro", str(home()))
        yield labels
    finally:
        unmount(home())


@pytest.fixture
def small_home():
    """$SIMTUI_HOME on a 2 MB tmpfs (unmounted after)."""
    home().mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(home()))
    try:
        yield home()
    finally:
        unmount(home())


def fill(folder: Path) -> Path:
    """Take every free byte of ``folder``'s filesystem; the file to remove to give it back."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            while out.write(b"\0" * 4096):
                pass
        except OSError:
            pass
    return filler


class Lines:
    """A stream's lines as they come, read on a thread, so a test waits on a condition."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)
            self.queue.put(line)
        self.queue.put(None)

    def next(self, timeout: float = 60) -> str | None:
        return self.queue.get(timeout=timeout)


# -- read-only -----------------------------------------------------------------------------


def test_a_read_only_mount_is_read_and_refuses_writes_in_one_line(read_only_home):
    listed = simtui("list")
    assert listed.returncode == 0, listed.stderr
    assert all(label in listed.stdout for label in read_only_home) and not listed.stderr
    assert simtui("show", "aa11").returncode == 0

    line = one_line(simtui("tag", "aa11", "after"), 1, str(records_db()), "read-only", "read-only file system",
                    "SIMTUI_HOME")
    assert "is read-only" in line
    one_line(simtui("comment", "aa11", "after"), 1, "read-only")
    one_line(simtui("run", "--", "true"), 1, str(home()))  # the server cannot even start there
    assert "after" not in simtui("show", "aa11").stdout


def test_the_read_only_records_stay_intact(read_only_home):
    simtui("tag", "aa11", "after")
    unmount(home())
    intact(read_only_home)
    assert "after" not in simtui("show", "aa11").stdout


def _as_user(user: pwd.struct_passwd, args: list[str]) -> tuple[int, str]:
    """The CLI (simtui.cli.main, loaded here) in a child process that runs as ``user``:
    the interpreter's own files may be out of that user's reach (under /root)."""
    from simtui.cli import main

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            os.dup2(write, 1)
            os.dup2(write, 2)
            sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)  # not pytest's
            main(args, prog_name="simtui")
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as out:
        text = out.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), text


@pytest.fixture
def open_home(monkeypatch):
    """A $SIMTUI_HOME another user can reach (pytest's own tmp folders are root's alone)."""
    top = Path(tempfile.mkdtemp(prefix="simtui-faults-"))
    os.chmod(top, 0o711)
    monkeypatch.setenv("SIMTUI_HOME", str(top / "home"))
    yield top / "home"
    stop_server(top / "home")
    shutil.rmtree(top, ignore_errors=True)


def test_a_records_file_its_user_may_not_write_is_read_and_refuses_writes(open_home):
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the command line as another user (simtui-t0) for whom chmod counts")
    try:
        user = _ensure_user("simtui-t0")  # the sshd lab's first user
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"no user simtui-t0, and useradd could not make it ({err})")
    labels = seed()
    import sqlite_utils  # noqa: F401 - loaded before the child drops root: /root may be closed to it
    import simtui.recordfmt  # noqa: F401

    for path in (home(), records_db()):
        os.chown(path, user.pw_uid, user.pw_gid)
    os.chmod(records_db(), 0o400)

    code, out = _as_user(user, ["list"])
    assert code == 0 and all(label in out for label in labels), out
    code, out = _as_user(user, ["tag", "aa11", "after"])
    assert code == 1 and "Traceback" not in out, out
    assert out.strip().splitlines() == [out.strip()] and out.startswith(f"simtui: {records_db()} is read-only "
                                                                        "(no write permission)"), out
    intact(labels)


# -- a write lock held elsewhere ---------------------------------------------------------------


def test_a_held_write_lock_is_waited_for_said_after_2s_and_then_taken():
    labels = seed()
    holder = sqlite3.connect(records_db(), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write lock: a sqlite3 shell mid-transaction
    started = time.monotonic()
    proc = popen("tag", "aa11", "waited")
    try:
        errors = Lines(proc.stderr)
        said = errors.next(timeout=60)
        waited = time.monotonic() - started
        assert said is not None and "waiting for the write lock" in said and str(records_db()) in said, said
        assert waited >= db.WAIT_NOTICE_S - 0.1
        assert proc.poll() is None  # still waiting, not failed
        holder.execute("COMMIT")  # the holder is done: the waiting writer goes on
        assert proc.wait(timeout=60) == 0
    finally:
        holder.close()
        if proc.poll() is None:
            proc.kill()
    errors.thread.join(10)
    assert errors.lines == [said] and "Traceback" not in said
    assert "waited" in proc.stdout.read()
    intact(labels)
    assert "waited" in simtui("show", "aa11").stdout


def test_a_lock_held_past_the_limit_is_one_error_and_loses_nothing(tmp_path, monkeypatch):
    """In process (the limit is minutes on the command line): the wait gives up with
    RecordsBusy, told once, and what was written before stands."""
    labels = seed()
    monkeypatch.setattr(db, "WAIT_NOTICE_S", 0.2)
    monkeypatch.setattr(db, "LOCK_WAIT_S", 1.0)
    heard: list[str] = []
    monkeypatch.setattr(db, "on_lock_wait", heard.append)
    holder = sqlite3.connect(records_db(), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    store = Store.open()
    try:
        with pytest.raises(RecordsBusy) as caught:
            store.add_tags("aa11", ["late"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(heard) == 1 and "waiting for the write lock" in heard[0]
    assert caught.value.exit_code == 1 and str(records_db()) in str(caught.value)
    assert "held its write lock" in str(caught.value) and "\n" not in str(caught.value)
    assert store.add_tags("aa11", ["later"]).tags == ["before", "later"]  # the connection is fine after
    store.close()
    intact(labels)


# -- a full filesystem -------------------------------------------------------------------------


def test_a_full_home_is_one_line_for_every_command_and_loses_nothing(small_home):
    labels = seed()
    filler = fill(small_home)
    for args in (["list"], ["show", "aa11"], ["tag", "aa11", "full"], ["comment", "aa11", "full"]):
        one_line(simtui(*args), 1, "no space left", str(records_db()), "free some space")
    one_line(simtui("run", "--", "true"), 1)  # the server cannot start there: one line, exit 1
    filler.unlink()
    stop_server(small_home)
    tagged = simtui("tag", "aa11", "roomy")
    assert tagged.returncode == 0, tagged.stderr
    intact(labels)
    assert "full" not in simtui("show", "aa11").stdout


RELEASE = """
import os, sys, time
for i in range({lines}):
    print(f"line {{i:06d}} " + "x" * 60)
sys.stdout.flush()
while not os.path.exists({release!r}):  # the job ends when the test says so
    time.sleep(0.05)
"""


def test_a_log_that_cannot_be_stored_is_still_followed_and_settles_when_space_returns(small_home, tmp_path):
    """`run --follow` with more output than the home can hold: every line reaches
    the terminal once, the record settles once there is space again, its local copy
    is then whole, and its events say where the copy stopped and why."""
    labels = seed()
    lines = 45_000  # 3.1 MB: more than the 2 MB home
    release = tmp_path / "release"
    proc = popen("run", "--follow", "--", sys.executable, "-c", RELEASE.format(lines=lines, release=str(release)),
                 cwd=tmp_path)
    try:
        out = Lines(proc.stdout)
        label = out.next().strip()
        last = f"line {lines - 1:06d} "
        while not (line := out.next()).startswith(last):  # the whole output has come through
            assert line is not None, proc.stderr.read()
        copy = small_home / "logs" / f"{label}.log"
        assert copy.stat().st_size < 2 << 20  # it could not all be stored
        mount("-o", "remount,size=16m", str(small_home))  # space returns
        release.touch()
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    out.thread.join(10)
    errors = proc.stderr.read()
    assert "Traceback" not in errors and not errors.strip(), errors
    expected = [f"line {i:06d} " + "x" * 60 + "\n" for i in range(lines)]
    assert out.lines[1:] == expected  # every line once, in order

    wait_for(lambda: not (small_home / "logs" / f"{label}.log").exists(), 30, "the copy to be compressed")
    with gzip.open(small_home / "logs" / f"{label}.log.gz", "rt") as f:
        assert f.readlines() == expected  # the copy caught up: whole
    assert sorted(p.name for p in (small_home / "logs").iterdir()) == [f"{label}.log.gz"]  # no .lock left
    shown = simtui("show", label, "--json")
    assert shown.returncode == 0, shown.stderr
    import json

    record = json.loads(shown.stdout)
    assert record["state"] == "succeeded" and record["log_tail"].endswith(expected[-1].strip())
    said = [e["detail"] for e in record["events"] if e["kind"] in ("log", "late")]
    assert any("stopped at byte" in d and "no space left" in d for d in said), said
    assert any("caught up" in d for d in said), said
    intact(labels)


# -- garbage, truncated, empty ------------------------------------------------------------------


COMMANDS = (["list"], ["show", "aa11"], ["tag", "aa11", "x"], ["export"], ["feed"])


def _unchanged_after_every_command(path: Path, *words: str) -> None:
    before = path.read_bytes()
    for args in COMMANDS:
        one_line(simtui(*args), 2, str(path), *words, "move it away")
    assert path.read_bytes() == before  # nothing was written over it


def test_garbage_is_named_not_read(tmp_path):
    records_db().parent.mkdir(parents=True)
    records_db().write_bytes(random.Random(13).randbytes(20_000))
    _unchanged_after_every_command(records_db(), "is not an SQLite database")


def test_a_truncated_file_is_named_damaged():
    labels = seed(40)
    whole = records_db().read_bytes()
    records_db().write_bytes(whole[: len(whole) * 2 // 3])
    _unchanged_after_every_command(records_db(), "is damaged", ".recover")
    records_db().write_bytes(whole)
    intact(labels)


def test_an_empty_file_is_not_taken_for_an_empty_store():
    records_db().parent.mkdir(parents=True)
    records_db().touch()
    _unchanged_after_every_command(records_db(), "is empty (0 bytes)")
    assert records_db().stat().st_size == 0
    records_db().unlink()  # moved away: a new store starts
    listed = simtui("list")
    assert listed.returncode == 0 and listed.stdout.strip() == "no records", listed.stderr


def test_a_new_store_is_never_seen_empty_by_processes_opening_it_at_once():
    """A new records.db appears whole (made aside, then linked), so of several
    processes that open a missing store at once none finds an empty file."""
    opener = "from simtui.store import Store; Store.open().close()"
    for _ in range(3):
        if records_db().exists():
            for leftover in records_db().parent.iterdir():
                leftover.unlink()
        procs = [subprocess.Popen([sys.executable, "-c", opener], stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        for proc in procs:
            assert proc.wait(timeout=60) == 0, proc.stderr.read()
        assert [p.name for p in records_db().parent.iterdir() if p.name.endswith(".new")] == []
        intact([])
    assert stat.S_IMODE(records_db().stat().st_mode) == 0o600
