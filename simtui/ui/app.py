"""The dashboard app: a client of the simtui server, and the one path every error
takes to the screen.

The server owns the truth (hosts, the queue, followers, job states); the app holds
one Client and, once the first frame is drawn, one worker per stream: the hosts'
views (each posted as a HostUpdated) and the job events (each a cue to read the
records again from the store: reads go straight to SQLite; no log bytes). A job's
log is streamed once, however many panes show it (a LogFeed, see ``log_feed``).
A stream that loses the server reconnects, which starts a new one, and subscribes
again: a lost server is a state, shown, never the end of a loop. With ``live=False``
no worker runs, no server starts, and the tests post those messages with frozen
data themselves.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode
from textual.message import Message
from textual.timer import Timer
from textual.worker import Worker

from simtui.client import Client
from simtui.config import EMBEDDED, Config
from simtui.errors import ConfigError, SimtuiError
from simtui.model import HostSpec, JobState, ProbeResult, Record
from simtui.server.protocol import ServerGone
from simtui.store import Store
from simtui.ui.screens.base import BackScreen
from simtui.ui.screens.compare import CompareScreen
from simtui.ui.screens.confirm import ConfirmScreen, PromptScreen
from simtui.ui.screens.dashboard import DashboardScreen
from simtui.ui.screens.help import HelpScreen
from simtui.ui.screens.history import HistoryScreen
from simtui.ui.screens.new_job import NewJobScreen
from simtui.ui.widgets.hosts import HostView
from simtui.ui.widgets.log import LogFeed, LogPane

RECENT = 200  # finished jobs shown on the dashboard (every active one is)
PENDING = (JobState.QUEUED, JobState.STARTING, JobState.RUNNING)
ENDED_SEVERITY = {
    JobState.SUCCEEDED: "information",
    JobState.FAILED: "error",
    JobState.KILLED: "warning",
    JobState.LOST: "error",
}
RETRY, RETRY_MAX = 1.0, 30.0  # seconds between tries of a stream that fails at once: one capped backoff
COALESCE = 0.05  # seconds: job events closer than this cost one read of the records


class HostUpdated(Message):
    """A host's new sample or state."""

    def __init__(self, result: ProbeResult) -> None:
        super().__init__()
        self.result = result


class HostGone(Message):
    """A machine made for a job was destroyed: its row goes."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class JobsUpdated(Message):
    """The records the dashboard shows, as they are now."""

    def __init__(self, records: list[Record]) -> None:
        super().__init__()
        self.records = records


def config_file_of(config: Config) -> str | None:
    """The file ``config`` was read from (None: the embedded default)."""
    return None if config.path == EMBEDDED else config.path


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
        config_file: str | None = None,
        store: Store | None = None,
        live: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``config_file``: what the server is started with (default: the file
        ``config`` came from). With ``live=False`` no server is started."""
        super().__init__()
        self.config = config
        self.store = store or Store.open()
        self.live = live
        self.client = Client(config_file or config_file_of(config), start=live)
        self.clock = clock
        self.hosts = {spec.name: HostView(spec) for spec in config.hosts}
        self.records: dict[str, Record] = {}
        self.logs: dict[str, LogFeed] = {}  # the log of each job a pane shows, streamed once
        self.dashboard = DashboardScreen()
        self.server_pid: int | None = None  # the server this app last talked to
        self._refresh: Timer | None = None
        self._closed = False  # the store is closed: nothing more to read
        self._unreachable: str | None = None  # why the server could not be reached, as last reported

    def get_default_screen(self) -> DashboardScreen:
        return self.dashboard

    def on_mount(self) -> None:
        self.set_keymap(self.config.keys)
        unknown = sorted(set(self.config.keys) - set(self.binding_ids()))
        if unknown:
            self.report(SimtuiError(f"{self.config.path}: [keys]: unknown action {', '.join(unknown)} "
                                    f"(known: {', '.join(self.binding_ids())})"))
        self.refresh_jobs()
        if self.live:  # once the first frame is on the screen: starting a server takes a while
            self.call_after_refresh(self._start_workers)

    def _start_workers(self) -> None:
        self.spawn(self, self._keep(self.client.samples, self._host_event), group="hosts", exclusive=True)
        self.spawn(self, self._keep(self.client.jobs, self._job_event), group="jobs", exclusive=True)
        self.set_interval(self.config.defaults.interval, self._tick)

    def _tick(self) -> None:
        """Running jobs' runtimes go on (the records change only when the server says so)."""
        self.dashboard.show_jobs(self.records.values())

    async def on_unmount(self) -> None:
        """Stop the workers, then leave the server (it goes on: jobs outlive the screen)."""
        workers = list(self.workers)
        self.workers.cancel_all()
        await asyncio.gather(*(worker.wait() for worker in workers), return_exceptions=True)
        await self.client.close()
        if self._refresh is not None:
            self._refresh.stop()
        self._closed = True
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

    def act(self, work: Awaitable[Record], select: bool = False, server: bool = True) -> None:
        """A request for a key (submit, kill, rerun; tag with ``server=False``): says
        what came of it. ``work`` starts once the server is reached."""

        async def run() -> None:
            try:
                if server:
                    await self.connect()  # after a lost server: the new one takes it
                record = await work
            except ServerGone:
                raise SimtuiError("the simtui server went away before it answered: the jobs table shows "
                                  "whether it was done") from None
            finally:
                if inspect.iscoroutine(work):
                    work.close()  # not awaited where connecting failed: no warning about that
            self.notify(f"{record.label} {record.state.value} on {record.host}")
            if select:
                self.dashboard.jobs.select(record.label)
            self.refresh_jobs()

        self.spawn(self, run(), group="actions")

    async def add_tags(self, label: str, tags: Iterable[str]) -> Record:
        return self.store.add_tags(label, tags)

    def log_feed(self, label: str, view: LogPane) -> LogFeed:
        """``label``'s log for ``view``: the stream already open for another pane, or a
        new one. Give it back with leave_log."""
        feed = self.logs.get(label)
        if feed is None:
            feed = self.logs[label] = LogFeed(self, label)
            feed.start()
        feed.views.add(view)
        return feed

    def leave_log(self, feed: LogFeed, view: LogPane) -> None:
        """``view`` no longer shows ``feed``; the last one to leave ends its stream."""
        feed.views.discard(view)
        if not feed.views:
            feed.stop()
            self.logs.pop(feed.label, None)

    def frozen_log(self, label: str) -> tuple[int, bytes]:
        """What a log pane shows with ``live=False`` (no server to ask): where it
        starts in the log, and the bytes; here the record's last lines."""
        try:
            tail = self.store.get(label).log_tail or ""
        except SimtuiError:
            return 0, b""
        return 0, (tail + "\n" if tail and not tail.endswith("\n") else tail).encode()

    # -- the server ------------------------------------------------------------------

    async def connect(self) -> None:
        """Reach the server (a new one starts where none runs); say so when it is
        another one than before: the old one was killed or stopped."""
        await self.client.reconnect()
        pid = self.client.server_pid
        if self.server_pid is not None and pid != self.server_pid:
            self.notify(f"simtui server restarted (pid {pid}; the old one, {self.server_pid}, was gone)",
                        title="server", severity="warning", timeout=8)
            self.refresh_jobs()
        self.server_pid = pid

    async def _keep(self, subscribe: Callable[[], AsyncIterator[dict[str, Any]]],
                    handle: Callable[[dict[str, Any]], None]) -> None:
        """Subscribe and hand each event to ``handle``, for as long as the app runs:
        through a lost server (reconnect, subscribe again) and any error (reported,
        backed off)."""
        delay = RETRY
        while True:
            heard = False
            try:
                try:
                    await self.connect()
                except SimtuiError as err:  # every stream meets it: said once, not once per stream
                    if self._unreachable != str(err):
                        self._unreachable = str(err)
                        self.report(err)
                    raise ServerGone(str(err)) from None
                self._unreachable = None
                async for event in subscribe():
                    heard = True
                    try:
                        handle(event)
                    except Exception as err:  # noqa: BLE001 - one bad event ends nothing
                        self.report(err)
            except ServerGone:
                pass  # a state, not an error: connect() says so once the new server answers
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - a stream loop never dies
                self.report(err)
            if heard:  # it was working: again at once
                delay = RETRY
            else:
                await asyncio.sleep(delay)
                delay = min(2 * delay, RETRY_MAX)

    def _host_event(self, view: dict[str, Any]) -> None:
        """A host's view; a machine made for a job is known by what the view says."""
        name = view["host"]
        if view.get("gone"):
            self.post_message(HostGone(name))
            return
        try:
            spec = self.config.host(name)
        except ConfigError:
            spec = HostSpec(name, address=view.get("address"), tags=("machine",))
        self.post_message(HostUpdated(ProbeResult.from_dict(view, spec)))

    def _job_event(self, event: dict[str, Any]) -> None:
        """A record the server wrote, a notice of its loops, or (first) the stream's start."""
        if "notice" in event:
            self.notify(str(event["notice"]), title="simtui server", severity="warning", timeout=8)
        elif "attached" in event:  # (again): what changed while no one listened
            self.refresh_jobs()
        elif "record" in event and self._refresh is None:  # read once for a burst of them
            self._refresh = self.set_timer(COALESCE, self._refresh_now)

    def _refresh_now(self) -> None:
        self._refresh = None
        self.refresh_jobs()

    def refresh_jobs(self) -> None:
        """Post the records to show: every active one and the latest finished ones."""
        if self._closed:  # a timer that fired while quitting
            return
        try:
            shown = {r.label: r for r in self.store.find(limit=RECENT)}
            for state in PENDING:
                shown.update((r.label, r) for r in self.store.find(state=state, limit=None))
        except Exception as err:  # noqa: BLE001 - called from timers too: reported, never fatal
            self.report(err)
            return
        self.post_message(JobsUpdated(list(shown.values())))

    # -- messages ------------------------------------------------------------------

    def on_host_updated(self, message: HostUpdated) -> None:
        view = self.hosts.get(message.result.spec.name)
        if view is None:  # a machine made for a job
            view = self.hosts[message.result.spec.name] = HostView(message.result.spec)
        elif view.machine:
            view.spec = message.result.spec  # its address comes once it is up
        if view.update(message.result):
            reason = f": {view.reason}" if view.reason else ""
            self.notify(f"{view.name} is down{reason}", title="host down", severity="warning")
        self.dashboard.show_host(view)
        for screen in self.screen_stack[-1:]:  # none while quitting
            if isinstance(screen, NewJobScreen):
                screen.refresh_hosts()

    def on_host_gone(self, message: HostGone) -> None:
        if self.hosts.pop(message.name, None) is not None:
            self.dashboard.forget_host(message.name)

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
                     PromptScreen, HelpScreen, CompareScreen):
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
