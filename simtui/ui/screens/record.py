"""A job's whole record, as `simtui show` prints it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from simtui.recordfmt import record_text
from simtui.textsafe import sanitize
from simtui.ui.screens.base import BackScreen


class RecordScreen(BackScreen):
    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="record"):
            yield Static(id="record-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#record").border_title = f"Record {self.label}"
        self.app.spawn(self, self._load(), group="record")

    async def _load(self) -> None:
        store = self.app.store
        record = store.get(self.label)
        text = record_text(record, store.events(record.label))
        self.query_one("#record-text", Static).update(Text.from_ansi(sanitize(text)))
        self.query_one("#record").focus()
