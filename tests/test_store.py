"""The records store on a real SQLite file: schema, migrations, writers, queries."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest
from recordkit import T0, make_record

from simtui.errors import AmbiguousLabel, SimtuiError, UnknownLabel, UsageError
from simtui.model import JobState, Record
from simtui.store import Store, parse_since
from simtui.store.db import MIGRATIONS, connect, migrate, schema_version


@pytest.fixture
def store(tmp_path):
    opened = Store.open(tmp_path / "records.db")
    yield opened
    opened.close()


def labels(records) -> list[str]:
    return [r.label for r in records]


def test_default_path_is_in_simtui_home(simtui_env):
    Store.open().close()
    assert (simtui_env / "home" / "records.db").is_file()


def test_records_columns_are_the_record_fields(store):
    assert set(store.db["records"].columns_dict) == {f.name for f in dataclasses.fields(Record)}


def test_wal_and_latest_schema(store):
    assert store.db.journal_mode == "wal"
    assert schema_version(store.conn) == len(MIGRATIONS)


def test_a_database_with_the_first_schema_is_upgraded_and_keeps_its_records(tmp_path):
    conn = connect(tmp_path / "old.db", upgrade=False)
    migrate(conn, to=1)
    assert schema_version(conn) == 1
    old = Store(conn)
    assert not old.db["records_fts"].exists()
    v1_columns = old.db["records"].columns_dict  # later fields (e.g. venv) have no column yet
    row = old._row(make_record("aaaa00000001", command="python old_sweep.py", tags=["legacy"]), v1_columns)
    old.db["records"].insert({**row, "updated": row["created"]})
    old.close()

    upgraded = Store.open(tmp_path / "old.db")
    assert schema_version(upgraded.conn) == len(MIGRATIONS)
    assert labels(upgraded.find(search="old_sweep")) == ["aaaa00000001"]
    upgraded.insert(make_record("bbbb00000002", command="python new_sweep.py"))
    assert labels(upgraded.find(search="new_sweep")) == ["bbbb00000002"]
    assert upgraded.get("aaaa").tags == ["legacy"]


def test_a_database_from_a_newer_simtui_is_refused(tmp_path):
    Store.open(tmp_path / "r.db").conn.execute("PRAGMA user_version = 99")
    with pytest.raises(SimtuiError, match="newer simtui"):
        Store.open(tmp_path / "r.db")


WRITER = textwrap.dedent("""
    import sys
    from simtui.store import Store
    path, label, worker = sys.argv[1:]
    store = Store.open(path)
    for n in range(50):
        store.add_tags(label, [f"w{worker}-{n}"])
""")


def test_four_processes_adding_tags_at_once_lose_nothing(store, tmp_path):
    store.insert(make_record("c0ffee000001", tags=["start"]))
    path = str(tmp_path / "records.db")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, path, "c0ffee", str(w)]) for w in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]

    tags = store.get("c0ffee000001").tags
    expected = {f"w{w}-{n}" for w in range(4) for n in range(50)}
    assert len(tags) == 201 and set(tags) == expected | {"start"}
    assert sum(e.kind == "tag" for e in store.events("c0ffee000001")) == 200


def test_full_text_search_covers_command_tags_reason_and_notes(store):
    store.insert(
        make_record("a00000000001", command="python train.py --model resnet"),
        make_record("a00000000002", tags=["ablation", "lr-0.1"]),
        make_record("a00000000003", reason="check the warmup schedule"),
        make_record("a00000000004"),
    )
    store.comment("a00000000004", "diverged after epoch 3")
    assert labels(store.find(search="resnet")) == ["a00000000001"]
    assert labels(store.find(search="ablation")) == ["a00000000002"]
    assert labels(store.find(search="lr-0.1")) == ["a00000000002"]
    assert labels(store.find(search="warmup schedule")) == ["a00000000003"]
    assert labels(store.find(search='"the warmup"')) == ["a00000000003"]  # a phrase
    assert labels(store.find(search='"warmup the"')) == []
    assert labels(store.find(search="diverged")) == ["a00000000004"]
    assert labels(store.find(search="resnet warmup")) == []  # every word must appear
    assert labels(store.find(search="NOT")) == []  # words, not FTS operators


def test_filters_combine_and_results_are_newest_first(store):
    store.insert(
        make_record("f00000000001", tags=["sweep"], host="zero", created=T0),
        make_record("f00000000002", tags=["sweep", "gpu"], host="one", created=T0 + 100),
        make_record("f00000000003", tags=["gpu"], state=JobState.FAILED, exit_code=1, created=T0 + 200),
        make_record("f00000000004", tags=["sweep"], state=JobState.FAILED, host="zero", created=T0 + 300),
    )
    assert labels(store.find()) == ["f00000000004", "f00000000003", "f00000000002", "f00000000001"]
    assert labels(store.find(tags=["sweep"])) == ["f00000000004", "f00000000002", "f00000000001"]
    assert labels(store.find(tags=["sweep", "gpu"])) == ["f00000000002"]
    assert labels(store.find(state="failed")) == ["f00000000004", "f00000000003"]
    assert labels(store.find(host="zero")) == ["f00000000004", "f00000000001"]
    assert labels(store.find(host="zero", state=JobState.SUCCEEDED)) == ["f00000000001"]
    assert labels(store.find(since=T0 + 150)) == ["f00000000004", "f00000000003"]
    assert labels(store.find(limit=2)) == ["f00000000004", "f00000000003"]
    assert labels(store.find(tags=["nothing"])) == []


def test_tags_match_exactly_whatever_their_characters(store):
    store.insert(
        make_record("f10000000001", tags=["sweep-b", "+", 'say "hi"']),
        make_record("f10000000002", tags=["sweep", "b"]),
    )
    assert labels(store.find(tags=["sweep"])) == ["f10000000002"]
    assert labels(store.find(tags=["sweep-b"])) == ["f10000000001"]
    assert labels(store.find(tags=["+"])) == ["f10000000001"]
    assert labels(store.find(tags=['say "hi"'], search="sweep")) == ["f10000000001"]


def test_any_unique_prefix_finds_a_record(store):
    store.insert(make_record("abc123000000"), make_record("abc456000000"), make_record("def000000000"))
    assert store.get("abc1").label == "abc123000000"
    assert store.get("d").label == "def000000000"
    assert store.resolve("abc456000000") == "abc456000000"


def test_an_ambiguous_prefix_names_the_candidates(store):
    store.insert(make_record("abc123000000"), make_record("abc456000000"))
    with pytest.raises(AmbiguousLabel) as caught:
        store.get("abc")
    assert caught.value.candidates == ["abc123000000", "abc456000000"]
    assert "abc123000000" in str(caught.value) and caught.value.exit_code == 2


def test_no_match_and_an_empty_label_are_usage_errors(store):
    store.insert(make_record("abc123000000"))
    with pytest.raises(UnknownLabel, match="'abd'"):
        store.get("abd")
    with pytest.raises(UsageError):
        store.get("")


def test_state_changes_are_events_and_ending_sets_the_duration(store):
    store.insert(make_record("e00000000001", state=JobState.QUEUED, started=None, ended=None, duration=None))
    store.update("e00", state="running", started=T0 + 5)
    done = store.update("e00", state=JobState.SUCCEEDED, ended=T0 + 35, exit_code=0)
    assert done.duration == 30
    assert store.get("e00").duration == 30
    events = store.events("e00")
    assert [(e.kind, e.detail) for e in events] == [("state", "queued"), ("state", "running"), ("state", "succeeded")]
    assert events[0].time <= events[1].time <= events[2].time
    with pytest.raises(ValueError, match="label"):
        store.update("e00", label="other")


def test_tags_and_comments_accumulate(store):
    store.insert(make_record("d00000000001", tags=["a"]))
    store.add_tags("d0", ["b", "a", "c", "b"])
    store.comment("d0", "first")
    record = store.comment("d0", "second")
    assert record.tags == ["a", "b", "c"]
    assert store.get("d0").notes == "first\nsecond"
    assert [(e.kind, e.detail) for e in store.events("d0")][1:] == [("tag", "b c"), ("comment", "first"),
                                                                      ("comment", "second")]


def test_a_package_list_is_stored_once_and_read_back_whole(store):
    packages = {"numpy": "2.0.0", "torch": "2.3.1"}
    environment = {"python": "3.11.7", "packages": packages}
    store.insert(make_record("b00000000001", environment=environment),
                 make_record("b00000000002", environment=environment))
    assert store.db["packages"].count == 1
    assert "torch" not in store.conn.execute("select environment from records").fetchone()[0]
    for label in ("b00000000001", "b00000000002"):
        assert store.get(label).environment["packages"] == packages


def test_since_takes_ages_and_iso_dates():
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_since("3d", now=500_000.0) == 500_000.0 - 3 * 86400
    assert parse_since("2024-05-01T00:00:00+00:00") == 1714521600.0
    assert parse_since("2024-05-01") > 0
    with pytest.raises(UsageError, match="yesterday"):
        parse_since("yesterday")
