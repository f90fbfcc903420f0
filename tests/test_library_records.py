"""The library entry point simtui.records(): flat rows or a DataFrame, on a real SQLite file."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from recordkit import T0, make_record

import simtui
from simtui.cli import main
from simtui.errors import UsageError
from simtui.model import JobState
from simtui.store import Store
from simtui.store import frame as frame_module
from simtui.store.frame import COLUMNS, NO_PANDAS

ENV = {"python": "3.11.7", "hostname": "zero", "packages": {"click": "8.1.7"}}
GIT = {"commit": "c0ffee", "branch": "main", "dirty": True, "tree_sha256": "7" * 64, "diff": "+x\n"}
OUT = [{"path": "out/loss.csv", "size": 3, "sha256": "1" * 64, "media_type": "text/csv"}]
VERDICT = {"of": "aa1100000000", "outputs": 1, "identical": 1, "differ": [], "rerun_state": "succeeded",
           "reproduced": True}
ISO_T0 = "2023-11-14T22:13:20+00:00"  # T0 = 1_700_000_000
SWEEP = "sw2f775532a4"


@pytest.fixture
def home(tmp_path):
    """A simtui home of its own with three records, oldest first."""
    folder = tmp_path / "lab-home"
    store = Store.open(folder / "records.db")
    store.insert(
        make_record("aa1100000000", tags=["sweep"], params={"lr": 0.1, "opt": {"name": "adam", "betas": [0.9, 0.99]}},
                    command="python train.py --lr 0.1", environment=ENV, git=GIT, outputs=OUT, reason="baseline",
                    notes="first try", project="mnist", workdir="/w/mnist", peak_rss=2**31, peak_gpu_mem=2**33,
                    created=T0, started=T0 + 1.5, ended=T0 + 11.5, duration=10.0, sweep=SWEEP,
                    metrics={"loss": 0.25, "acc": 0.875}),
        make_record("aa2200000000", tags=["sweep", "best"], params={"lr": 0.2, "seed": 7},
                    command="python train.py --lr 0.2", repeat_of="aa1100000000", reproduction=VERDICT,
                    machine={"provider": "do", "size": "c-8", "cost": 0.0125, "price_per_hour": 0.25},
                    created=T0 + 60, started=T0 + 61, ended=T0 + 71, sweep=SWEEP, metrics={"loss": 0.5}),
        make_record("bb3300000000", host="zero", state=JobState.RUNNING, exit_code=None, command="python eval.py",
                    created=T0 + 120, started=None, ended=None, duration=None),
    )
    store.close()
    return folder


def rows(**filters):
    return simtui.records(**filters, frame=False)


def labels(found) -> list[str]:
    return [row["label"] for row in found]


def test_flat_dicts_newest_first_with_every_column(home):
    found = rows(home=home)
    assert labels(found) == ["bb3300000000", "aa2200000000", "aa1100000000"]
    running, second, first = found
    assert list(first) == [*COLUMNS, "params.lr", "params.opt.name", "params.opt.betas", "metrics.loss",
                           "metrics.acc"]
    assert COLUMNS.index("sweep") == COLUMNS.index("repeat_of") + 1
    assert first == {
        "label": "aa1100000000", "state": "succeeded", "host": "local", "command": "python train.py --lr 0.1",
        "workdir": "/w/mnist", "project": "mnist", "exit_code": 0,
        "created": ISO_T0, "started": "2023-11-14T22:13:21.500000+00:00", "ended": "2023-11-14T22:13:31.500000+00:00",
        "duration": 10.0, "tags": ["sweep"],
        "git.commit": "c0ffee", "git.branch": "main", "git.dirty": True, "git.tree_sha256": "7" * 64,
        "env.python": "3.11.7", "env.hostname": "zero",
        "env.packages_sha256": Store.open(home / "records.db").get("aa11").environment["packages_sha256"],
        "outputs.count": 1, "peak_rss": 2**31, "peak_gpu_mem": 2**33, "repeat_of": None, "sweep": SWEEP,
        "reason": "baseline", "notes": "first try", "reproduced": None,
        "machine.provider": None, "machine.size": None, "machine.cost": None,
        "params.lr": 0.1, "params.opt.name": "adam", "params.opt.betas": [0.9, 0.99],
        "metrics.loss": 0.25, "metrics.acc": 0.875,
    }
    assert datetime.fromisoformat(first["created"]) == datetime.fromtimestamp(T0, timezone.utc)
    assert second["repeat_of"] == "aa1100000000" and second["reproduced"] is True
    assert (second["machine.provider"], second["machine.size"], second["machine.cost"]) == ("do", "c-8", 0.0125)
    assert {k: v for k, v in second.items() if k.startswith("params.")} == {"params.lr": 0.2, "params.seed": 7}
    assert {k: v for k, v in second.items() if k.startswith("metrics.")} == {"metrics.loss": 0.5}
    assert list(second)[-1] == "metrics.loss" and second["sweep"] == SWEEP and running["sweep"] is None
    assert second["git.commit"] is None and second["env.python"] is None and second["outputs.count"] == 0
    assert running["state"] == "running" and running["started"] is None and running["exit_code"] is None
    assert list(running) == list(COLUMNS)  # no parameters nor metrics: no params. or metrics. keys


@pytest.mark.parametrize(("filters", "expected"), [
    ({"tags": ["sweep"]}, ["aa2200000000", "aa1100000000"]),
    ({"tags": ["sweep", "best"]}, ["aa2200000000"]),
    ({"tags": "best"}, ["aa2200000000"]),  # one tag as a string, not its letters
    ({"state": "running"}, ["bb3300000000"]),
    ({"state": JobState.SUCCEEDED, "host": "local"}, ["aa2200000000", "aa1100000000"]),
    ({"host": "zero"}, ["bb3300000000"]),
    ({"search": "eval"}, ["bb3300000000"]),
    ({"search": '"first try"'}, ["aa1100000000"]),
    ({"since": T0 + 60}, ["bb3300000000", "aa2200000000"]),
    ({"since": datetime.fromtimestamp(T0 + 120, timezone.utc)}, ["bb3300000000"]),
    ({"since": "2023-11-14T22:14:20+00:00"}, ["bb3300000000", "aa2200000000"]),
    ({"since": "2d"}, []),  # an age: the records are from 2023
    ({"since": timedelta(days=2)}, []),
    ({"limit": 2}, ["bb3300000000", "aa2200000000"]),
    ({"limit": 0}, []),
    ({"tags": ["sweep"], "search": "train", "limit": 1}, ["aa2200000000"]),
])
def test_filters_are_those_of_simtui_list(home, filters, expected):
    assert labels(rows(home=home, **filters)) == expected


@pytest.mark.parametrize(("filters", "message"), [
    ({"state": "done"}, "state: expected one of queued, starting, running"),
    ({"since": "last week"}, "--since: expected an ISO date"),
    ({"limit": -1}, "limit: expected a count"),
])
def test_bad_filters_are_usage_errors(home, filters, message):
    with pytest.raises(UsageError, match=message):
        rows(home=home, **filters)


def test_the_default_home_is_simtui_home_and_nothing_is_created(simtui_env):
    database = simtui_env / "home" / "records.db"
    assert rows() == [] and not database.exists()  # no records yet: none, and no file made
    store = Store.open()
    store.insert(make_record("cc4400000000"))
    store.close()
    assert labels(rows()) == ["cc4400000000"]


def test_a_home_without_records_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"no-such-home/records\.db: no records database there"):
        rows(home=tmp_path / "no-such-home")
    assert not (tmp_path / "no-such-home").exists()


def test_the_store_is_closed_afterwards(home, monkeypatch):
    opened = []
    real_open = Store.open

    def spy(path=None):
        opened.append(real_open(path))
        return opened[-1]

    monkeypatch.setattr(frame_module.Store, "open", spy)
    rows(home=home)
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened[0].conn.execute("select 1")


def test_frame_true_without_pandas_is_a_clear_usage_error(home, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` fails, as when it is not installed
    with pytest.raises(UsageError) as error:
        simtui.records(home=home, frame=True)
    assert str(error.value) == NO_PANDAS == "pandas is not installed (pip install pandas)"
    assert labels(simtui.records(home=home)) == ["bb3300000000", "aa2200000000", "aa1100000000"]  # frame=None: a list


def test_a_dataframe_when_pandas_is_installed(home):
    pd = pytest.importorskip("pandas")
    df = simtui.records(home=home)  # frame=None: a DataFrame, since pandas imports
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == [*COLUMNS, "params.lr", "params.seed", "params.opt.name", "params.opt.betas",
                                "metrics.loss", "metrics.acc"]
    assert list(df["label"]) == ["bb3300000000", "aa2200000000", "aa1100000000"]
    for name in ("created", "started", "ended"):
        assert isinstance(df[name].dtype, pd.DatetimeTZDtype) and str(df[name].dtype.tz) == "UTC", name
    assert df["created"].iloc[2] == pd.Timestamp(ISO_T0)
    assert df["started"].iloc[2] == pd.Timestamp("2023-11-14T22:13:21.5Z") and df["started"].isna().iloc[0]
    for name in ("exit_code", "outputs.count", "peak_rss", "peak_gpu_mem"):
        assert df[name].dtype == "Int64", name
    assert df["exit_code"].isna().iloc[0] and list(df["exit_code"].iloc[1:]) == [0, 0]
    assert df["peak_rss"].iloc[2] == 2**31 and list(df["outputs.count"]) == [0, 0, 1]
    assert df["git.dirty"].dtype == "boolean" and df["reproduced"].dtype == "boolean"
    assert df["git.dirty"].iloc[2] and df["reproduced"].iloc[1] and df["reproduced"].isna().iloc[2]
    assert df["duration"].dtype == "float64"
    assert df["machine.cost"].dtype == "float64" and df["machine.cost"].iloc[1] == 0.0125  # what a sweep cost: .sum()
    assert list(df["tags"]) == [[], ["sweep", "best"], ["sweep"]]  # lists, not joined text
    assert df["params.lr"].dtype == "float64" and df["params.lr"].iloc[2] == 0.1 and df["params.lr"].isna().iloc[0]
    assert df["params.opt.betas"].iloc[2] == [0.9, 0.99] and df["params.seed"].iloc[1] == 7
    for name in ("metrics.loss", "metrics.acc"):
        assert df[name].dtype == "float64", name
    assert list(df["metrics.loss"].iloc[1:]) == [0.5, 0.25] and df["metrics.loss"].isna().iloc[0]
    assert df["metrics.acc"].iloc[2] == 0.875 and df["metrics.acc"].iloc[:2].isna().all()
    assert list(df["sweep"].iloc[1:]) == [SWEEP, SWEEP] and df["sweep"].isna().iloc[0]
    sweep = simtui.records(tags=["sweep"], home=home, frame=True)
    assert list(sweep["label"]) == ["aa2200000000", "aa1100000000"]
    assert "params.seed" in sweep.columns and list(sweep["params.lr"]) == [0.2, 0.1]  # mix params and metadata
    assert isinstance(simtui.records(home=home, frame=False), list)


def test_an_empty_dataframe_still_has_its_columns_and_types(home):
    pd = pytest.importorskip("pandas")
    df = simtui.records(host="nowhere", home=home, frame=True)
    assert df.empty and list(df.columns) == list(COLUMNS)
    assert isinstance(df["created"].dtype, pd.DatetimeTZDtype) and df["exit_code"].dtype == "Int64"


def test_csv_export_is_the_same_flat_rows(home, monkeypatch, tmp_path):
    monkeypatch.setenv("SIMTUI_HOME", str(home))
    result = CliRunner().invoke(main, ["export", "--format", "csv", "-o", str(tmp_path / "runs.csv")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "runs.csv", newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header, *lines = list(reader)
    assert header == [*COLUMNS, "params.lr", "params.seed", "params.opt.name", "params.opt.betas",
                      "metrics.loss", "metrics.acc"]
    running, second, first = (dict(zip(header, line, strict=True)) for line in lines)
    assert first["label"] == "aa1100000000" and first["created"] == ISO_T0
    assert first["tags"] == '["sweep"]' and first["git.dirty"] == "true" and first["peak_rss"] == str(2**31)
    assert first["params.lr"] == "0.1" and first["params.opt.name"] == "adam"
    assert json.loads(first["params.opt.betas"]) == [0.9, 0.99] and first["params.seed"] == ""
    assert (first["metrics.loss"], first["metrics.acc"], first["sweep"]) == ("0.25", "0.875", SWEEP)
    assert (second["metrics.loss"], second["metrics.acc"]) == ("0.5", "")  # a metric the record lacks: empty
    assert running["metrics.loss"] == running["metrics.acc"] == running["sweep"] == ""  # no metrics at all
    assert [line[0] for line in lines] == labels(rows(home=home))


LIGHT = textwrap.dedent("""
    import sys
    heavy = ("sqlite_utils", "pandas", "numpy", "asyncio", "textual", "asyncssh")
    import simtui
    print(sorted(m for m in heavy if m in sys.modules))
    found = simtui.records(home=sys.argv[1], frame=False)
    print(len(found), sorted(m for m in heavy if m in sys.modules))
""")


def test_import_simtui_is_cheap_and_reading_records_stays_light(home):
    """`import simtui` loads none of sqlite-utils, pandas, asyncio, textual; records()
    on an up-to-date database reads with sqlite3 alone."""
    done = subprocess.run([sys.executable, "-c", LIGHT, str(home)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "3 []"]


def test_records_is_listed_and_unknown_names_are_attribute_errors():
    assert "records" in dir(simtui) and simtui.records is frame_module.records
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        simtui.nothing  # noqa: B018
