"""Files simtui writes, and input it must refuse, through the real command line:
``-o`` onto a device or a pipe (never replaced), the ``.lock`` file of each log
(gone when done), the modes of $SIMTUI_HOME and its files (0700, 0600), parameters
JSON cannot hold (NaN, Infinity, nesting too deep), and "no host fits" naming
each host with its reason.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from clirun import simtui
from recordkit import make_record

from simtui.store import Store
from simtui.store.logs import LocalLog
from faults.faultkit import one_line


def home() -> Path:
    return Path(os.environ["SIMTUI_HOME"])


def seed() -> list[str]:
    store = Store.open()
    made = store.insert(make_record("aa1100000000", tags=["x"]), make_record("bb2200000000"))
    store.close()
    return [r.label for r in made]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- -o onto a device, a pipe, a file ------------------------------------------------------------


@pytest.fixture
def null_device(tmp_path):
    """A device node like /dev/null (char 1:3) of our own: the test never risks the real one."""
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root (or CAP_MKNOD): the device case of -o is run as root")
    return node


@pytest.mark.parametrize("command", [["export"], ["export", "--format", "csv"], ["feed"]])
def test_output_onto_a_device_writes_it_and_never_replaces_it(null_device, tmp_path, command):
    seed()
    link = tmp_path / "link"
    link.symlink_to(null_device)
    for target in (null_device, link):
        proc = simtui(*command, "-o", str(target))
        assert proc.returncode == 0 and not proc.stderr, proc.stderr
        st = null_device.lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)  # still the device
    assert link.is_symlink() and link.resolve() == null_device
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_output_into_a_fifo_is_read_through_it(tmp_path):
    seed()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    proc = simtui("export", "-o", str(fifo))
    out, _ = reader.communicate(timeout=30)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert [r["label"] for r in json.loads(out)] == ["bb2200000000", "aa1100000000"]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_output_to_a_file_replaces_it_whole_keeping_its_mode_or_not_at_all(tmp_path):
    seed()
    out = tmp_path / "records.json"
    out.write_text("old\n")
    os.chmod(out, 0o640)
    proc = simtui("export", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(out.read_text())) == 2 and mode(out) == 0o640

    (home() / "records.db").write_bytes(b"garbage" * 1000)  # the export fails: the file stays as it was
    out.write_text("old\n")
    one_line(simtui("export", "-o", str(out)), 2, "is not an SQLite database")
    one_line(simtui("feed", "-o", str(out)), 2, "is not an SQLite database")
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_output_to_a_folder_or_a_missing_folder_is_one_line(tmp_path):
    seed()
    one_line(simtui("export", "-o", str(tmp_path)), 2, str(tmp_path), "is a folder")
    one_line(simtui("feed", "-o", str(tmp_path / "no" / "feed.xml")), 2, "no such folder")


# -- the .lock file of a log ---------------------------------------------------------------------


def test_a_finished_job_leaves_no_lock_file(tmp_path):
    proc = simtui("run", "--follow", "--", "sh", "-c", "echo one; echo two", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.splitlines()[0]
    assert proc.stdout.splitlines()[1:] == ["one", "two"]
    logs = home() / "logs"
    assert sorted(p.name for p in logs.iterdir()) == [f"{label}.log.gz"]


def test_the_lock_file_goes_with_the_claim_and_only_its_holder_removes_it(tmp_path):
    writer, other = LocalLog("abc", home=tmp_path), LocalLog("abc", home=tmp_path)
    assert writer.claim()
    assert writer.lock_path.exists() and mode(writer.lock_path) == 0o600
    assert not other.claim()
    other.close()  # the one that did not get it removes nothing
    assert writer.lock_path.exists() and not other.claim()
    writer.append(b"x\n")
    writer.close()
    assert not writer.lock_path.exists()
    assert other.claim() and other.lock_path.exists()  # taken again on a new file
    other.compress()
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["abc.log.gz"]


def test_a_claim_taken_on_a_lock_file_removed_meanwhile_is_taken_again_on_the_new_one(tmp_path, monkeypatch):
    """A claimer that opened the lock file just before its holder removed it gets a
    lock on a file no one else will see: it must look again, not write."""
    import simtui.store.logs as logs

    first, second = LocalLog("abc", home=tmp_path), LocalLog("abc", home=tmp_path)
    assert first.claim()
    real_open = os.open
    raced = []

    def open_then_holder_lets_go(path, flags, *args):
        fd = real_open(path, flags, *args)
        if Path(path) == second.lock_path and not raced:
            raced.append(fd)
            first.close()  # the holder lets go (and removes the file) between our open and our flock
        return fd

    monkeypatch.setattr(logs.os, "open", open_then_holder_lets_go)
    assert second.claim()
    monkeypatch.undo()
    assert raced and os.fstat(second._lock).st_ino == os.stat(second.lock_path).st_ino
    third = LocalLog("abc", home=tmp_path)
    assert not third.claim()  # the claim is on the file at the path: exclusive
    second.close()


# -- modes ----------------------------------------------------------------------------------------


def test_home_and_its_files_are_private(tmp_path):
    proc = simtui("run", "--follow", "--", "echo", "hi", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.splitlines()[0]
    assert simtui("list").returncode == 0  # a connect: tightens what others made (server.log)
    assert mode(home()) == 0o700
    assert mode(home() / "records.db") == 0o600
    assert mode(home() / "logs") == 0o700
    assert mode(home() / "logs" / f"{label}.log.gz") == 0o600
    assert mode(home() / "server.log") == 0o600
    for extra in ("records.db-wal", "records.db-shm"):
        if (home() / extra).exists():
            assert mode(home() / extra) == 0o600


def test_loose_modes_of_an_older_home_are_tightened():
    seed()
    os.chmod(home(), 0o755)
    os.chmod(home() / "records.db", 0o644)
    assert simtui("list").returncode == 0
    assert mode(home()) == 0o700 and mode(home() / "records.db") == 0o600


def test_kept_trees_are_private(tmp_path):
    from simtui.engine import trees

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("print(1)\n")
    import hashlib

    sha = hashlib.sha256(b"print(1)\n").hexdigest()
    digest = trees.keep(tmp_path / "src", [("a.py", 0o100644, sha)])
    for folder in (home() / "trees", home() / "trees" / "blobs", trees.blob(sha).parent):
        assert mode(folder) == 0o700, folder
    assert mode(trees.blob(sha)) == 0o600
    assert mode(home() / "trees" / f"{digest}.json") == 0o600


# -- parameters JSON cannot hold ------------------------------------------------------------------


def _refused(proc: subprocess.CompletedProcess, *words: str) -> None:
    one_line(proc, 2, *words)
    assert not (home() / "server.pid").exists()  # refused before anything started


@pytest.mark.parametrize("value, words", [("NaN", ["x' is NaN"]), ("Infinity", ["x' is Infinity"]),
                                          ("-Infinity", ["x' is -Infinity"]), ("[1, NaN]", ["[1] is NaN"]),
                                          ('{"a": 1e999}', ["a is Infinity"])])
def test_a_parameter_json_cannot_hold_is_a_usage_error(value, words):
    _refused(simtui("run", "-p", f"x={value}", "--", "true"), "parameter 'x'", "JSON cannot hold", *words)


def test_a_deeply_nested_parameter_is_a_usage_error():
    _refused(simtui("run", "-p", "x=" + "[" * 30_000 + "]" * 30_000, "--", "true"), "parameter 'x'",
             "nested too deeply")


PARAMETER_FILES = [
    ("nan.json", '{"lr": NaN}', ["lr is NaN", "JSON cannot hold"]),
    ("inf.json", '{"a": {"b": [1, Infinity]}}', ["a.b[1] is Infinity"]),
    ("deep.json", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", ["nested too deeply"]),
    ("nan.toml", "lr = nan\n", ["lr is NaN"]),
    ("inf.yaml", "a:\n  b: .inf\n", ["a.b is Infinity"]),
    ("deep.toml", "a = " + "[" * 5_000 + "]" * 5_000 + "\n", ["nested too deeply"]),
]


@pytest.mark.parametrize("name, text, words", PARAMETER_FILES,
                         ids=[name for name, _, _ in PARAMETER_FILES])  # short: a test's id goes in the env
def test_a_parameter_file_json_cannot_hold_is_a_usage_error(tmp_path, name, text, words):
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    path = tmp_path / name
    path.write_text(text)
    _refused(simtui("run", "--params", str(path), "--", "true"), str(path), *words)


def test_finite_parameters_are_kept_as_valid_json(tmp_path):
    proc = simtui("run", "--follow", "-p", "lr=0.1", "-p", "x=[1, 2.5e300]", "-p", "name=NaN-run", "--", "true",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.splitlines()[0]
    import sqlite3

    conn = sqlite3.connect(home() / "records.db")
    (params,) = conn.execute("select params from records where label = ?", [label]).fetchone()
    assert conn.execute("select json_valid(?)", [params]).fetchone()[0] == 1
    conn.close()
    assert json.loads(params) == {"lr": 0.1, "x": [1, 2.5e300], "name": "NaN-run"}


# -- no host fits ---------------------------------------------------------------------------------


def test_no_host_fits_names_each_host_with_its_reason(lab):
    proc = simtui("run", "--cpus", "100000", "--", "true", config=lab.config)
    line = one_line(proc, 1, "no host fits", "100000 CPUs")
    reasons = line.split("): ", 1)[1].split("; ")
    named = {reason.split(": ", 1)[0] for reason in reasons}
    assert named == {"local", "h0", "h1", "h2"}, line
    assert all("needs 100000 CPUs" in reason for reason in reasons), line
