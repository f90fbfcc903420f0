"""`p` on a Slurm cluster: the user's jobs in its queue (squeue), simtui's runs and
any other, with why each one waits; `k` cancels the highlighted one (a simtui run
is killed through its record, any other job is scancelled)."""

from __future__ import annotations

import asyncio
import contextlib

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import DataTable, Footer, Label

from simtui.errors import SimtuiError
from simtui.model import ClusterJob, Record
from simtui.server.protocol import ServerGone
from simtui.textsafe import one_line
from simtui.ui.screens.base import BackScreen
from simtui.ui.screens.confirm import ConfirmScreen

COLUMNS = ("job id", "label", "name", "state", "reason", "partition", "nodes", "elapsed", "limit")
STATE_STYLE = {"RUNNING": "green", "PENDING": "yellow", "COMPLETING": "cyan"}


class ClusterJobsScreen(BackScreen):
    # The id is the dashboard's: `[keys] kill = "x"` moves both (it kills the highlighted job).
    BINDINGS = [
        Binding("k", "cancel_job", "Kill", id="kill",
                tooltip="cancel the highlighted job (asks first): a simtui run is killed, another job scancelled"),
    ]

    def __init__(self, host: str, partition: str | None = None) -> None:
        """``partition``: the row it was opened from; its jobs come first."""
        super().__init__()
        self.host, self.partition = host, partition
        self.jobs: dict[str, ClusterJob] = {}  # by job id, as shown
        self._again = asyncio.Event()  # ask again now, not at the next interval (after a cancel)

    def compose(self) -> ComposeResult:
        yield Label("", id="summary")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="cluster-jobs")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#cluster-jobs", DataTable)
        table.add_columns(*COLUMNS)
        where = f"{self.host}/{self.partition}" if self.partition else self.host
        table.border_title = Content(f"Your jobs on {where}")
        table.focus()
        self.app.spawn(self, self._poll(), group="cluster-jobs", exclusive=True)

    async def _poll(self) -> None:
        """A new listing each interval (the server asks the cluster), until the screen closes."""
        interval = self.app.config.defaults.interval
        while True:
            self._again.clear()
            try:
                await self.app.connect()  # at once where connected
                self._show(await self.app.client.queue(self.host))
            except SimtuiError as err:  # the cluster is down, or the server went away (the app reconnects)
                self.query_one("#summary", Label).update(Text(f"{err}; trying again", "bold red"))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._again.wait(), interval)

    def _order(self, job: ClusterJob) -> tuple:
        """The partition it was opened from first, then by job id (oldest first)."""
        number = job.job_id.split("_")[0]
        return (job.partition != self.partition, int(number) if number.isdigit() else 0, job.job_id)

    def _show(self, found: list[ClusterJob]) -> None:
        table = self.query_one("#cluster-jobs", DataTable)
        was = self.job.job_id if self.job is not None else None
        row = table.cursor_row
        found = sorted(found, key=self._order)
        self.jobs = {job.job_id: job for job in found}
        table.clear()
        for job in found:
            table.add_row(
                Text(job.job_id, justify="right"), Text(job.label or "-", "bold" if job.label else "dim"),
                Text(one_line(job.name), no_wrap=True, overflow="ellipsis"),
                Text(job.state, STATE_STYLE.get(job.state, "")), Text(one_line(job.reason or ""), "dim"),
                Text(job.partition), Text(job.nodes or "-"), Text(job.elapsed, justify="right"),
                Text(job.time_limit, justify="right"), key=job.job_id,
            )
        if was in self.jobs:  # the same job stays highlighted, wherever it moved
            row = table.get_row_index(was)
        table.move_cursor(row=min(row, max(len(found) - 1, 0)), animate=False)
        summary = self.app.hosts[self.host].text(len(self.host))
        mine = sum(job.state == "RUNNING" for job in found)
        summary.append(f"   {len(found)} of your jobs, {mine} running; every {self.app.config.defaults.interval:g}s",
                       "dim")
        self.query_one("#summary", Label).update(summary)

    @property
    def job(self) -> ClusterJob | None:
        """The highlighted job."""
        table = self.query_one("#cluster-jobs", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.jobs.get(key)

    def action_cancel_job(self) -> None:
        job = self.job
        if job is None:
            self.notify("no job selected", severity="warning")
            return
        what = f"{job.label} (Slurm job {job.job_id})" if job.label else f"Slurm job {job.job_id}"
        question = (f"Kill {what} on {self.host}?\n{one_line(job.name)}: {job.state.lower()} "
                    f"in {job.partition}{f', {job.reason}' if job.reason else ''}")

        def cancel(answer: object) -> None:
            if answer is not None:  # Slurm may take a few seconds to end it: say it is under way
                self.notify(f"cancelling {what} on {self.host}", timeout=3)
                self.app.spawn(self.app, self._cancel(job), group="actions")

        self.app.push_screen(ConfirmScreen(question, "Kill"), cancel)

    async def _cancel(self, job: ClusterJob) -> None:
        """Through the server; what came of it is said, an error goes to the app's report."""
        try:
            await self.app.connect()
            record: Record | None = await self.app.client.cancel(self.host, job.job_id)
        except ServerGone:
            raise SimtuiError(f"the simtui server went away before it answered: Slurm job {job.job_id} on "
                              f"{self.host} may be cancelled or not (the list shows)") from None
        finally:
            self._again.set()
        if record is not None:
            self.app.notify(f"{record.label} {record.state.value} on {record.host}")
            self.app.refresh_jobs()
        else:
            self.app.notify(f"Slurm job {job.job_id} cancelled on {self.host}")
