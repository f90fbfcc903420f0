"""What the full screens over the dashboard share."""

from __future__ import annotations

from textual.binding import Binding
from textual.screen import Screen


class BackScreen(Screen):
    """A full screen over the dashboard; escape goes back to it."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="back")]
