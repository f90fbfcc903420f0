"""Records out of the store: JSON and CSV exports, the Atom feed, record diffs."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import feedparser
import pytest
from recordkit import T0, make_record

from simtui.model import JobState
from simtui.recordfmt import COMMAND_WIDTH, duration, records_table, when
from simtui.store import Store
from simtui.store.diff import diff_records
from simtui.store.export import write_csv, write_json, write_list
from simtui.store.feed import write_feed
from simtui.store.frame import COLUMNS as FLAT_COLUMNS, flat_dict, flat_rows
from simtui.textfmt import table, to_json
from simtui.textsafe import one_line, xml_text

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


@pytest.fixture
def empty(tmp_path):
    opened = Store.open(tmp_path / "empty.db")
    yield opened
    opened.close()


def written(writer, store: Store, **filters) -> str:
    out = io.StringIO()
    writer(store, out, **filters)
    return out.getvalue()


def test_json_export_is_each_records_dict_one_a_line(store):
    records = [r.to_dict() for r in store.find(limit=None)]
    assert records[1]["environment"]["packages"] == ENV["packages"]  # the list is in each record that has it
    assert written(write_json, store) == "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"


def test_json_export_of_nothing_is_an_empty_list(empty):
    assert written(write_json, empty) == "[\n]\n"


def test_list_json_is_to_json_of_the_list(store):
    assert written(write_list, store, limit=None) == to_json([r.to_dict() for r in store.find(limit=None)]) + "\n"
    assert written(write_list, store, tags=["lr"]) == to_json([store.get("0a").to_dict()]) + "\n"
    assert written(write_list, store, host="nowhere") == "[]\n"


def test_csv_export_has_the_flat_columns_and_iso_times(store):
    rows = list(csv.DictReader(io.StringIO(written(write_csv, store))))
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
    rows = list(csv.DictReader(io.StringIO(written(write_csv, store))))
    for row, flat in zip(rows, flat_rows(store, limit=None), strict=True):
        assert {k: v for k, v in row.items() if v} == {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in flat_dict(*flat).items() if v is not None
        }


def test_csv_export_of_nothing_is_the_header(empty):
    assert written(write_csv, empty).splitlines() == [",".join(FLAT_COLUMNS)]


def test_csv_has_the_last_value_of_each_metric_after_the_parameters(store):
    store.insert(
        make_record("0c0000000003", params={"lr": 0.2}, sweep="sw2f775532a4", metrics={"loss": 0.125, "acc": 0.5}),
        make_record("0c0000000004", params={"seed": 3}, sweep="sw2f775532a4", metrics={"loss": 1e-300, "lr": 0.01}),
        make_record("0c0000000005", metrics={}),
    )
    store.add_metrics("0c0000000003", [("loss", 1.0, 0.25, 0), ("loss", 2.0, 0.0625, 40)], 100.0)  # the last one
    rows = list(csv.DictReader(io.StringIO(written(write_csv, store))))
    assert list(rows[0]) == [*FLAT_COLUMNS, "params.seed", "params.lr", "params.opt.momentum",
                             "metrics.loss", "metrics.lr", "metrics.acc"]  # lr both a parameter and a metric
    by_label = {row["label"]: row for row in rows}
    fourth, third = by_label["0c0000000004"], by_label["0c0000000003"]
    assert (fourth["metrics.loss"], fourth["metrics.lr"], fourth["metrics.acc"]) == ("1e-300", "0.01", "")
    assert (third["metrics.loss"], third["metrics.acc"], third["params.lr"]) == ("0.0625", "0.5", "0.2")
    assert third["sweep"] == fourth["sweep"] == "sw2f775532a4" and by_label["0a0000000001"]["sweep"] == ""
    for label in ("0c0000000005", "0a0000000001", "0b0000000002"):  # no metrics: empty cells
        assert [by_label[label][f"metrics.{key}"] for key in ("loss", "lr", "acc")] == ["", "", ""]


def feed_of(store: Store) -> bytes:
    out = io.BytesIO()
    write_feed(store, out)
    return out.getvalue()


def test_the_feed_is_valid_atom_with_one_entry_a_record(store):
    records = list(store.find(limit=None))
    parsed = feedparser.parse(feed_of(store))
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


def test_the_feed_of_no_records_is_still_valid(empty):
    parsed = feedparser.parse(feed_of(empty))
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


# -- any text, any field: the outputs are exactly what they were when built from whole records --

ODD = "tab\there, line\nbreak, \x1b[31mred\x1b[0m, \u2028, 训练, é, \"quoted\" \\back\\ \U0001F600 \x07"
ODD_ENV = {"python": "3.12.1", "gpu": None, "hostname": "zéro", "packages": {"numpy": "2.0.0", "naïve-pkg": "1.0"}}


@pytest.fixture
def odd(tmp_path):
    """Records holding every kind of value: odd text in every text field, floats of full
    precision, NaN, empty and missing JSON, two package lists and none."""
    opened = Store.open(tmp_path / "odd.db")
    opened.insert(
        make_record("0d0000000001", host=f"h {ODD}", command=f"python {ODD}", tags=["a\"b", "ü", "x\ty", ODD],
                    reason=ODD, notes=f"{ODD}\n{ODD}", workdir=ODD, created=1_700_000_000.123456789,
                    started=1_700_000_001.1, ended=1_700_000_011.123456789, duration=10.000000000000002,
                    params={"lr": 1e-300, "big": 2**62, "nan": float("nan"), "text": ODD, "nested": {"a": [1, {}]}},
                    environment=ENV, outputs=OUT, git={"commit": "c1", "dirty": True, "diff": ODD}, log_tail=ODD,
                    needs={"mem": 2**30}, spec={"argv": ["x"], "tags": []}, params_file={"path": ODD},
                    reproduction={"reproduced": False, "differ": [{"why": ODD}]}, sweep=f"sw{ODD}",
                    metrics={"loss": 0.1, ODD: float("nan"), "big": 1e300, "训练/acc": 0.25}),
        make_record("0d0000000002", state=JobState.RUNNING, exit_code=None, ended=None, duration=None,
                    environment={}, tags=[], argv=[]),
        make_record("0d0000000003", environment=ODD_ENV, tags=["ü"] * 3, metrics={"训练/acc": 0.5, "n": 3}),
        make_record("0d0000000004", environment={"python": "3.11.7", "packages": {}}),
        make_record("0d0000000005", tags=["sweep", "lr-0.1", "a,b", "longer than the others"], created=T0 - 60),
    )
    yield opened
    opened.close()


def test_json_outputs_are_json_dumps_of_each_record_for_any_value(odd):
    records = [r.to_dict() for r in odd.find(limit=None)]
    assert written(write_json, odd) == "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"
    assert written(write_list, odd, limit=None) == to_json(records) + "\n"


def test_csv_rows_are_the_rows_of_the_library_for_any_value(odd):
    rows = list(csv.DictReader(io.StringIO(written(write_csv, odd))))
    assert list(rows[0])[len(FLAT_COLUMNS):] == ["params.lr", "params.big", "params.nan", "params.text",
                                                 "params.nested.a", "metrics.训练/acc", "metrics.n", "metrics.loss",
                                                 f"metrics.{ODD}", "metrics.big"]
    for row, flat in zip(rows, flat_rows(odd, limit=None), strict=True):
        assert {k: v for k, v in row.items() if v} == {
            k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            for k, v in flat_dict(*flat).items() if v is not None
        }
    [first] = [row for row in rows if row["label"] == "0d0000000001"]
    assert first[f"metrics.{ODD}"] == "NaN" and first["metrics.big"] == "1e+300" and first["sweep"] == f"sw{ODD}"


def table_of(records: list) -> str:
    """The list table as simtui built it from whole records (before it streamed)."""
    def command(text: str) -> str:
        return text if len(text) <= COMMAND_WIDTH else text[:COMMAND_WIDTH - 1] + "…"

    rows = [(r.label, r.state.value, r.host, when(r.created, seconds=False), duration(r.duration), ", ".join(r.tags),
             command(one_line(r.command))) for r in records]
    return table(["label", "state", "host", "created", "duration", "tags", "command"], rows)


@pytest.mark.parametrize("filters", [{"limit": None}, {"tags": ["ü"]}, {"limit": 1}, {"search": "训练"}, {"host": "local"}])
def test_the_list_table_is_textfmt_table_of_the_records_for_any_text(odd, filters):
    with odd.snapshot():
        assert "\n".join(records_table(odd, **filters)) == table_of(list(odd.find(**filters)))
    assert list(records_table(odd, host="nowhere")) == []


def atom_of(records: list, title: str) -> bytes:
    """The feed as simtui built it from whole records with ElementTree (before it streamed)."""
    feed = ET.Element("feed", xmlns="http://www.w3.org/2005/Atom")
    ET.SubElement(feed, "title").text = xml_text(title, single_line=True)
    ET.SubElement(feed, "id").text = "urn:simtui:records"
    ET.SubElement(ET.SubElement(feed, "author"), "name").text = "simtui"
    ET.SubElement(feed, "generator").text = "simtui"
    ET.SubElement(feed, "updated").text = rfc3339(max(r.updated or r.created or 0.0 for r in records))
    for r in records:
        entry = ET.SubElement(feed, "entry")
        ET.SubElement(entry, "id").text = f"urn:simtui:{xml_text(r.label, single_line=True)}"
        ET.SubElement(entry, "title").text = xml_text(f"{r.state.value}: {r.label} {r.command}", single_line=True)
        ET.SubElement(entry, "updated").text = rfc3339(r.updated or r.created or 0.0)
        if r.created:
            ET.SubElement(entry, "published").text = rfc3339(r.created)
        for tag in r.tags:
            ET.SubElement(entry, "category", term=xml_text(tag, single_line=True))
        lines = [f"host: {one_line(r.host)}", f"command: {one_line(r.command)}"]
        if r.workdir:
            lines.append(f"workdir: {one_line(r.workdir)}")
        if r.exit_code is not None:
            lines.append(f"exit code: {r.exit_code}")
        if r.duration is not None:
            lines.append(f"duration: {r.duration:.1f} s")
        lines += [f"{name}: {getattr(r, name)}" for name in ("reason", "notes") if getattr(r, name)]
        content = ET.SubElement(entry, "content", type="text")
        content.text = xml_text("\n".join(lines))
    ET.indent(feed)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def test_the_feed_is_what_elementtree_made_of_whole_records(odd):
    out = io.BytesIO()
    write_feed(odd, out, title=f"lab {ODD}")
    assert out.getvalue() == atom_of(list(odd.find(limit=None)), f"lab {ODD}")
