"""How the dashboard looks, with frozen hosts, records and clock (no live worker).

Update after a deliberate change of looks: ``pytest tests/test_ui_snapshots.py --snapshot-update``,
then check the SVGs under tests/__snapshots__/.
"""

from __future__ import annotations


import pytest
from textual.widgets import Input
from uikit import frozen_app, post_frozen_hosts, utc  # noqa: F401  (a fixture)

from simtui.ui.screens.new_job import NewJobScreen

pytestmark = pytest.mark.usefixtures("utc")  # times in records show in UTC
SIZE = (150, 42)


def test_dashboard(snap_compare):
    assert snap_compare(frozen_app(), terminal_size=SIZE, run_before=post_frozen_hosts)


def test_new_job_form_with_host_picker(snap_compare):
    async def fill(pilot):
        await post_frozen_hosts(pilot)
        await pilot.press("n")
        form = pilot.app.screen
        assert isinstance(form, NewJobScreen)
        for field, value in [("command", "python train.py --lr 0.05"), ("tags", "sweep"), ("mem", "64G"),
                             ("gpus", "1"), ("gpu_mem", "40G")]:
            form.query_one(f"#{field}").value = value
        for field in form.query(Input):
            field.cursor_blink = False  # the cursor shows, however long the steps before took
        await pilot.pause()

    assert snap_compare(frozen_app(), terminal_size=SIZE, run_before=fill)


def test_record_detail(snap_compare):
    async def open_record(pilot):
        await post_frozen_hosts(pilot)
        await pilot.press("enter")

    assert snap_compare(frozen_app(), terminal_size=SIZE, run_before=open_record)


def test_help(snap_compare):
    async def open_help(pilot):
        await post_frozen_hosts(pilot)
        await pilot.press("question_mark")

    assert snap_compare(frozen_app(), terminal_size=SIZE, run_before=open_help)
