"""Many records through the real `simtui` commands that stream them (list, export, feed):
what they print is what was built, in-process, from whole records. No timings: speed and
memory live in `python -m bench records`."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from recordkit import make_record

from simtui.model import JobState
from simtui.store import Store
from simtui.textfmt import to_json

COUNT = 1_500
ENVIRONMENTS = [{"python": "3.11.7", "packages": {f"pkg{n}": f"1.{n}" for n in range(40)}},
                {"python": "3.12.1", "packages": {"numpy": "2.0.0"}}, None]


@pytest.fixture
def many(simtui_env):
    """COUNT records in $SIMTUI_HOME/records.db: three environments, sweeps of parameters."""
    store = Store.open()
    store.insert(*(make_record(f"{i:012x}", tags=[f"sweep{i % 7}"] + ["gpu"] * (i % 3 == 0), command=f"python train.py {i}",
                               params={"lr": [0.1, 0.01][i % 2], "opt": {"seed": i % 5}}, environment=ENVIRONMENTS[i % 3],
                               state=[JobState.SUCCEEDED, JobState.FAILED][i % 2], reason=f"run {i}")
                   for i in range(COUNT)))
    yield store
    store.close()


def simtui(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "simtui", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stderr, done.stderr
    return done.stdout


def test_list_prints_every_record_one_aligned_line_each(many):
    header, *rows = simtui("list", "--limit", "0").splitlines()
    assert len(rows) == COUNT and rows[0].startswith(f"{COUNT - 1:012x}  failed     local")
    column = header.index("COMMAND")
    assert all(row[column:].startswith("python train.py ") for row in rows)
    assert len(simtui("list", "--limit", "0", "--tag", "gpu").splitlines()) == 1 + COUNT // 3


def test_list_json_is_the_whole_list_of_records(many):
    printed = simtui("list", "--limit", "0", "--json")
    assert printed == to_json([r.to_dict() for r in many.find(limit=None)]) + "\n"
    newest = json.loads(printed)[:3]
    assert [r["environment"] and r["environment"]["packages"] for r in newest] == [None, {"numpy": "2.0.0"},
                                                                                  ENVIRONMENTS[0]["packages"]]


def test_export_json_and_csv_hold_every_record(many):
    exported = json.loads(simtui("export"))
    assert exported == [r.to_dict() for r in many.find(limit=None)]
    rows = list(csv.DictReader(io.StringIO(simtui("export", "--format", "csv"))))
    assert len(rows) == COUNT and list(rows[0])[-2:] == ["params.lr", "params.opt.seed"]
    assert [(row["label"], row["params.lr"]) for row in rows[:2]] == [(f"{COUNT - 1:012x}", "0.01"),
                                                                       (f"{COUNT - 2:012x}", "0.1")]


def test_the_feed_has_an_entry_a_record(many):
    feed = ET.fromstring(simtui("feed").encode())
    entries = feed.findall("{http://www.w3.org/2005/Atom}entry")
    assert len(entries) == COUNT
    assert entries[-1].findtext("{http://www.w3.org/2005/Atom}title") == "succeeded: 000000000000 python train.py 0"


def test_package_lists_are_stored_once_each(many):
    assert many.conn.execute("select count(*) from packages").fetchone()[0] == 2
    assert many.conn.execute("select count(*) from records where environment like '%pkg1%'").fetchone()[0] == 0
