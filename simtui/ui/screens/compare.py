"""`c`: the runs of the selected job's sweep side by side (without a sweep: the runs
the dashboard lists), one row a run: label, state, host, every parameter that differs
between them (``params.lr``...), then the last value of every metric. ``s`` sorts by
the next column (a click on a header sorts by it), ``S`` turns the order round, ``/``
filters, enter opens the run's record."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import DataTable, Footer, Input

from simtui.model import Record
from simtui.textsafe import one_line
from simtui.ui.screens.base import BackScreen
from simtui.ui.screens.record import RecordScreen
from simtui.ui.widgets.jobs import STATE_STYLE
from simtui.ui.widgets.metrics import differing, flat, number, value_text

FIXED = ("label", "state", "host")
VALUE_WIDTH = 24  # characters of a parameter's value shown


class Column:
    """A column: its title, and how a run's cell and sort key come from its record."""

    def __init__(self, key: str, title: str, kind: str, name: str | None = None) -> None:
        self.key, self.title, self.kind, self.name = key, title, kind, name  # kind: fixed, param, metric

    def value(self, record: Record, params: dict[str, Any]) -> Any:
        if self.kind == "fixed":
            return record.state.value if self.key == "state" else getattr(record, self.key)
        if self.kind == "param":
            return params.get(self.name, _MISSING)
        return (record.metrics or {}).get(self.name, _MISSING)

    def cell(self, record: Record, params: dict[str, Any]) -> Text:
        value = self.value(record, params)
        if value is _MISSING:
            return Text("")
        if self.kind == "fixed":
            return Text(one_line(str(value)), STATE_STYLE[record.state] if self.key == "state" else "")
        if self.kind == "metric":
            return Text(number(value), justify="right")
        text = one_line(value_text(value))
        text = text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"
        return Text(text, justify="right" if isinstance(value, (int, float)) else "left")


_MISSING = object()


def sort_key(value: Any) -> tuple[int, Any]:
    """Numbers by value, then text, then other values by their JSON; missing last."""
    if value is _MISSING or value is None:
        return (3, 0)
    if isinstance(value, bool):
        return (1, str(value))
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (2, json.dumps(value, sort_keys=True, default=str))


def columns_of(records: Sequence[Record]) -> list[Column]:
    """label, state, host, each differing parameter, each metric (in the order first
    printed, over the runs oldest first)."""
    columns = [Column(key, key, "fixed") for key in FIXED]
    columns += [Column(f"params.{name}", f"params.{name}", "param", name)
                for name in differing([r.params or {} for r in records])]
    metrics = dict.fromkeys(key for r in reversed(records) for key in (r.metrics or {}))
    columns += [Column(f"metrics.{key}", key, "metric", key) for key in metrics]
    return columns


class FilterBox(Input):
    """The filter; escape empties and hides it."""

    BINDINGS = [Binding("escape", "screen.clear_filter", "Clear filter", show=False)]


class CompareScreen(BackScreen):
    BINDINGS = [
        Binding("s", "sort", "Sort", id="compare.sort", tooltip="sort by the next column (or click a header)"),
        Binding("S", "reverse", "Reverse", id="compare.reverse", tooltip="the other way round"),
        Binding("slash", "filter", "Filter", id="compare.filter", tooltip="show only the runs that hold a text"),
        Binding("enter", "record", "Record", id="compare.record", tooltip="the highlighted run's whole record"),
    ]

    def __init__(self, sweep: str | None = None, records: Iterable[Record] | None = None,
                 select: str | None = None) -> None:
        """The runs of ``sweep``, read from the store; without one, ``records``.
        ``select``: the label the cursor starts on."""
        super().__init__()
        self.sweep = sweep
        self.given = list(records or [])
        self.select = select
        self.records: list[Record] = []
        self.params: dict[str, dict[str, Any]] = {}
        self.columns: list[Column] = []
        self.sort_by: int | None = None  # index into columns; None: newest first
        self.descending = False
        self.needle = ""
        self.shown: list[str] = []

    def compose(self) -> ComposeResult:
        yield FilterBox(placeholder="filter runs: label, state, host, a parameter's value (esc clears)",
                        id="compare-filter")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="compare")
        yield Footer()

    def on_mount(self) -> None:
        self.load()
        self.table.focus()

    @property
    def table(self) -> DataTable:
        return self.query_one("#compare", DataTable)

    def load(self) -> None:
        """Read the runs again and show them."""
        if self.sweep:
            self.records = list(self.app.store.find(sweep=self.sweep, limit=None))
        else:
            self.records = sorted(self.given, key=lambda r: -(r.created or 0))
        self.params = {r.label: flat(r.params) for r in self.records}
        self.columns = columns_of(self.records)
        self._refill()

    # -- keys --------------------------------------------------------------------------

    def sort(self, index: int | None, descending: bool = False) -> None:
        """Sort by column ``index`` (None: newest first)."""
        self.sort_by, self.descending = index, descending
        self._refill()

    def action_sort(self) -> None:
        nxt = 0 if self.sort_by is None else self.sort_by + 1
        self.sort(nxt if nxt < len(self.columns) else None)

    def action_reverse(self) -> None:
        self.sort(self.sort_by, not self.descending)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        index = event.column_index
        self.sort(index, not self.descending if index == self.sort_by else False)

    def action_filter(self) -> None:
        box = self.query_one(FilterBox)
        box.add_class("shown")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one(FilterBox)
        box.value = ""
        box.remove_class("shown")
        self.table.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip()
        self._refill()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.table.focus()

    def action_record(self) -> None:
        table = self.table
        if table.row_count:
            self.app.push_screen(RecordScreen(self.shown[table.cursor_row]))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(RecordScreen(str(event.row_key.value)))

    # -- rows ----------------------------------------------------------------------------

    def _matches(self, record: Record) -> bool:
        if not self.needle:
            return True
        params = self.params[record.label]
        words = [record.label, record.state.value, record.host, *record.tags,
                 *(f"{k}={value_text(v)}" for k, v in params.items())]
        return self.needle.lower() in " ".join(words).lower()

    def _refill(self) -> None:
        table = self.table
        keep = self.shown[table.cursor_row] if self.shown and table.row_count else self.select
        rows = [r for r in self.records if self._matches(r)]
        if self.sort_by is not None:
            column = self.columns[self.sort_by]
            values = {r.label: column.value(r, self.params[r.label]) for r in rows}
            present = [r for r in rows if values[r.label] not in (_MISSING, None)]
            absent = [r for r in rows if values[r.label] in (_MISSING, None)]
            present.sort(key=lambda r: sort_key(values[r.label]), reverse=self.descending)
            rows = present + absent  # a run without the value is last either way
        table.clear(columns=True)  # the titles too: the sorted one is marked
        for i, column in enumerate(self.columns):
            mark = (" ↓" if self.descending else " ↑") if i == self.sort_by else ""
            table.add_column(Text(column.title + mark, "bold" if mark else ""), key=column.key)
        for record in rows:
            params = self.params[record.label]
            table.add_row(*(c.cell(record, params) for c in self.columns), key=record.label)
        self.shown = [r.label for r in rows]
        if keep in self.shown:
            table.move_cursor(row=self.shown.index(keep), animate=False)
        self._title()

    def _title(self) -> None:
        what = f"sweep {self.sweep}" if self.sweep else "recent runs"
        title = f"Compare · {what} · {len(self.records)} runs"
        if self.sort_by is not None:
            title += f" · by {self.columns[self.sort_by].title} {'↓' if self.descending else '↑'}"
        if self.needle:
            title += f" · filter: {self.needle} ({len(self.shown)} shown)"
        self.table.border_title = Content(title)
