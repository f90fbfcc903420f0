"""The records store on a real SQLite file: schema, migrations, writers, queries."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import pytest
from recordkit import T0, make_record

from simtui.errors import AmbiguousLabel, SimtuiError, UnknownLabel, UsageError
from simtui.model import JobState, Record
from simtui.provenance import packages_sha256
from simtui.store import Store, parse_since
from simtui.store.records import JSON_COLUMNS
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


PACKAGES = {"numpy": "1.26.4", "torch": "2.3.1"}
OTHER_PACKAGES = {"numpy": "2.0.0", "naïve": "0.1"}


def v5_row(record: Record, *, ascii_json: bool = False) -> dict:
    """A record as a simtui of schema 5 might have left it: compact JSON (non-ASCII
    escaped, with ``ascii_json``), its environment's package list inside it."""
    row = {}
    for name, value in record.to_dict().items():
        if name in ("scheduler", "sweep", "metrics", "container", "machine"):  # schemas 7 to 10
            continue
        if name in JSON_COLUMNS and value is not None:
            value = json.dumps(value, ensure_ascii=ascii_json, separators=(",", ":"))
        row[name] = value
    return row


def test_v6_takes_package_lists_out_of_records_and_reads_every_record_back_the_same(tmp_path):
    inline = {"python": "3.11.7", "packages": PACKAGES, "packages_sha256": packages_sha256(PACKAGES)}
    records = [dataclasses.replace(record, updated=record.created) for record in [
        make_record("e60000000001", environment=inline, tags=["legacy", "ü"], params={"lr": 0.1, "name": "naïve"}),
        make_record("e60000000002", environment=inline, git={"commit": "c1", "diff": "+é\n"}),
        make_record("e60000000003", environment={"python": "3.12.1", "gpu": None, "packages": OTHER_PACKAGES}),
        make_record("e60000000004", environment=None, outputs=[{"path": "o.csv", "sha256": "1" * 64}]),
    ]]
    conn = connect(tmp_path / "v5.db", upgrade=False)
    migrate(conn, to=5)
    for i, record in enumerate(records):
        row = v5_row(record, ascii_json=i % 2 == 1)
        conn.execute(f"insert into records ({', '.join(row)}) values ({', '.join('?' * len(row))})", list(row.values()))
    conn.commit()
    conn.close()

    store = Store.open(tmp_path / "v5.db")
    assert schema_version(store.conn) == len(MIGRATIONS)
    for record in records:
        expected = record.to_dict()
        if expected["environment"] and "packages_sha256" not in expected["environment"]:
            expected["environment"]["packages_sha256"] = packages_sha256(expected["environment"]["packages"])
        assert store.get(record.label).to_dict() == expected
    stored = [json.loads(text) for (text,) in store.conn.execute("select packages from packages order by sha256")]
    assert sorted(stored, key=json.dumps) == sorted([PACKAGES, OTHER_PACKAGES], key=json.dumps)  # each list once
    for row in store.conn.execute(f"select {', '.join(sorted(JSON_COLUMNS))} from records"):
        for text in filter(None, row):
            assert text == json.dumps(json.loads(text), ensure_ascii=False)  # the form an export copies
            assert '"packages":' not in text
    assert labels(store.find(search="legacy")) == ["e60000000001"]
    assert labels(store.find(tags=["ü"])) == ["e60000000001"]
    store.close()


def test_listed_reads_the_small_columns_newest_first(store):
    store.insert(make_record("a10000000001", tags=["x", "y"], created=T0),
                 make_record("a10000000002", state=JobState.RUNNING, duration=None, created=T0 + 1))
    assert list(store.listed(limit=None)) == [
        ("a10000000002", JobState.RUNNING, "local", T0 + 1, None, [], "python train.py"),
        ("a10000000001", JobState.SUCCEEDED, "local", T0, 10.0, ["x", "y"], "python train.py"),
    ]
    assert [r.label for r in store.listed(tags=["y"])] == ["a10000000001"]


def test_distinct_values_come_in_order_of_first_appearance(store):
    store.insert(*(make_record(f"a2000000000{i}", host=host, created=T0 + i)
                   for i, host in enumerate(["zero", "one", "zero", "two", "one"])))
    assert list(store.distinct("host", limit=None)) == ["one", "two", "zero"]
    assert list(store.distinct("host", limit=2)) == ["one", "two"]
    assert list(store.distinct("host", state="failed")) == []


def test_a_snapshot_sees_the_records_as_they_were_whatever_others_write(store, tmp_path):
    store.insert(make_record("a30000000001"))
    other = Store.open(tmp_path / "records.db")
    with store.snapshot():
        before = store.extent(limit=None).count
        other.insert(make_record("a30000000002"))  # another connection, committed meanwhile
        assert before == 1 and labels(store.find(limit=None)) == ["a30000000001"]
    assert labels(store.find(limit=None)) == ["a30000000002", "a30000000001"]
    other.close()
