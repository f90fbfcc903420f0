"""Notifications through apprise: status, errors and figures, where the user looks.

Events: ``started``, ``succeeded``, ``failed``, ``killed``, ``lost`` (jobs) and
``host_down``, ``host_up``. Who hears one: every URL of ``[notify] urls`` for the
events in ``[notify] on``, and each ``[[notify.route]]`` URL for its events (its
own ``on``, else ``[notify] on``) when the job, or the host, has one of the
route's tags (a route without tags hears every job and host).

The message: label, host, state, duration, command and tags as #hashtags, the
run's sweep as a #hashtag too; on a failure the last lines of output. Attached
where the service takes files: at a job's end a figure of its metrics (a subplot
a metric, by step; simtui.engine.plots, where matplotlib is installed) and its
output images (png, jpg, svg: at most MAX_IMAGES of at most MAX_IMAGE_BYTES
each). The end of the last run of a sweep (none of it left queued, starting or
running) also ends the sweep: that run's message says so and carries a figure
of the whole sweep's metrics, one line a run. That is told once a sweep (and
again after a rerun added runs to it): the first process to see it claims it.

Exactly once: whichever simtui process sees an event first claims it in the
records database (simtui.store.notifications) and only that process sends it.
Sending runs in a daemon thread per URL, with ``[notify] retries`` more tries
after doubling waits from ``[notify] backoff`` seconds, so a receiver that is
down or slow never blocks the event loop; nothing here raises into the caller.
How it went lands on the claimed row and in the record's events (kind
``notify``); a failure also goes to ``report`` (the CLI prints it, the dashboard
shows it). Every URL, reason and log line about a send goes through
``simtui.secret.mask`` first (after apprise's own privacy form, where apprise can
read the URL), and so do the command and output lines in a message.
``Engine.close`` waits for sends in flight, at most DRAIN_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import posixpath
import re
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simtui.config import Config
from simtui.engine import plots
from simtui.hosts import scripts
from simtui.hosts import Host
from simtui.hosts.base import home_relative
from simtui.hosts import jobs as remote
from simtui.model import HostState, JobState, Machine, Record, to_dict
from simtui.recordfmt import duration
from simtui.secret import mask
from simtui.store import notifications as claims
from simtui.store.records import Store
from simtui.textsafe import sanitize

JOB_EVENTS = {
    JobState.RUNNING: "started",
    JobState.SUCCEEDED: "succeeded",
    JobState.FAILED: "failed",
    JobState.KILLED: "killed",
    JobState.LOST: "lost",
}
KINDS = {  # apprise notify types
    "started": "info", "succeeded": "success", "failed": "failure", "killed": "warning",
    "lost": "failure", "host_down": "failure", "host_up": "success", "test": "info", "machine_stuck": "failure",
}
WITH_OUTPUT = ("failed", "killed", "lost")  # events whose message carries the last lines
ENDS = ("succeeded", "failed", "killed", "lost")  # events whose message carries the figure of the metrics
SWEEP_ENDED = "sweep_ended"  # the claim of telling that a sweep ended (`simtui notify list`)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg")
MAX_IMAGES = 3
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MESSAGE_LINES = 10  # lines of output in a failure message
TAIL_BYTES = 16 * 1024  # read from the host for them when the record has none yet
ATTEMPT_TIMEOUT = 60.0  # seconds one try may take (apprise's own socket timeouts are 4 s)
DRAIN_TIMEOUT = 30.0  # seconds Engine.close waits for sends in flight
HOST_TIMEOUT = 20.0  # seconds to look for and fetch output images
PLOT_TIMEOUT = 30.0  # seconds to draw a figure of metrics (the first one imports matplotlib)
INVALID = "not a valid apprise URL"
GAVE_UP = "simtui exited before the receiver answered"
_COLOUR = re.compile(r"\x1b\[[0-9;:]*m")
log = logging.getLogger("simtui.notify")


@dataclass(frozen=True)
class Delivery:
    """How sending to one URL went. ``url`` is as apprise shows it: secrets masked."""

    url: str
    ok: bool
    attempts: int
    reason: str | None = None

    @property
    def invalid(self) -> bool:
        return self.reason == INVALID

    def __str__(self) -> str:
        if self.ok:
            return f"{self.url}: sent"
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        return f"{self.url}: not sent after {tries}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


@dataclass(frozen=True)
class Notice:
    """One message: what happened, to whom, and what it says."""

    event: str
    title: str
    body: str
    label: str | None = None
    host: str | None = None

    @property
    def kind(self) -> str:
        return KINDS.get(self.event, "info")


@dataclass(frozen=True)
class SweepEnd:
    """A sweep whose last run ended: its runs, oldest first, their states and
    parameters; ``key``: the claim of telling it."""

    sweep: str
    key: str
    labels: tuple[str, ...]
    states: tuple[str, ...]
    params: dict[str, dict[str, Any]]

    def summary(self) -> str:
        """``3 runs: 2 succeeded, 1 failed``."""
        counts = {state: self.states.count(state) for state in dict.fromkeys(self.states)}
        runs = f"{len(self.labels)} run{'s' if len(self.labels) != 1 else ''}"
        return f"{runs}: " + ", ".join(f"{n} {state}" for state, n in counts.items())


@dataclass(frozen=True)
class Outcome:
    """What became of one notice: a delivery per URL, or the error that stopped it."""

    notice: Notice
    deliveries: tuple[Delivery, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(d.ok for d in self.deliveries)

    @property
    def status(self) -> str:
        sent = sum(d.ok for d in self.deliveries)
        if self.ok:
            return claims.SENT
        return claims.PARTIAL if sent else claims.FAILED

    def lines(self) -> list[str]:
        """One line a URL, as kept in the record's events."""
        if self.error is not None:
            return [f"{self.notice.event}: {self.error}"]
        return [f"{self.notice.event}: {d}" for d in self.deliveries]

    def __str__(self) -> str:
        about = self.notice.label or f"host {self.notice.host}"
        return f"{about}: " + "; ".join(self.lines())


Report = Callable[[Outcome], None]


class Notifier:
    """Tells the configured URLs about job and host events; a no-op without URLs.

    ``hosts`` (a host's name -> its connection) lets it fetch a job's output images
    and last lines; ``report`` hears every outcome that was not a full success.
    """

    def __init__(
        self,
        config: Config,
        store: Store | None = None,
        hosts: Callable[[str], Awaitable[Host]] | None = None,
        report: Report | None = None,
    ) -> None:
        self.config = config
        self.settings = config.notify
        self.store = store
        self.hosts = hosts
        self.report = report
        self._tasks: set[asyncio.Task] = set()
        self._host_states: dict[str, HostState] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.settings.urls or self.settings.routes)

    def urls(self) -> list[str]:
        """Every configured URL, once."""
        return list(dict.fromkeys([*self.settings.urls, *(r.url for r in self.settings.routes)]))

    def destinations(self, event: str, tags: Iterable[str]) -> list[str]:
        """The URLs that hear ``event`` of a job (or host) with ``tags``."""
        tags = set(tags)
        urls = list(self.settings.urls) if event in self.settings.on else []
        for route in self.settings.routes:
            on = self.settings.on if route.on is None else route.on
            if event in on and (not route.tags or tags & set(route.tags)):
                urls.append(route.url)
        return list(dict.fromkeys(urls))

    # -- what the engine, `simtui watch` and the dashboard call ------------------

    def job(self, record: Record) -> None:
        """A job's state changed (to ``record.state``): claim its event and send it
        in the background. Several calls for one event send it once."""
        event = JOB_EVENTS.get(record.state)
        if event is None or self.store is None:
            return
        urls = self.destinations(event, record.tags)
        if not urls:
            return
        notice = Notice(event, "", "", label=record.label, host=record.host)
        self._claim_and_send(notice, urls, lambda: claims.claim_job(self.store.db, record.label, record.host, event),
                             lambda key: self._send_job(key, event, record, urls))

    def host_state(self, host: str, state: HostState | str, reason: str | None = None) -> None:
        """This process saw ``host`` up or down (other states are ignored): on a
        change from what was last recorded, host_down / host_up."""
        state = HostState(state)
        if state not in (HostState.UP, HostState.DOWN) or self._host_states.get(host) is state:
            return
        self._host_states[host] = state
        if self.store is None:
            return
        tags = self._host_tags(host)
        if not (self.destinations("host_down", tags) or self.destinations("host_up", tags)):
            return
        event = "host_down" if state is HostState.DOWN else "host_up"
        urls = self.destinations(event, tags)
        notice = host_notice(event, host, reason, tags)
        self._claim_and_send(notice, urls, lambda: claims.claim_host(self.store.db, host, event, bool(urls)),
                             lambda key: self._send(key, notice, urls))

    def machine_stuck(self, machine: Machine, error: str) -> None:
        """A machine made for a job could not be destroyed: told once, as it costs
        until someone acts (simtui tries again meanwhile)."""
        urls = self.destinations("machine_stuck", ("machine",))
        if self.store is None or not urls:
            return
        lines = [f"machine: {machine.name} ({machine.provider}, {machine.size})", f"job: {machine.label}",
                 f"why: {plain(error)}"]
        if machine.price is not None:
            lines.append(f"price: {machine.price:g}/hour, {machine.cost(time.time()):.4f} so far")
        lines.append(f"simtui tries again every 30 s; or destroy it yourself, then "
                     f"`simtui machines --forget {machine.name}`")
        notice = Notice("machine_stuck", f"simtui: machine {machine.name} could not be destroyed", "\n".join(lines),
                        label=machine.label, host=machine.name)
        self._claim_and_send(notice, urls, lambda: claims.claim_machine(self.store.db, machine.name, machine.label,
                                                                         "machine_stuck"),
                             lambda key: self._send(key, notice, urls))

    async def test(self) -> list[Delivery]:
        """Send a test message to every configured URL, one try each; no claim."""
        notice = Notice("test", "simtui: test notification",
                        f"A test message from simtui on {socket.gethostname()}: notifications work.")
        return list(await asyncio.gather(*(self._deliver(url, notice, (), attempts=1) for url in self.urls())))

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Wait for sends in flight, at most ``timeout`` s; the rest are given up
        (and recorded as not sent)."""
        while self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                return

    # -- claiming and sending ----------------------------------------------------

    def _claim_and_send(self, notice: Notice, urls: Sequence[str], claim: Callable[[], str | None],
                        send: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        """Claim in the database; when this process won, send in a background task.
        Never raises: a failure to claim is reported and logged."""
        try:
            loop = asyncio.get_running_loop()
            key = claim()
            if key is None or not urls:
                return
            task = loop.create_task(send(key))
        except Exception as err:  # noqa: BLE001 - a notification must never break a job's bookkeeping
            log.warning("notify %s: %s", notice.event, mask(str(err)))
            self._tell(Outcome(notice, error=mask(f"not sent: {err}")))
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_job(self, key: str, event: str, record: Record, urls: Sequence[str]) -> None:
        with tempfile.TemporaryDirectory(prefix="simtui-notify-") as tmp:
            ended: SweepEnd | None = None
            try:
                images, tail = await self._from_host(record, event, Path(tmp))
                ended = self._sweep_end(record, event)
                figures = await self._figures(record, event, ended, Path(tmp) / "figures")
            except asyncio.CancelledError:
                self._finish(key, Outcome(job_notice(event, record, sweep=ended), error=f"not sent: {GAVE_UP}"),
                             also=[ended.key] if ended else [])
                raise
            await self._send(key, job_notice(event, record, record.log_tail or tail, sweep=ended), urls,
                             [*figures, *images], also=[ended.key] if ended else [])

    async def _send(self, key: str, notice: Notice, urls: Sequence[str], files: Sequence[Path] = (),
                    also: Sequence[str] = ()) -> None:
        try:
            deliveries = await asyncio.gather(*(self._deliver(url, notice, files) for url in urls))
            outcome = Outcome(notice, tuple(deliveries))
        except asyncio.CancelledError:
            self._finish(key, Outcome(notice, error=f"not sent: {GAVE_UP}"), also)
            raise
        self._finish(key, outcome, also)

    def _finish(self, key: str, outcome: Outcome, also: Sequence[str] = ()) -> None:
        """Keep the outcome on the claimed row (and in the record's events), and on
        the rows of ``also`` (a sweep's end, told in the same message)."""
        try:
            claims.finish(self.store.db, key, outcome.status, "; ".join(outcome.lines()),
                          outcome.notice.label, outcome.lines())
            for other in also:
                claims.finish(self.store.db, other, outcome.status, "; ".join(outcome.lines()), None, ())
        except Exception as err:  # noqa: BLE001
            log.warning("notify: cannot record the outcome of %s: %s", key, mask(str(err)))
        self._tell(outcome)

    def _tell(self, outcome: Outcome) -> None:
        if outcome.ok or self.report is None:
            return
        try:
            self.report(outcome)
        except Exception as err:  # noqa: BLE001
            log.warning("notify: report failed: %s", mask(str(err)))

    async def _deliver(self, url: str, notice: Notice, files: Sequence[Path], attempts: int | None = None) -> Delivery:
        """Send to one URL; up to ``attempts`` tries (default: 1 + retries), waiting
        ``backoff`` s after the first failure and twice as long after each next one."""
        attempts = attempts or self.settings.retries + 1
        delay = self.settings.backoff
        shown, reason = _masked(url), "no attempt made"
        for attempt in range(1, attempts + 1):
            try:
                ok, reason, shown = await asyncio.wait_for(
                    _in_thread(send_once, url, notice, [str(f) for f in files]), ATTEMPT_TIMEOUT
                )
            except TimeoutError:
                ok, reason = False, f"no answer within {ATTEMPT_TIMEOUT:.0f}s"
            except Exception as err:  # noqa: BLE001 - apprise itself broke: a failed try
                ok, reason = False, f"{type(err).__name__}: {err}"
            reason = mask(reason) if reason else reason
            if ok:
                return Delivery(shown, True, attempt)
            if reason == INVALID or attempt == attempts:
                return Delivery(shown, False, attempt, reason)
            await asyncio.sleep(delay)
            delay *= 2
        return Delivery(shown, False, attempts, reason)

    # -- what comes from the job's host ---------------------------------------------

    async def _from_host(self, record: Record, event: str, tmp: Path) -> tuple[list[Path], str | None]:
        """The job's output images (copied into ``tmp``) and, for a failure whose
        record has no last lines yet, those lines. Nothing when the host is away."""
        if self.hosts is None or record.pid is None or event == "started":
            return [], None
        try:
            host = await asyncio.wait_for(self.hosts(record.host), HOST_TIMEOUT)
            tail = None
            if event in WITH_OUTPUT and not record.log_tail:
                tail = await asyncio.wait_for(_host_tail(host, record), HOST_TIMEOUT)
            images = await asyncio.wait_for(_fetch_images(host, record, tmp), HOST_TIMEOUT) \
                if self.settings.attach else []
            return images, tail
        except Exception as err:  # noqa: BLE001 - send the words without the figures
            log.info("notify %s: nothing from %s: %s", record.label, record.host, mask(str(err)))
            return [], None

    # -- sweeps and figures of metrics ------------------------------------------------

    def _sweep_end(self, record: Record, event: str) -> SweepEnd | None:
        """At the end of a run of a sweep none of whose runs is left to run (queued,
        starting, running): the sweep, when this process is the first to claim
        telling that it ended; else None."""
        if record.sweep is None or event not in ENDS:
            return None
        try:
            runs = list(self.store.select(("label", "state", "params"), sweep=record.sweep, limit=None))[::-1]
            if not runs or any(not JobState(state).finished for _, state, _ in runs):
                return None
            key = claims.claim_sweep(self.store.db, record.sweep, record.host, SWEEP_ENDED, len(runs))
        except Exception as err:  # noqa: BLE001 - the run's own message goes out all the same
            log.warning("notify %s: sweep %s: %s", record.label, record.sweep, mask(str(err)))
            return None
        if key is None:
            return None
        return SweepEnd(record.sweep, key, tuple(label for label, _, _ in runs), tuple(state for _, state, _ in runs),
                        {label: json.loads(params) if params else {} for label, _, params in runs})

    async def _figures(self, record: Record, event: str, ended: SweepEnd | None, folder: Path) -> list[Path]:
        """PNG figures of the metrics, for the end of a job: the job's own, and where
        its end ended its sweep, the sweep's. None without matplotlib, without
        metrics, or where ``[notify] attach`` is off; a figure that fails is left out."""
        if event not in ENDS or not self.settings.attach:
            return []
        wanted = [(f"metrics-{record.label}.png", [record.label], f"{record.label} {event} on {record.host}", None)]
        if ended is not None:
            wanted.append((f"sweep-{ended.sweep}.png", list(ended.labels), f"sweep {ended.sweep}: {ended.summary()}",
                           plots.run_names(ended.params)))
        figures = []
        for name, labels, title, names in wanted:
            try:
                series = self.store.series(labels)
                if not any(series.values()):
                    continue
                folder.mkdir(exist_ok=True)
                drawn = await asyncio.wait_for(_in_thread(plots.metrics_png, series, folder / name, title, names),
                                               PLOT_TIMEOUT)
            except Exception as err:  # noqa: BLE001 - send the words without the figure
                log.warning("notify %s: no figure of the metrics: %s", record.label, mask(str(err)))
                continue
            if drawn is not None:
                figures.append(drawn)
        return figures

    def _host_tags(self, host: str) -> tuple[str, ...]:
        return next((h.tags for h in self.config.hosts if h.name == host), ())


# -- the messages -------------------------------------------------------------------


def hashtags(tags: Iterable[str]) -> str:
    """``#tag`` for each tag; characters a hashtag cannot hold become ``_``."""
    out = []
    for tag in tags:
        word = re.sub(r"\W+", "_", tag).strip("_")
        if word:
            out.append(f"#{word}")
    return " ".join(dict.fromkeys(out))


def plain(text: str) -> str:
    """Text safe for a message: no terminal controls, no colours, no secrets."""
    return mask(_COLOUR.sub("", sanitize(text)))


def job_notice(event: str, record: Record, tail: str | None = None, sweep: SweepEnd | None = None) -> Notice:
    """The message of a job's event; ``sweep``: its end ended that sweep."""
    state = record.state.value if event != "started" else "running"
    outcome = state + (f" (exit code {record.exit_code})" if record.exit_code is not None else "")
    lines = [
        f"label: {record.label}",
        f"host: {record.host}",
        f"state: {outcome}",
    ]
    if record.duration is not None:
        lines.append(f"duration: {duration(record.duration)}")
    lines.append(f"command: {plain(record.command)}")
    if record.reason:
        lines.append(f"reason: {plain(record.reason)}")
    if record.tags:
        lines.append(f"tags: {hashtags(record.tags)}")
    if record.sweep:
        ended = f" ended, {sweep.summary()}" if sweep is not None else ""
        lines.append(f"sweep: {hashtags([record.sweep])}{ended}")
    tail = tail if tail is not None else record.log_tail
    if event in WITH_OUTPUT and tail:
        last = plain(tail).rstrip("\n").splitlines()[-MESSAGE_LINES:]
        lines += ["", "last lines of output:", *last]
    title = f"simtui: {record.label} {event} on {record.host}"
    return Notice(event, title, "\n".join(lines), label=record.label, host=record.host)


def host_notice(event: str, host: str, reason: str | None, tags: Iterable[str] = ()) -> Notice:
    state = "down" if event == "host_down" else "up"
    lines = [f"host: {host}", f"state: {state}"]
    if reason and event == "host_down":
        lines.append(f"reason: {plain(reason)}")
    if tags:
        lines.append(f"tags: {hashtags(tags)}")
    return Notice(event, f"simtui: host {host} {state}", "\n".join(lines), host=host)


# -- the job's host: images and last lines -------------------------------------------------


async def _fetch_images(host: Host, record: Record, tmp: Path) -> list[Path]:
    """Copy up to MAX_IMAGES of the job's images (each at most MAX_IMAGE_BYTES) into ``tmp``."""
    listed = [
        str(o["path"]) for o in record.outputs
        if isinstance(o, dict) and str(o.get("path", "")).lower().endswith(IMAGE_SUFFIXES)
    ]
    jobs_dir = remote.job_dir(record.jobs_dir or "~/.simtui/jobs", record.label)
    workdir = home_relative(record.workdir or "~")
    result = await host.run(["sh", "-c", scripts.FIND_IMAGES, "sh", jobs_dir, workdir, *listed])
    found: dict[str, int] = {}
    for line in result.stdout.splitlines():
        size, _, path = line.partition("\t")
        if size.isdigit() and 0 < int(size) <= MAX_IMAGE_BYTES:
            found.setdefault(posixpath.normpath(path), int(size))
    paths = [p for p in found if p.lower().endswith(IMAGE_SUFFIXES)][:MAX_IMAGES]
    copies = []
    for i, path in enumerate(paths):
        local = tmp / str(i) / posixpath.basename(path)
        local.parent.mkdir()
        await host.get(path, local)
        if local.stat().st_size <= MAX_IMAGE_BYTES:
            copies.append(local)
    return copies


async def _host_tail(host: Host, record: Record) -> str | None:
    """The last lines of the job's log, read on its host."""
    job = (await remote.status(host, record.jobs_dir or "~/.simtui/jobs", [record.label]))[record.label]
    chunks = [c async for c in remote.read(host, record.jobs_dir or "~/.simtui/jobs", record.label,
                                           max(job.log_size - TAIL_BYTES, 0))]
    text = b"".join(chunks).decode("utf-8", "replace").rstrip("\n")
    return "\n".join(text.splitlines()[-MESSAGE_LINES:]) or None


# -- apprise, in a daemon thread ------------------------------------------------------


def send_once(url: str, notice: Notice, files: Sequence[str]) -> tuple[bool, str | None, str]:
    """One try at sending ``notice`` to ``url``: (sent, why not, the URL as shown).

    Blocking: run it in a thread. What apprise logged at WARNING or above while
    sending is the reason for a failure (apprise 1 logs it in this thread).
    """
    import apprise

    with _captured() as messages:
        server = apprise.Apprise.instantiate(url)
        if server is None:
            return False, INVALID, _masked(url)
        shown = mask(server.url(privacy=True).split("?", 1)[0])
        sender = apprise.Apprise()
        sender.add(server)
        result = sender.notify(
            body=notice.body, title=notice.title, notify_type=notice.kind,
            body_format=apprise.NotifyFormat.TEXT, attach=list(files) or None,
        )
    if result:
        return True, None, shown
    if hasattr(result, "logs"):  # apprise 2: the call's own log, whichever thread sent
        messages = [entry.message for entry in result.logs()]
    return False, mask(" ".join(dict.fromkeys(messages))) or "the service did not accept it", shown


def _masked(url: str) -> str:
    """A URL apprise could not read, shown without what may be a secret (its
    query, where apprise URLs carry options and tokens, is left off)."""
    scheme, sep, rest = url.partition("://")
    return mask(f"{scheme}://{rest.split('?', 1)[0]}") if sep else "(not a URL)"


class _ThreadLog(logging.Handler):
    """Collects apprise's warnings per thread, so that each send knows its own.
    Being a handler on the ``apprise`` logger, it also keeps them off stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lists: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        messages = self.lists.get(record.thread or 0)
        if messages is not None:
            messages.append(record.getMessage())


_THREAD_LOG = _ThreadLog()
_THREAD_LOG_LOCK = threading.Lock()


@contextlib.contextmanager
def _captured() -> Iterator[list[str]]:
    with _THREAD_LOG_LOCK:
        logger = logging.getLogger("apprise")
        if _THREAD_LOG not in logger.handlers:
            logger.addHandler(_THREAD_LOG)
            if logger.getEffectiveLevel() > logging.WARNING:
                logger.setLevel(logging.WARNING)
    messages: list[str] = []
    ident = threading.get_ident()
    _THREAD_LOG.lists[ident] = messages
    try:
        yield messages
    finally:
        _THREAD_LOG.lists.pop(ident, None)


def _in_thread(fn: Callable[..., Any], *args: Any) -> asyncio.Future:
    """``fn(*args)`` in a daemon thread: one that hangs never holds up the loop nor
    the process's exit (asyncio.to_thread's executor is joined at exit)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as err:  # noqa: BLE001 - handed to the awaiting task
            result, error = None, err
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="simtui-notify", daemon=True).start()
    return future
