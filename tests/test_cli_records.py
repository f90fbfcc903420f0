"""The record commands: list, show, diff, tag, comment, export, feed."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import feedparser
import pytest
from click.testing import CliRunner
from recordkit import T0, make_record

from simtui.cli import main
from simtui.model import JobState
from simtui.store import Store


@pytest.fixture
def records():
    """Three records in $SIMTUI_HOME/records.db, oldest first."""
    store = Store.open()
    made = store.insert(
        make_record("aa1100000000", tags=["sweep"], params={"lr": 0.1}, command="python train.py --lr 0.1",
                    outputs=[{"path": "loss.csv", "size": 3, "sha256": "1" * 64, "media_type": "text/csv"}],
                    environment={"python": "3.11.7", "packages": {"click": "8.1.7"}}, reason="baseline", created=T0),
        make_record("aa2200000000", tags=["sweep", "best"], params={"lr": 0.2}, command="python train.py --lr 0.2",
                    outputs=[{"path": "loss.csv", "size": 3, "sha256": "2" * 64, "media_type": "text/csv"}],
                    environment={"python": "3.11.7", "packages": {"click": "8.1.7"}}, created=T0 + 60),
        make_record("bb3300000000", host="zero", state=JobState.FAILED, exit_code=1, command="python eval.py",
                    created=T0 + 120),
    )
    store.close()
    return made


def simtui(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_list_is_a_table_newest_first(records):
    code, out, _ = simtui("list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["LABEL", "STATE", "HOST", "CREATED", "DURATION", "TAGS", "COMMAND"]
    assert [row.split()[0] for row in rows] == ["bb3300000000", "aa2200000000", "aa1100000000"]
    assert "sweep, best" in rows[1] and "python train.py --lr 0.2" in rows[1]


def test_list_filters_and_json(records):
    def listed(*args: str) -> list[str]:
        code, out, _ = simtui("list", "--json", *args)
        assert code == 0
        return [r["label"] for r in json.loads(out)]

    assert listed("--tag", "sweep") == ["aa2200000000", "aa1100000000"]
    assert listed("--tag", "sweep", "--tag", "best") == ["aa2200000000"]
    assert listed("--state", "failed") == ["bb3300000000"]
    assert listed("--host", "zero") == ["bb3300000000"]
    assert listed("--search", "baseline") == ["aa1100000000"]
    assert listed("--since", datetime.fromtimestamp(T0 + 30, timezone.utc).isoformat()) == ["bb3300000000", "aa2200000000"]
    assert listed("--since", "1h") == []
    assert listed("--limit", "1") == ["bb3300000000"]
    code, out, _ = simtui("list", "--json", "--limit", "1")
    assert json.loads(out)[0]["exit_code"] == 1


def test_list_with_nothing_to_show(records):
    assert simtui("list", "--tag", "nope") == (0, "no records\n", "")


def test_bad_list_options_exit_2(records):
    code, _, err = simtui("list", "--since", "last week")
    assert code == 2 and "--since" in err
    assert simtui("list", "--state", "exploded")[0] == 2


def test_show_groups_the_whole_record(records):
    code, out, _ = simtui("show", "aa1")
    assert code == 0
    assert out.startswith("Record aa1100000000  succeeded (exit 0)\n")
    for section in ("Parameters", "Environment", "Outputs", "Events"):
        assert f"\n{section}\n" in out
    assert "  lr  0.1" in out and "loss.csv" in out


def test_show_json_has_the_record_and_its_events(records):
    code, out, _ = simtui("show", "bb", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["label"] == "bb3300000000" and shown["state"] == "failed"
    assert [(e["kind"], e["detail"]) for e in shown["events"]] == [("state", "failed")]


@pytest.mark.parametrize("command", [["show"], ["tag"], ["comment"], ["diff", "bb"]])
def test_labels_ambiguous_or_unknown_exit_2(records, command):
    extra = ["x"] if command[0] in ("tag", "comment") else []
    code, _, err = simtui(*command, "aa", *extra)
    assert code == 2 and "ambiguous" in err and "aa1100000000" in err and "aa2200000000" in err
    code, _, err = simtui(*command, "cc", *extra)
    assert code == 2 and "no record with label 'cc'" in err


def test_diff_names_changed_params_and_outputs(records):
    code, out, _ = simtui("diff", "aa1", "aa2", "--json")
    assert code == 0
    diff = json.loads(out)
    assert diff["params"] == {"lr": {"a": 0.1, "b": 0.2}}
    assert diff["outputs"] == {"loss.csv": {"a": "1" * 64, "b": "2" * 64}}
    code, out, _ = simtui("diff", "aa1", "aa2")
    assert "Parameters\n  lr  0.1 -> 0.2" in out
    assert "Outputs\n  loss.csv  111111111111 -> 222222222222" in out


def test_tag_and_comment(records):
    assert simtui("tag", "bb", "oom", "retry") == (0, "bb3300000000  tags: oom, retry\n", "")
    code, out, _ = simtui("comment", "bb", "ran", "out", "of", "memory")
    assert code == 0 and out.endswith("ran out of memory\n")
    shown = json.loads(simtui("show", "bb", "--json")[1])
    assert shown["tags"] == ["oom", "retry"] and shown["notes"] == "ran out of memory"
    assert [e["kind"] for e in shown["events"]] == ["state", "tag", "comment"]
    assert simtui("tag", "bb")[0] == 2  # no TAG


def test_export_json_and_csv(records, tmp_path):
    code, out, _ = simtui("export")
    assert code == 0 and [r["label"] for r in json.loads(out)] == ["bb3300000000", "aa2200000000", "aa1100000000"]
    assert simtui("export", "--format", "csv", "-o", str(tmp_path / "r.csv"))[0] == 0
    with open(tmp_path / "r.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [r["label"] for r in rows] == ["bb3300000000", "aa2200000000", "aa1100000000"]
    assert {"lr": json.loads(rows[2]["params.lr"])} == {"lr": 0.1}
    assert simtui("export", "--format", "xml")[0] == 2


def test_feed_to_a_file(records, tmp_path):
    assert simtui("feed", "-o", str(tmp_path / "runs.atom"))[0] == 0
    parsed = feedparser.parse(str(tmp_path / "runs.atom"))
    assert not parsed.bozo and len(parsed.entries) == 3
    assert parsed.entries[0].title == "failed: bb3300000000 python eval.py"


READ_ONLY = textwrap.dedent("""
    import sys
    from simtui.cli import main
    for args in (["list"], ["list", "--search", "train"], ["show", "aa1"], ["diff", "aa1", "aa2"],
                 ["export"], ["feed"]):
        try:
            main(args)
        except SystemExit as exit:
            assert not exit.code, (args, exit.code)
    print(sorted(m for m in ("textual", "asyncssh", "sqlite_utils", "numpy") if m in sys.modules), file=sys.stderr)
""")


def test_reading_records_imports_no_ui_ssh_or_sqlite_utils(records):
    """Commands that only read start light: sqlite-utils (and numpy) load on writes."""
    done = subprocess.run([sys.executable, "-c", READ_ONLY], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "[]"


def test_exit_codes_of_a_real_process(records):
    run = [sys.executable, "-m", "simtui"]
    assert subprocess.run([*run, "list"], capture_output=True, timeout=60).returncode == 0
    missing = subprocess.run([*run, "show", "ffff"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr == "simtui: no record with label 'ffff' (see `simtui list`)\n"


@pytest.mark.parametrize("args", [["export"], ["feed"], ["list", "--json"]], ids=["export", "feed", "list"])
def test_a_big_output_into_a_pipe_widens_the_pipe(records, args):
    """A reader of a pipe gets 1 MiB a switch, not 64 KiB (see export.widen_pipe)."""
    import fcntl
    import os

    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader:
        try:
            assert fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) < 1 << 20
            proc = subprocess.Popen([sys.executable, "-m", "simtui", *args], stdout=write_end)
        finally:
            os.close(write_end)
        out = reader.read()
        assert fcntl.fcntl(reader.fileno(), fcntl.F_GETPIPE_SZ) == 1 << 20
    assert proc.wait(timeout=60) == 0 and b"aa1100000000" in out
