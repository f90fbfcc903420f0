"""One job's log on the whole screen, following live."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer

from simtui.model import Record
from simtui.ui.screens.base import BackScreen
from simtui.textsafe import one_line
from simtui.ui.widgets.log import LogPane


class LogScreen(BackScreen):
    def __init__(self, record: Record) -> None:
        super().__init__()
        self.record = record

    def compose(self) -> ComposeResult:
        yield LogPane(id="full-log")  # the same lines as the dashboard's pane: one stream
        yield Footer()

    def on_mount(self) -> None:
        r = self.record
        pane = self.query_one(LogPane)
        pane.follow(r.label, f"Log · {r.label} · {r.host} · {one_line(r.command)}")
        pane.focus()
