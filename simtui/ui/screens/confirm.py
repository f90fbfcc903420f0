"""Small modals: a yes/no question (with an optional choice) and a one-line prompt."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select


class ConfirmScreen(ModalScreen[object]):
    """Dismisses with None when cancelled; else with the choice made (True when
    there is nothing to choose)."""

    BINDINGS = [
        Binding("y", "yes", "Yes", id="confirm.yes"),
        Binding("escape", "no", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, verb: str, choices: list[tuple[str, object]] | None = None) -> None:
        super().__init__()
        self.question, self.verb, self.choices = question, verb, choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.question), classes="question")
            if self.choices:
                yield Select(self.choices, value=self.choices[0][1], allow_blank=False, id="choice")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.verb} (y)", variant="error", id="yes")
                yield Button("Cancel (esc)", id="no")

    def on_mount(self) -> None:
        self.query_one("#choice" if self.choices else "#yes").focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_yes() if event.button.id == "yes" else self.action_no()

    def action_yes(self) -> None:
        self.dismiss(self.query_one(Select).value if self.choices else True)

    def action_no(self) -> None:
        self.dismiss(None)


class PromptScreen(ModalScreen[str | None]):
    """One line of text; None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.question), classes="question")
            yield Input(id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
