"""Records out of the store: JSON and CSV exports, the Atom feed, record diffs."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import feedparser
import pytest
from recordkit import make_record

from simtui.model import JobState
from simtui.store import Store
from simtui.store.diff import diff_records
from simtui.store.export import write_csv, write_json
from simtui.store.feed import atom_feed
from simtui.store.frame import COLUMNS as FLAT_COLUMNS, flat_record

ENV = {"python": "3.11.7", "os": "Linux", "packages": {"click": "8.1.7", "numpy": "1.26.4", "scipy": "1.13.0"}}
OUT = [{"path": "out/metrics.csv", "size": 10, "sha256": "1" * 64, "media_type": "text/csv"},
       {"path": "out/model.pt", "size": 99, "sha256": "2" * 64, "media_type": None}]


@pytest.fixture
def store(tmp_path):
    opened = Store.open(tmp_path / "records.db")
    opened.insert(
        make_record("0a0000000001", tags=["sweep", "lr"], params={"lr": 0.1, "opt": {"momentum": 0.9}},
                    environment=ENV, outputs=OUT, reason="baseline", git={"commit": "c1", "dirty": False}),
        make_record("0b0000000002", state=JobState.FAILED, exit_code=1, notes='say "hi", twice\nline 2'),
    )
    yield opened
    opened.close()


def test_json_export_round_trips(store):
    out = io.StringIO()
    write_json(store.find(limit=None), out)
    assert json.loads(out.getvalue()) == [r.to_dict() for r in store.find(limit=None)]


def test_json_export_of_nothing_is_an_empty_list():
    out = io.StringIO()
    write_json([], out)
    assert json.loads(out.getvalue()) == []


def test_csv_export_has_the_flat_columns_and_iso_times(store):
    out = io.StringIO()
    write_csv(store.find(limit=None), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == [*FLAT_COLUMNS, "params.lr", "params.opt.momentum"]
    failed, first = rows
    record = store.get("0a")
    assert first == {
        **{name: "" for name in FLAT_COLUMNS},
        "label": "0a0000000001", "state": "succeeded", "host": "local", "command": "python train.py",
        "exit_code": "0", "duration": "10.0", "tags": '["sweep", "lr"]', "reason": "baseline",
        "created": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
        "started": datetime.fromtimestamp(record.started, timezone.utc).isoformat(),
        "ended": datetime.fromtimestamp(record.ended, timezone.utc).isoformat(),
        "git.commit": "c1", "git.dirty": "false", "env.python": "3.11.7",
        "env.packages_sha256": record.environment["packages_sha256"], "outputs.count": "2",
        "params.lr": "0.1", "params.opt.momentum": "0.9",
    }
    assert first["created"].endswith("+00:00")
    assert failed["label"] == "0b0000000002" and failed["state"] == "failed" and failed["exit_code"] == "1"
    assert failed["notes"] == 'say "hi", twice\nline 2'  # quoted in the file, whole in the cell
    assert failed["tags"] == "[]" and failed["outputs.count"] == "0"
    assert failed["params.lr"] == failed["params.opt.momentum"] == failed["git.dirty"] == ""


def test_csv_rows_are_the_rows_of_the_library(store):
    out = io.StringIO()
    write_csv(store.find(limit=None), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    for row, record in zip(rows, store.find(limit=None), strict=True):
        flat = flat_record(record)
        assert {k: v for k, v in row.items() if v} == {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in flat.items() if v is not None
        }


def test_csv_export_of_nothing_is_the_header():
    out = io.StringIO()
    write_csv([], out)
    assert out.getvalue().splitlines() == [",".join(FLAT_COLUMNS)]


def test_the_feed_is_valid_atom_with_one_entry_a_record(store):
    records = list(store.find(limit=None))
    parsed = feedparser.parse(atom_feed(records))
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert [e.id for e in parsed.entries] == ["urn:simtui:0b0000000002", "urn:simtui:0a0000000001"]
    first, second = parsed.entries
    assert first.title == "failed: 0b0000000002 python train.py"
    assert [t.term for t in second.tags] == ["sweep", "lr"]
    assert "reason: baseline" in second.content[0].value
    for entry, record in zip(parsed.entries, records, strict=True):
        assert datetime(*entry.updated_parsed[:6], tzinfo=timezone.utc).timestamp() == int(record.updated)
    assert parsed.feed.updated_parsed == max(e.updated_parsed for e in parsed.entries)


def test_the_feed_of_no_records_is_still_valid():
    parsed = feedparser.parse(atom_feed([]))
    assert not parsed.bozo and parsed.entries == []


def test_diff_shows_exactly_the_changed_parameters_and_output_hashes(store):
    a = store.get("0a")
    b = make_record(
        "0c0000000003", tags=["other"], params={"lr": 0.2, "opt": {"momentum": 0.9}, "seed": 3},
        environment=ENV, git=a.git, outputs=[OUT[0], {**OUT[1], "sha256": "3" * 64}],
    )
    diff = diff_records(a, b)
    assert diff == {
        "a": "0a0000000001",
        "b": "0c0000000003",
        "params": {"lr": {"a": 0.1, "b": 0.2}, "seed": {"b": 3}},
        "outputs": {"out/model.pt": {"a": "2" * 64, "b": "3" * 64}},
    }


def test_diff_of_code_and_environment(store):
    a = store.get("0a")
    packages = {"click": "8.1.7", "numpy": "2.0.0", "torch": "2.3.1"}
    b = make_record(
        "0c0000000004", params=a.params, outputs=a.outputs, environment={**ENV, "python": "3.12.4", "packages": packages},
        git={"commit": "c2", "dirty": True, "diff": "--- a/x\n+++ b/x\n+lr = 0.2\n"},
    )
    diff = diff_records(a, b)
    assert set(diff) == {"a", "b", "git", "environment"}
    assert diff["git"]["commit"] == {"a": "c1", "b": "c2"}
    assert "+lr = 0.2" in diff["git"]["diff"]
    assert diff["environment"] == {
        "python": {"a": "3.11.7", "b": "3.12.4"},
        "packages": {"added": {"torch": "2.3.1"}, "removed": {"scipy": "1.13.0"},
                     "changed": {"numpy": {"a": "1.26.4", "b": "2.0.0"}}},
    }


def test_a_record_does_not_differ_from_itself(store):
    a = store.get("0a")
    assert diff_records(a, a) == {"a": a.label, "b": a.label}
