"""The dashboard's metrics pane (`m`) and compare screen (`c`), on a frozen sweep:
records and metric points written straight into the store, no server.

Update the snapshot after a deliberate change of looks:
``pytest tests/test_ui_metrics.py --snapshot-update``, then check the SVG under
tests/__snapshots__/test_ui_metrics/.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from recordkit import make_record
from textual.widgets import DataTable
from uikit import NOW, frozen_app, post_frozen_hosts, until, utc  # noqa: F401  (a fixture)

from simtui.model import JobState
from simtui.store import Store
from simtui.ui.screens.compare import CompareScreen
from simtui.ui.screens.record import RecordScreen
from simtui.ui.widgets.metrics import HINT, CompactTicks, MetricsPane, differing, run_name, thin

pytestmark = pytest.mark.usefixtures("utc")  # times in records show in UTC
SIZE = (150, 42)
SWEEP = "swc0ffee0042"
GRID = [(lr, seed) for lr in (0.1, 0.01, 0.001) for seed in (1, 2)]  # six runs
STEPS = 60


def loss(run: int, step: float) -> float:
    """Run ``run``'s loss at ``step``: each run its own speed and wiggle."""
    return math.exp(-step / (8 + 4 * run)) + 0.03 * math.sin(step / 3 + run)


def frozen_sweep() -> list:
    """Six runs of a sweep over lr and seed (the last one running), oldest first,
    each with STEPS points of loss and acc and a few of lr_now, in the store."""
    records = [
        make_record(f"5eed{i:08x}", sweep=SWEEP, params={"lr": lr, "seed": seed, "epochs": 5},
                    command=f"python train.py --lr {lr} --seed {seed}", created=NOW - 600 + i,
                    started=NOW - 590 + i, ended=None if i == len(GRID) - 1 else NOW - 300 + 10 * i,
                    duration=None if i == len(GRID) - 1 else 290.0 + 9 * i,
                    host="gpu-box" if i % 2 else "local",
                    state=JobState.RUNNING if i == len(GRID) - 1 else JobState.SUCCEEDED,
                    exit_code=None if i == len(GRID) - 1 else 0)
        for i, (lr, seed) in enumerate(GRID)
    ]
    store = Store.open()
    store.insert(*records)
    for i, record in enumerate(records):
        points = []
        for step in range(STEPS):
            points += [("loss", step, loss(i, step), 100 * step), ("acc", step, 1 - loss(i, step) / 2, 100 * step)]
            if step % 10 == 0:
                points.append(("lr_now", step, GRID[i][0] / (1 + step), 100 * step))
        store.add_metrics(record.label, points, NOW)
    store.close()
    return records


async def open_pane(pilot, label: str) -> MetricsPane:
    """Select ``label``, press m, wait for every plot to be drawn."""
    app = pilot.app
    await post_frozen_hosts(pilot)
    app.dashboard.jobs.select(label)
    await pilot.pause()
    await pilot.press("m")
    pane = app.dashboard.query_one(MetricsPane)
    await until(pilot, lambda: pane.view is not None and pane.view.label == label and not pane._redraw,
                what="the metrics drawn")
    await pilot.pause()
    return pane


def rows(table: DataTable) -> list[str]:
    return [str(key.value) for key in table.rows]


# -- the pieces -----------------------------------------------------------------------


def test_thin_keeps_each_columns_low_and_high_in_order():
    x = np.arange(100_000, dtype=float)
    y = np.sin(x / 5000)
    y[12_345] = 50.0  # a spike
    tx, ty = thin(x, y, 0.0, x[-1], 100)
    assert len(tx) <= 2 * 100 + 2
    assert 50.0 in ty and tx[0] == 0 and tx[-1] == x[-1]
    assert np.all(np.diff(tx) > 0)  # in the order printed
    assert ty.max() == 50.0 and ty.min() == y.min()
    short = np.arange(10, dtype=float)
    assert thin(short, short, 0, 9, 100)[0] is short  # little enough: as it is


def test_runs_are_named_by_the_parameters_that_differ():
    params = [{"lr": 0.1, "seed": 1, "epochs": 5, "model": {"width": 64}},
              {"lr": 0.01, "seed": 1, "epochs": 5, "model": {"width": 128}}]
    names = differing(params)
    assert names == ["lr", "model.width"]
    assert run_name(params[0], names, "abc") == "lr=0.1 model.width=64"
    assert run_name({}, [], "abc") == "abc"
    assert differing([{"lr": 1}]) == []


def test_ticks_are_short():
    ticks = CompactTicks(10)
    ticks.cells = 60  # room for six
    assert ticks.get_labels_for_ticks(ticks.get_ticks(0, 100_000)) == ["0", "20k", "40k", "60k", "80k", "100k"]
    ticks.cells = 30  # for three
    assert ticks.get_labels_for_ticks(ticks.get_ticks(0, 100_000)) == ["0", "50k", "100k"]
    assert ticks.get_labels_for_ticks([0.0, 0.05, 0.1]) == ["0", "0.05", "0.1"]
    assert CompactTicks.label(1.5e6, 5e5) == "1.5M" and CompactTicks.label(2e-5, 1e-5) == "2.0e-5"


# -- the pane --------------------------------------------------------------------------


async def test_m_shows_the_sweeps_runs_overlaid_and_grows_live():
    records = frozen_sweep()
    selected = records[2].label
    app = frozen_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(pilot, selected)
        assert app.dashboard.log_pane.display is False  # in place of the log
        view = pane.view
        assert view.sweep == SWEEP and view.shown == ["loss", "acc", "lr_now"]
        assert [r.name for r in view.runs][-1] == "lr=0.01 seed=1"  # the selected run, drawn last
        assert {r.name for r in view.runs} == {f"lr={lr} seed={seed}" for lr, seed in GRID}
        assert [label for label, _, _ in view.lines["loss"]][-1] == selected
        assert len({r.colour for r in view.runs}) == len(GRID)
        assert app.screen.check_action("metrics_page", ()) is False  # three metrics: no ]
        # live: points printed since are read (only they), and drawn
        store = Store.open()
        store.add_metrics(selected, [("loss", STEPS + s, 0.5, 100 * (STEPS + s)) for s in range(5)], NOW)
        store.close()
        await until(pilot, lambda: len(pane.view.lines["loss"][-1][1]) == STEPS + 5, what="the new points")
        assert pane._reader.series[(selected, "loss")].after == 100 * (STEPS + 4)
        await pilot.press("m")
        assert app.dashboard.log_pane.display and not pane.display


async def test_right_bracket_pages_through_more_than_four_metrics():
    record = make_record("ab12ab12ab12", created=NOW - 5, started=NOW - 4, ended=NOW - 1, duration=3.0)
    keys = ["loss", "acc", "lr", "grad_norm", "val_loss", "val_acc"]
    store = Store.open()
    store.insert(record)
    store.add_metrics(record.label, [(k, s, s * (i + 1), 10 * s) for s in range(3) for i, k in enumerate(keys)], NOW)
    store.close()
    app = frozen_app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(pilot, record.label)
        assert pane.view.keys == keys and pane.view.shown == keys[:4] and pane.view.sweep is None
        assert app.screen.check_action("metrics_page", ()) is True  # ] is in the footer
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: pane.view.shown == keys[4:], what="the next metrics")
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: pane.view.shown == keys[:4], what="the first metrics again")


async def test_a_job_without_metrics_shows_how_to_print_them():
    app = frozen_app()  # its records have no metrics
    async with app.run_test(size=SIZE) as pilot:
        await post_frozen_hosts(pilot)
        await pilot.press("m")
        pane = app.dashboard.query_one(MetricsPane)
        await until(pilot, lambda: pane.view is not None, what="a read")
        assert pane.view.keys == [] and pane.view.sweep is None
        assert str(pane.query_one("#metrics-hint").content) == HINT


def test_metrics_pane(snap_compare):
    records = frozen_sweep()

    async def show(pilot):
        await open_pane(pilot, records[-1].label)

    assert snap_compare(frozen_app(), terminal_size=SIZE, run_before=show)


# -- compare ---------------------------------------------------------------------------


async def test_compare_sorts_by_a_metric_filters_and_opens_a_run():
    records = frozen_sweep()
    app = frozen_app()
    async with app.run_test(size=SIZE) as pilot:
        await post_frozen_hosts(pilot)
        app.dashboard.jobs.select(records[0].label)
        await pilot.pause()
        await pilot.press("c")
        screen = app.screen
        assert isinstance(screen, CompareScreen) and screen.sweep == SWEEP
        table = screen.query_one(DataTable)
        titles = [str(c.label) for c in table.columns.values()]
        assert titles == ["label", "state", "host", "params.lr", "params.seed", "loss", "acc", "lr_now"]
        assert rows(table) == [r.label for r in reversed(records)]  # newest first
        assert rows(table)[table.cursor_row] == records[0].label  # the selected job
        last = {r.label: loss(i, STEPS - 1) for i, r in enumerate(records)}
        for _ in range(6):  # label, state, host, lr, seed, then loss
            await pilot.press("s")
        assert screen.columns[screen.sort_by].title == "loss" and not screen.descending
        assert rows(table) == sorted(last, key=last.get)
        assert str(table.columns["metrics.loss"].label) == "loss ↑"
        await pilot.press("S")
        assert rows(table) == sorted(last, key=last.get, reverse=True)
        lowest = min(last, key=last.get)
        assert table.get_row(lowest)[titles.index("loss")].plain == f"{last[lowest]:.4g}"
        await pilot.press("slash", *"seed=2", "enter")
        assert rows(table) == [r for r in sorted(last, key=last.get, reverse=True) if r in
                               {records[i].label for i, (_, seed) in enumerate(GRID) if seed == 2}]
        await pilot.press("home", "enter")
        assert isinstance(app.screen, RecordScreen) and app.screen.label == rows(table)[0]
        await pilot.press("escape", "escape")
        assert app.screen is app.dashboard


async def test_compare_without_a_sweep_lists_the_jobs_shown():
    app = frozen_app()
    async with app.run_test(size=SIZE) as pilot:
        await post_frozen_hosts(pilot)
        await pilot.press("c")
        screen = app.screen
        assert isinstance(screen, CompareScreen) and screen.sweep is None
        assert set(rows(screen.query_one(DataTable))) == set(app.dashboard.jobs.records)
