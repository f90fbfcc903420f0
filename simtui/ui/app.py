"""The dashboard app: its data sources (a worker per host, one for the jobs) and
the one path every error takes to the screen.

Workers only report: a host watcher posts a HostUpdated per sample or change of
state, the jobs loop does what `simtui watch` does (start queued jobs, reconcile,
copy running jobs' logs) and posts JobsUpdated. With ``live=False`` none of them
runs and the tests post those messages with frozen data themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode
from textual.message import Message
from textual.worker import Worker

from simtui.config import Config
from simtui.engine.jobs import Engine
from simtui.engine.sampler import watch_host
from simtui.engine.watch import watch_once
from simtui.errors import SimtuiError
from simtui.model import HostSpec, JobState, ProbeResult, Record
from simtui.store import Store
from simtui.ui.screens.base import BackScreen
from simtui.ui.screens.confirm import ConfirmScreen, PromptScreen
from simtui.ui.screens.dashboard import DashboardScreen
from simtui.ui.screens.help import HelpScreen
from simtui.ui.screens.history import HistoryScreen
from simtui.ui.screens.new_job import NewJobScreen
from simtui.ui.widgets.hosts import HostView

RECENT = 200  # finished jobs shown on the dashboard (every active one is)
PENDING = (JobState.QUEUED, JobState.STARTING, JobState.RUNNING)
ENDED_SEVERITY = {
    JobState.SUCCEEDED: "information",
    JobState.FAILED: "error",
    JobState.KILLED: "warning",
    JobState.LOST: "error",
}


class HostUpdated(Message):
    """A host's new sample or state."""

    def __init__(self, result: ProbeResult) -> None:
        super().__init__()
        self.result = result


class JobsUpdated(Message):
    """The records the dashboard shows, as they are now."""

    def __init__(self, records: list[Record]) -> None:
        super().__init__()
        self.records = records


class SimtuiApp(App[None]):
    CSS_PATH = "simtui.tcss"
    TITLE = "simtui"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit", tooltip="leave simtui (jobs keep running)"),
        Binding("question_mark", "help", "Keys", id="help", tooltip="this list of keys"),
    ]

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        live: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.config = config
        self.store = store or Store.open()
        self.engine = Engine(config, self.store)
        self.live = live
        self.clock = clock
        self.hosts = {spec.name: HostView(spec) for spec in config.hosts}
        self.records: dict[str, Record] = {}
        self.dashboard = DashboardScreen()
        self._wake = asyncio.Event()

    def get_default_screen(self) -> DashboardScreen:
        return self.dashboard

    def on_mount(self) -> None:
        self.set_keymap(self.config.keys)
        unknown = sorted(set(self.config.keys) - set(self.binding_ids()))
        if unknown:
            self.report(SimtuiError(f"{self.config.path}: [keys]: unknown action {', '.join(unknown)} "
                                    f"(known: {', '.join(self.binding_ids())})"))
        self.refresh_jobs()
        if self.live:  # once the first frame is on the screen: connecting costs CPU
            self.call_after_refresh(self._start_workers)

    def _start_workers(self) -> None:
        for spec in self.config.hosts:
            self.spawn(self, self._watch_host(spec), group=f"host:{spec.name}", exclusive=True)
        self.spawn(self, self._watch_jobs(), group="jobs", exclusive=True)

    async def on_unmount(self) -> None:
        """Stop the workers (and what they run on hosts) before their connections close."""
        workers = list(self.workers)
        self.workers.cancel_all()
        await asyncio.gather(*(worker.wait() for worker in workers), return_exceptions=True)
        await self.engine.close()
        self.store.close()

    # -- workers -------------------------------------------------------------------

    def spawn(self, node: DOMNode, work: Coroutine[Any, Any, Any], group: str, exclusive: bool = False) -> Worker:
        """Run ``work`` in a worker of ``node``; an error it raises goes to report()."""

        async def guarded() -> Any:
            try:
                return await work
            except Exception as err:  # noqa: BLE001 - every error reaches the screen, none ends it
                self.report(err)

        return node.run_worker(guarded(), name=group, group=group, exclusive=exclusive, exit_on_error=False)

    def report(self, err: BaseException) -> None:
        """The one way an error reaches the user: a toast that stays a while."""
        text = str(err) if isinstance(err, SimtuiError) else f"{type(err).__name__}: {err}"
        self.notify(text, title="error", severity="error", timeout=12)

    def act(self, work: Awaitable[Record], select: bool = False) -> None:
        """An engine call for a key (submit, kill, rerun, tag): says what came of it."""

        async def run() -> None:
            record = await work
            self.notify(f"{record.label} {record.state.value} on {record.host}")
            if select:
                self.dashboard.jobs.select(record.label)
            self.refresh_jobs()
            self._wake.set()  # the jobs loop looks again now

        self.spawn(self, run(), group="actions")

    async def add_tags(self, label: str, tags: Iterable[str]) -> Record:
        return self.store.add_tags(label, tags)

    async def _watch_host(self, spec: HostSpec) -> None:
        interval, timeout = self.config.defaults.interval, self.config.defaults.timeout
        async for result in watch_host(spec, interval, timeout):
            self.post_message(HostUpdated(result))

    async def _watch_jobs(self) -> None:
        """What `simtui watch` does, each interval or when a key changed a job."""
        followers: dict[str, asyncio.Task] = {}
        try:
            while True:
                self._wake.clear()
                try:
                    await watch_once(self.engine, followers)
                except SimtuiError as err:
                    self.report(err)
                self.refresh_jobs()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.defaults.interval)
        finally:
            for task in followers.values():
                task.cancel()
            await asyncio.gather(*followers.values(), return_exceptions=True)

    def refresh_jobs(self) -> None:
        """Post the records to show: every active one and the latest finished ones."""
        shown = {r.label: r for r in self.store.find(limit=RECENT)}
        for state in PENDING:
            shown.update((r.label, r) for r in self.store.find(state=state, limit=None))
        self.post_message(JobsUpdated(list(shown.values())))

    # -- messages ------------------------------------------------------------------

    def on_host_updated(self, message: HostUpdated) -> None:
        view = self.hosts[message.result.spec.name]
        if view.update(message.result):
            reason = f": {view.reason}" if view.reason else ""
            self.notify(f"{view.name} is down{reason}", title="host down", severity="warning")
        self.dashboard.show_host(view)
        for screen in self.screen_stack[-1:]:  # none while quitting
            if isinstance(screen, NewJobScreen):
                screen.refresh_hosts()

    def on_jobs_updated(self, message: JobsUpdated) -> None:
        before, self.records = self.records, {r.label: r for r in message.records}
        for record in message.records:
            old = before.get(record.label)
            if old is not None and not old.state.finished and record.state.finished:
                code = f" (exit {record.exit_code})" if record.exit_code is not None else ""
                self.notify(f"{record.label} {record.state.value}{code} on {record.host}: "
                            f"{record.command[:60]}", title="job ended", severity=ENDED_SEVERITY[record.state])
        self.dashboard.show_jobs(message.records)

    # -- keys ----------------------------------------------------------------------

    def binding_ids(self) -> list[str]:
        """Every action id a `[keys]` table may remap."""
        ids = []
        for node in (SimtuiApp, DashboardScreen, BackScreen, HistoryScreen, NewJobScreen, ConfirmScreen,
                     PromptScreen, HelpScreen):
            ids += [b.id for b in node.BINDINGS if isinstance(b, Binding) and b.id]
        return ids

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        keys = []
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if binding.description and (binding.show or binding.id):
                keys.append((self.get_key_display(binding), binding.tooltip or binding.description, binding.id or ""))
        self.push_screen(HelpScreen(keys))
