"""The new-job form: command, sync, tags, reason, workdir, parameters, needs, and a
host picker ordered by fit (placement over the hosts' latest samples, no I/O), the
best fit preselected. What it submits is the JobSpec that `simtui run` would make.

A Slurm cluster is offered as itself (its jobs go to its default partition, whose
fit it shows) and, once sampled, as ``CLUSTER/PARTITION`` for each partition:
placement scores each partition, and the engine takes such a host name apart.
After the hosts, each ``[[providers]]`` size is offered as a new machine made for
the job (``run --provider P --size S``: the project is synced there)."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, OptionList
from textual.widgets.option_list import Option

from simtui.engine.placement import parse_needs, place
from simtui.engine.project import Project, find_project
from simtui.errors import UsageError
from simtui.model import LOCAL, HostState, JobSpec, Needs, Placement, ProviderSpec
from simtui.params import load_params, params_format, parse_param_args
from simtui.ui.widgets.hosts import HostView

W = TypeVar("W", bound=Widget)

NEEDS = (("cpus", "CPUs", "2"), ("mem", "memory", "4G"), ("gpus", "GPUs", "1"),
         ("gpu_mem", "GPU memory", "1.5G"), ("disk", "disk", "3G"))


def best(placement: Placement) -> str | None:
    """The best fit; with no needs, this machine when it is up (as `simtui run` does)."""
    if placement.needs.is_empty() and LOCAL in placement.scores:
        return LOCAL
    return placement.host


def targets(hosts: Iterable[HostView]) -> dict[str, str]:
    """What the picker offers, each with the name placement scores it by: every host
    (a cluster by its default partition), then each partition of a sampled cluster."""
    found = {}
    for view in hosts:
        default = view.default_partition
        found[view.name] = f"{view.name}/{default}" if default else view.name
        found.update((f"{view.name}/{p.name}",) * 2 for p in view.partitions)
    return found


MACHINE = "machine:"  # a picker entry for a new machine: machine:PROVIDER:SIZE


def machine_entries(providers: Iterable[ProviderSpec]) -> dict[str, str]:
    """Picker id -> its text: each provider's sizes with a price, else its default size."""
    entries = {}
    for provider in providers:
        for size in provider.prices or ([provider.size] if provider.size else []):
            price = provider.prices.get(size)
            cost = f", {price:g}/hour" if price is not None else ""
            entries[f"{MACHINE}{provider.name}:{size}"] = f"+ new {provider.name} machine ({size}{cost})"
    return entries


def ranked(placement: Placement, keys: dict[str, str]) -> list[str]:
    """The best fit, the other targets that fit (tightest first), then the rest in
    their given order. ``keys``: target -> its name in the placement (see targets)."""
    top = best(placement)
    fits = sorted((n for n in keys if keys[n] in placement.scores),
                  key=lambda n: (keys[n] != top, placement.scores[keys[n]], keys[n], n))
    return fits + [n for n in keys if keys[n] not in placement.scores]


class FieldError(UsageError):
    """A UsageError that belongs to one field of the form."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class NewJobScreen(ModalScreen[JobSpec | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="new_job.cancel"),
        Binding("ctrl+s", "submit", "Submit", id="new_job.submit"),
    ]

    def __init__(self, hosts: Iterable[HostView], providers: Iterable[ProviderSpec] = ()) -> None:
        super().__init__()
        self.hosts = {view.name: view for view in hosts}
        self.machines = machine_entries(providers)
        self.keys: dict[str, str] = {}  # what the picker offers: its name in the placement (see targets)
        self.needs = Needs()
        self.placement: Placement | None = None
        self.picked: str | None = None  # a host the user chose by hand
        self.project: Project | None = None  # what "sync" sends: the checkout holding the current directory
        self.no_project = ""  # why there is none
        try:
            self.project = find_project()
        except UsageError as err:
            self.no_project = str(err)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="new-job"):
            yield Label("New job", classes="title")
            with Horizontal(classes="row", id="command-row"):
                yield self._titled(Input(placeholder="e.g. python train.py --lr 0.1", id="command"), "command")
                yield self._titled(self._sync_toggle(), "sync project")
            with Horizontal(classes="row"):
                yield self._titled(Input(placeholder="space or comma between", id="tags"), "tags")
                yield self._titled(Input(placeholder="why this run", id="reason"), "reason")
            with Horizontal(classes="row", id="where"):
                yield self._field("workdir", "workdir", "e.g. ~/proj",
                                  "where it runs (default: home; this folder on local); not with sync")
                yield self._field("params", "params file", "e.g. params.toml",
                                  "a JSON, TOML or YAML file here: the job gets it merged with the overrides")
                yield self._field("overrides", "overrides", "e.g. lr=0.1 epochs=50",
                                  "key=value parameters over the file's, space between")
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
    def _titled(field: W, title: str) -> W:
        field.border_title = title
        return field

    def _field(self, key: str, title: str, example: str, tip: str) -> Input:
        field = self._titled(Input(placeholder=example, id=key), title)
        field.tooltip = tip
        return field

    def _sync_toggle(self) -> Checkbox:
        """On: sync the project first and run in a copy of it (`simtui run --sync`)."""
        if self.project is None:
            toggle = Checkbox("no project", id="sync", disabled=True)
            toggle.tooltip = self.no_project
            return toggle
        toggle = Checkbox(Text(self.project.name), id="sync")
        toggle.tooltip = f"sync {self.project.root} first; the job runs in its own copy of it"
        return toggle

    def on_mount(self) -> None:
        self.query_one("#picker").border_title = "Host (ordered by fit)"
        self.rank()
        self.query_one("#command").focus()

    # -- the picker ---------------------------------------------------------------

    def rank(self) -> None:
        """Order the hosts by fit for the current needs; keep a hand-picked host."""
        candidates = [view.latest for view in self.hosts.values()]
        self.placement = placement = place(self.needs, candidates)
        self.keys = keys = targets(self.hosts.values())
        picker = self.query_one("#picker", OptionList)
        order = ranked(placement, keys)
        width = max(len(n) for n in order)
        picker.clear_options()
        for name in order:
            prompt = Text(no_wrap=True, overflow="ellipsis")
            fits = keys[name] in placement.scores
            prompt.append(f"{'✓' if fits else '✗'} ", "green" if fits else "red")
            prompt.append(name.ljust(width), "bold")
            reason = placement.reasons.get(keys[name], "no sample") if not (fits and self.needs.is_empty()) else "up"
            if keys[name] != name:  # a cluster itself: where its jobs go
                reason = f"default partition {keys[name].split('/', 1)[1]}: {reason}"
            prompt.append(f"  {reason}", "" if fits else "dim")
            down = self._view(name).state is HostState.DOWN
            picker.add_option(Option(prompt, id=name, disabled=down))
        for entry, text in self.machines.items():
            picker.add_option(Option(Text(f"  {text}: made for this job, this project synced there, destroyed "
                                          "after", no_wrap=True, overflow="ellipsis"), id=entry))
        choice = self.picked if self.picked in order or self.picked in self.machines else best(placement)
        if choice not in order and choice not in self.machines:
            choice = None
        if choice is None and self.needs.is_empty():  # no needs: any host that is up, sampled yet or not
            choice = next((name for name in order if self._view(name).state is HostState.UP), None)
        picker.highlighted = [*order, *self.machines].index(choice) if choice is not None else None
        why = placement.why if not self.needs.is_empty() else "no needs given: any host that is up"
        self.query_one("#fit", Label).update(Text(why))

    def _view(self, target: str) -> HostView:
        """The host a picker entry is on (``CLUSTER/PARTITION``: the cluster)."""
        return self.hosts[target.split("/", 1)[0]]

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

    def _refuse(self, text: str, field: str | None = None) -> None:
        """Say what is wrong, and put the cursor where it is."""
        self._error(text)
        if field:
            self.query_one(f"#{field}").focus()

    def _params(self) -> dict:
        """The params file's parameters, then the overrides over them (as `simtui run` merges)."""
        file = self._value("params")
        try:
            params = load_params(file) if file else {}
        except UsageError as err:
            raise FieldError(str(err), "params") from None
        try:
            params.update(parse_param_args(shlex.split(self._value("overrides"))))
        except (ValueError, UsageError) as err:
            raise FieldError(f"overrides: {err}" if isinstance(err, ValueError) else str(err), "overrides") from None
        return params

    def action_submit(self) -> None:
        try:
            argv = tuple(shlex.split(self._value("command")))
        except ValueError as err:
            self._refuse(f"command: {err}", "command")
            return
        if not argv:
            self._refuse("give a command to run", "command")
            return
        try:
            needs = self._needs()
        except UsageError as err:
            self._refuse(str(err))
            return
        sync = self.project is not None and self.query_one("#sync", Checkbox).value
        workdir = self._value("workdir")
        if sync and workdir:
            self._refuse("give sync or a workdir, not both: a synced job runs in its own copy", "workdir")
            return
        try:
            params = self._params()
        except FieldError as err:
            self._refuse(str(err), err.field)
            return
        file = self._value("params")
        option = self.query_one("#picker", OptionList).highlighted_option
        if option is None or option.disabled:
            self._error("pick a host that is up")
            return
        tags = tuple(dict.fromkeys(self._value("tags").replace(",", " ").split()))
        where = dict(host=option.id)
        if option.id in self.machines:
            if self.project is None and not workdir:
                self._refuse(f"a new machine has nothing of the project: {self.no_project}", "workdir")
                return
            provider, size = option.id.removeprefix(MACHINE).split(":", 1)
            where = dict(host=None, provider=provider, size=size)
            sync = not workdir
        placement = self.placement
        why = placement.why if option.id == placement.host else (
            f"{option.id}: picked by hand ({placement.reasons.get(self.keys.get(option.id, option.id), 'no sample')})")
        self.dismiss(JobSpec(argv=argv, **where, needs=needs, tags=tags,
                             reason=self._value("reason") or None, placement=why, workdir=workdir or None,
                             params=params, params_file=file or None, params_format=params_format(file),
                             sync=sync, project_root=str(self.project.root) if sync else None))

    def action_cancel(self) -> None:
        self.dismiss(None)
