"""The jobs table: label, host, state, tags, runtime, command; running jobs first."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rich.text import Text
from textual.binding import Binding
from textual.content import Content
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from simtui.model import JobState, Record
from simtui.recordfmt import duration
from simtui.textsafe import one_line

COLUMNS = ("label", "host", "state", "tags", "runtime", "command")
COMMAND_WIDTH = 100  # characters of a command shown in the table
STATE_ORDER = {JobState.RUNNING: 0, JobState.STARTING: 1, JobState.QUEUED: 2}
STATE_STYLE = {
    JobState.QUEUED: "blue",
    JobState.STARTING: "cyan",
    JobState.RUNNING: "bold green",
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "bold red",
    JobState.KILLED: "yellow",
    JobState.LOST: "magenta",
}


def runtime(record: Record, now: float) -> str:
    if record.state.finished or record.started is None:
        return duration(record.duration) or ""
    return duration(max(now - record.started, 0.0)) or ""


def command(record: Record) -> Text:
    """The command; for a queued job, why it waits (its scheduler's reason, a host down)."""
    text = Text.from_ansi(one_line(record.command, colour=True), no_wrap=True)
    text.truncate(COMMAND_WIDTH, overflow="ellipsis")
    if record.state is JobState.QUEUED and (record.log_tail or "").startswith("waiting: "):
        text.append(f"  {one_line(record.log_tail.removeprefix('waiting: '))}", "dim italic")
    return text


def where(record: Record) -> str:
    """Its host, and the partition there where its scheduler placed it (CLUSTER/PARTITION)."""
    partition = (record.scheduler or {}).get("partition")
    return f"{record.host}/{partition}" if partition else record.host


def cells(record: Record, now: float) -> tuple[Text, ...]:
    state = record.state.value + (f" {record.exit_code}" if record.exit_code not in (None, 0) else "")
    return (
        Text(record.label),
        Text(one_line(where(record))),
        Text(state, STATE_STYLE[record.state]),
        tags_cell(record),
        Text(runtime(record, now), justify="right"),
        command(record),
    )


def tags_cell(record: Record) -> Text:
    """Its sweep (the id's start: `/` with it shows the whole sweep), then its tags."""
    text = Text(f"{record.sweep[:8]} ", "magenta") if record.sweep else Text()
    text.append(one_line(", ".join(record.tags)), "cyan")
    return text


def matches(record: Record, needle: str) -> bool:
    if not needle:
        return True
    haystack = " ".join([record.label, record.host, record.state.value, record.command, *record.tags,
                         record.sweep or ""])
    return needle.lower() in haystack.lower()


class JobsTable(DataTable, inherit_bindings=False):
    """Enter belongs to the screen (the record view), so DataTable's is left out."""

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "scroll_top", "Top", show=False),
        Binding("end", "scroll_bottom", "Bottom", show=False),
    ]

    def __init__(self, clock: Callable[[], float], **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.clock = clock
        self.records: dict[str, Record] = {}
        self.needle = ""
        self._shown: list[str] = []
        self._cells: dict[str, tuple[Text, ...]] = {}
        self._want: str | None = None
        for name in COLUMNS:
            self.add_column(name, key=name)
        self._title()

    @property
    def label(self) -> str | None:
        """The highlighted job's label."""
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value

    @property
    def record(self) -> Record | None:
        label = self.label
        return self.records.get(label) if label else None

    def show(self, records: Iterable[Record]) -> None:
        self.records = {r.label: r for r in records}
        self._refill()

    def select(self, label: str) -> None:
        """Move the cursor to ``label`` now, or once it is shown."""
        if label in self._shown:
            self.move_cursor(row=self._shown.index(label))
        else:
            self._want = label

    def filter(self, needle: str) -> None:
        self.needle = needle
        self._refill()

    def _refill(self) -> None:
        now = self.clock()
        rows = sorted(
            (r for r in self.records.values() if matches(r, self.needle)),
            key=lambda r: (STATE_ORDER.get(r.state, 3), -(r.created or 0), r.label),
        )
        wanted = [r.label for r in rows]
        fresh = {r.label: cells(r, now) for r in rows}
        if wanted == self._shown:  # same rows, same order: change only the cells that changed
            for label, row in fresh.items():
                for column, old, new in zip(COLUMNS, self._cells[label], row):
                    if old != new:
                        self.update_cell(label, column, new)
        else:
            keep = self._want or self.label
            self.clear()
            for label, row in fresh.items():
                self.add_row(*row, key=label)
            if keep in fresh:
                self.move_cursor(row=wanted.index(keep), animate=False)
                self._want = None if keep == self._want else self._want
        self._shown, self._cells = wanted, fresh
        self._title()

    def _title(self) -> None:
        counts = [r.state for r in self.records.values()]
        parts = [f"{counts.count(s)} {s.value}" for s in STATE_ORDER if counts.count(s)]
        title = "Jobs" + (" · " + " · ".join(parts) if parts else "")
        if self.needle:
            title += f" · filter: {self.needle} ({len(self._shown)} shown)"
        self.border_title = Content(title)  # text, never markup: a filter may hold [
