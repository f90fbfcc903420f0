"""Every record, newest first, searchable (full text over command, tags, reason, notes);
the newest SHOWN, read from their small columns alone."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import DataTable, Footer, Input

from simtui.recordfmt import duration, when
from simtui.ui.screens.base import BackScreen
from simtui.ui.screens.record import RecordScreen
from simtui.textsafe import one_line
from simtui.ui.widgets.jobs import STATE_STYLE

SHOWN = 500


class HistoryScreen(BackScreen):
    BINDINGS = [Binding("slash", "search", "Search", id="history.search")]

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search command, tags, reason and notes (enter: to the list)", id="search")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="history")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("label", "state", "host", "created", "duration", "tags", "command")
        self._search("")
        table.focus()

    def action_search(self) -> None:
        self.query_one(Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._search(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(RecordScreen(str(event.row_key.value)))

    def _search(self, words: str) -> None:
        self.app.spawn(self, self._fill(words.strip()), group="search", exclusive=True)

    async def _fill(self, words: str) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for r in self.app.store.listed(search=words or None, limit=SHOWN):  # the small columns only
            table.add_row(
                Text(r.label), Text(r.state.value, STATE_STYLE[r.state]), Text(r.host),
                Text(when(r.created, seconds=False) or ""), Text(duration(r.duration) or "", justify="right"),
                Text(one_line(", ".join(r.tags)), "cyan"), Text.from_ansi(one_line(r.command, colour=True)),
                key=r.label,
            )
        found = f"{table.row_count}{'+' if table.row_count == SHOWN else ''} records"
        table.border_title = Content(f"History · {found}" + (f" matching {words!r}" if words else ""))
