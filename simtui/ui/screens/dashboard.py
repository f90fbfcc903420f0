"""The dashboard: hosts, jobs and the selected job's log (or, with ``m``, its
metrics: one plot per metric, every run of its sweep overlaid); every job key lives
here. ``c`` compares the runs of the selected job's sweep (without a sweep: every
run the jobs table lists)."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, OptionList

from simtui.model import Record
from simtui.ui.screens.cluster_jobs import ClusterJobsScreen
from simtui.ui.screens.compare import CompareScreen
from simtui.ui.screens.confirm import ConfirmScreen, PromptScreen
from simtui.ui.screens.history import HistoryScreen
from simtui.ui.screens.log import LogScreen
from simtui.ui.screens.new_job import NewJobScreen
from simtui.ui.screens.processes import ProcessesScreen
from simtui.ui.screens.record import RecordScreen
from simtui.ui.widgets.hosts import HostsPanel, HostView
from simtui.textsafe import one_line
from simtui.ui.widgets.jobs import JobsTable
from simtui.ui.widgets.log import LogPane
from simtui.ui.widgets.metrics import MetricsPane

AS_BEFORE = ""


class DashboardScreen(Screen):
    BINDINGS = [
        Binding("n", "new", "New", id="new", tooltip="a new job: command, tags, reason, needs, host by fit"),
        Binding("k", "kill", "Kill", id="kill", tooltip="kill the selected job (asks first)"),
        Binding("r", "relaunch", "Relaunch", id="relaunch",
                tooltip="run the selected job again as a new record, here or on another host"),
        Binding("enter", "record", "Record", id="record", tooltip="the selected job's whole record"),
        Binding("l", "log", "Log", id="log", tooltip="the selected job's log on the whole screen"),
        Binding("slash", "filter", "Filter", id="filter", tooltip="filter the jobs (esc clears)"),
        Binding("t", "tag", "Tag", id="tag", tooltip="add tags to the selected job"),
        Binding("h", "history", "History", id="history", tooltip="every record, searchable"),
        Binding("p", "processes", "Processes", id="processes",
                tooltip="the highlighted host's processes, GPU processes too (tab to the hosts)"),
        Binding("m", "metrics", "Metrics", id="metrics",
                tooltip="the selected job's metrics, its sweep overlaid, instead of its log"),
        Binding("right_square_bracket", "metrics_page", "More metrics", id="metrics.next",
                tooltip="the next four metrics of the metrics pane"),
        Binding("c", "compare", "Compare", id="compare",
                tooltip="compare the runs of the selected job's sweep (else: the jobs listed)"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield HostsPanel(self.app.hosts.values(), id="hosts")
        yield Input(placeholder="filter jobs: label, host, state, tag or command", id="filter")
        yield JobsTable(self.app.clock, id="jobs")
        yield LogPane(id="log")
        yield MetricsPane(id="metrics")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(HostsPanel).highlighted = 0
        self.jobs.focus()

    @property
    def jobs(self) -> JobsTable:
        return self.query_one(JobsTable)

    @property
    def log_pane(self) -> LogPane:
        return self.query_one(LogPane)

    @property
    def metrics_pane(self) -> MetricsPane:
        return self.query_one(MetricsPane)

    # -- data in (from the app) ---------------------------------------------------

    # Messages may come before the widgets are there or after they have gone (quitting).

    def show_host(self, view: HostView) -> None:
        for panel in self.query(HostsPanel):
            panel.show(view)

    def forget_host(self, name: str) -> None:
        for panel in self.query(HostsPanel):
            panel.forget(name)

    def show_jobs(self, records: Iterable[Record]) -> None:
        for table in self.query(JobsTable):
            table.show(records)
            self._follow_selected()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._follow_selected()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_record()  # a click on the highlighted row

    def _follow_selected(self) -> None:
        record = self.jobs.record
        label = record.label if record else None
        title = f"Log · {record.label} · {record.host} · {one_line(record.command)}" if record else "Log"
        if self.log_pane.display:  # hidden behind the metrics pane: it follows the row once shown again
            self.log_pane.follow(label, title)
        self.metrics_pane.follow(record)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_processes()

    # -- filter ----------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.jobs.filter(event.value.strip())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.jobs.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("shown")
        self.jobs.filter("")
        self.jobs.focus()

    # -- job keys --------------------------------------------------------------------

    def _selected(self) -> Record | None:
        record = self.jobs.record
        if record is None:
            self.notify("no job selected", severity="warning")
        return record

    def action_new(self) -> None:
        def submit(spec) -> None:
            if spec is not None:
                self.app.act(self.app.client.submit(spec), select=True)

        self.app.push_screen(NewJobScreen([v for v in self.app.hosts.values() if not v.machine], self.app.config.providers), submit)

    def action_kill(self) -> None:
        record = self._selected()
        if record is None:
            return
        if record.state.finished:
            self.notify(f"{record.label} is already {record.state.value}", severity="warning")
            return

        def kill(answer: object) -> None:
            if answer is not None:
                self.app.act(self.app.client.kill(record.label))

        question = f"Kill {record.label} on {record.host}?\n{one_line(record.command)}"
        self.app.push_screen(ConfirmScreen(question, "Kill"), kill)

    def action_relaunch(self) -> None:
        record = self._selected()
        if record is None:
            return
        choices = [(f"as before ({'best fit' if record.needs else record.host})", AS_BEFORE)]
        choices += [(name, name) for name in self.app.hosts]

        def relaunch(host: object) -> None:
            if host is not None:
                self.app.act(self.app.client.rerun(record.label, str(host) or None), select=True)

        question = f"Relaunch {record.label} as a new job?\n{one_line(record.command)}"
        self.app.push_screen(ConfirmScreen(question, "Relaunch", choices), relaunch)

    def action_record(self) -> None:
        record = self._selected()
        if record is not None:
            self.app.push_screen(RecordScreen(record.label))

    def action_log(self) -> None:
        record = self._selected()
        if record is not None:
            self.app.push_screen(LogScreen(record))

    def action_tag(self) -> None:
        record = self._selected()
        if record is None:
            return

        def tag(text: str | None) -> None:
            tags = (text or "").replace(",", " ").split()
            if tags:
                self.app.act(self.app.add_tags(record.label, tags), server=False)

        self.app.push_screen(PromptScreen(f"Tags for {record.label} (space or comma between them)"), tag)

    def action_history(self) -> None:
        self.app.push_screen(HistoryScreen())

    def action_metrics(self) -> None:
        """The metrics pane in place of the log pane, or back."""
        pane, log = self.metrics_pane, self.log_pane
        if log.has_focus:
            self.jobs.focus()
        pane.display = not pane.display
        log.display = not pane.display
        if pane.display:
            pane.poll()
        else:
            self._follow_selected()  # the row chosen meanwhile
        self.refresh_bindings()

    def action_metrics_page(self) -> None:
        self.metrics_pane.next_page()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "metrics_page":  # only while the pane shows more metrics than fit
            pane = self.metrics_pane
            return pane.display and pane.pages > 1
        return True

    def action_compare(self) -> None:
        record = self.jobs.record
        if record is not None and record.sweep:
            self.app.push_screen(CompareScreen(record.sweep, select=record.label))
        else:
            self.app.push_screen(CompareScreen(records=self.jobs.records.values(),
                                               select=record.label if record else None))

    def action_processes(self) -> None:
        """The highlighted host's processes; on any row of a Slurm cluster (known by its
        partitions, or before its first sample by its spec), your jobs in its queue."""
        panel = self.query_one(HostsPanel)
        host = panel.host
        if host is None:
            return
        if self.app.hosts[host].cluster:
            self.app.push_screen(ClusterJobsScreen(host, panel.partition))
        else:
            self.app.push_screen(ProcessesScreen(host))
