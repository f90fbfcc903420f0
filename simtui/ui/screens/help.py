"""`?`: every key of the screen below, with the action id that `[keys]` in the
config file remaps."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

REMAP = 'Change a key in the config file: [keys] then  action-id = "key"  (e.g. kill = "x").'


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark", "app.pop_screen", "Close", id="help.close")]

    def __init__(self, keys: list[tuple[str, str, str]]) -> None:
        """``keys``: (key as shown, what it does, action id) for each binding."""
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="help"):
            yield Label("Keys", classes="title")
            yield DataTable(show_cursor=False, id="keys")
            yield Label(Text(REMAP), classes="hint")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("key", "does", "action id")
        for key, description, action in self.keys:
            table.add_row(Text(key, "bold"), Text(description), Text(action, "dim"))
