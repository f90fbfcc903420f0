"""The new-job form: command, tags, reason, needs, and a host picker ordered by
fit (placement over the hosts' latest samples, no I/O), the best fit preselected."""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList
from textual.widgets.option_list import Option

from simtui.engine.placement import parse_needs, place
from simtui.errors import UsageError
from simtui.model import LOCAL, HostState, JobSpec, Needs, Placement
from simtui.ui.widgets.hosts import HostView

NEEDS = (("cpus", "CPUs", "2"), ("mem", "memory", "4G"), ("gpus", "GPUs", "1"),
         ("gpu_mem", "GPU memory", "1.5G"), ("disk", "disk", "3G"))


def best(placement: Placement) -> str | None:
    """The best fit; with no needs, this machine when it is up (as `simtui run` does)."""
    if placement.needs.is_empty() and LOCAL in placement.scores:
        return LOCAL
    return placement.host


def ranked(placement: Placement, names: Iterable[str]) -> list[str]:
    """The best fit, the other hosts that fit (tightest first), then the rest in their given order."""
    top = best(placement)
    fits = sorted(placement.scores, key=lambda n: (n != top, placement.scores[n], n))
    return fits + [n for n in names if n not in placement.scores]


class NewJobScreen(ModalScreen[JobSpec | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="new_job.cancel"),
        Binding("ctrl+s", "submit", "Submit", id="new_job.submit"),
    ]

    def __init__(self, hosts: Iterable[HostView]) -> None:
        super().__init__()
        self.hosts = {view.name: view for view in hosts}
        self.needs = Needs()
        self.placement: Placement | None = None
        self.picked: str | None = None  # a host the user chose by hand

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="new-job"):
            yield Label("New job", classes="title")
            yield self._titled(Input(placeholder="e.g. python train.py --lr 0.1", id="command"), "command")
            with Horizontal(classes="row"):
                yield self._titled(Input(placeholder="space or comma between", id="tags"), "tags")
                yield self._titled(Input(placeholder="why this run", id="reason"), "reason")
            with Horizontal(classes="row", id="needs"):
                for key, name, example in NEEDS:
                    yield self._titled(Input(placeholder=f"e.g. {example}", id=key, classes="need"), name)
            yield Label("", id="fit")
            yield OptionList(id="picker")
            yield Label("", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Submit (ctrl+s)", variant="primary", id="submit")
                yield Button("Cancel (esc)", id="cancel")

    @staticmethod
    def _titled(field: Input, title: str) -> Input:
        field.border_title = title
        return field

    def on_mount(self) -> None:
        self.query_one("#picker").border_title = "Host (ordered by fit)"
        self.rank()
        self.query_one("#command").focus()

    # -- the picker ---------------------------------------------------------------

    def rank(self) -> None:
        """Order the hosts by fit for the current needs; keep a hand-picked host."""
        candidates = [view.latest for view in self.hosts.values()]
        self.placement = placement = place(self.needs, candidates)
        picker = self.query_one("#picker", OptionList)
        order = ranked(placement, self.hosts)
        width = max(len(n) for n in order)
        picker.clear_options()
        for name in order:
            prompt = Text(no_wrap=True, overflow="ellipsis")
            fits = name in placement.scores
            prompt.append(f"{'✓' if fits else '✗'} ", "green" if fits else "red")
            prompt.append(name.ljust(width), "bold")
            reason = placement.reasons[name] if not (fits and self.needs.is_empty()) else "up"
            prompt.append(f"  {reason}", "" if fits else "dim")
            down = self.hosts[name].state is HostState.DOWN
            picker.add_option(Option(prompt, id=name, disabled=down))
        choice = self.picked if self.picked in order else best(placement)
        picker.highlighted = order.index(choice) if choice is not None else None
        why = placement.why if not self.needs.is_empty() else "no needs given: any host that is up"
        self.query_one("#fit", Label).update(Text(why))

    def refresh_hosts(self) -> None:
        """A host changed state or sent a sample (ignored while the form is not there)."""
        if self.is_mounted and self.query("#picker"):
            self.rank()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.has_focus:
            self.picked = event.option.id

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.picked = event.option.id
        self.action_submit()

    # -- fields ------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.has_class("need"):
            try:
                self.needs = self._needs()
            except UsageError as err:
                self._error(str(err))
                return
            self._error("")
            self.rank()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_submit() if event.button.id == "submit" else self.action_cancel()

    def _value(self, key: str) -> str:
        return self.query_one(f"#{key}", Input).value.strip()

    def _needs(self) -> Needs:
        return parse_needs(*(self._value(key) or None for key, _, _ in NEEDS))

    def _error(self, text: str) -> None:
        self.query_one("#error", Label).update(Text(text, "bold red"))

    def action_submit(self) -> None:
        try:
            argv = tuple(shlex.split(self._value("command")))
            needs = self._needs()
        except (ValueError, UsageError) as err:
            self._error(f"command: {err}" if isinstance(err, ValueError) else str(err))
            return
        if not argv:
            self._error("give a command to run")
            self.query_one("#command").focus()
            return
        option = self.query_one("#picker", OptionList).highlighted_option
        if option is None or option.disabled:
            self._error("pick a host that is up")
            return
        tags = tuple(dict.fromkeys(self._value("tags").replace(",", " ").split()))
        placement = self.placement
        why = placement.why if option.id == placement.host else (
            f"{option.id}: picked by hand ({placement.reasons.get(option.id, 'no sample')})")
        self.dismiss(JobSpec(argv=argv, host=option.id, needs=needs, tags=tags,
                             reason=self._value("reason") or None, placement=why))

    def action_cancel(self) -> None:
        self.dismiss(None)
