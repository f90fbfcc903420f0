"""A job's log, live: colours kept, every other control sequence stripped.

Each log is streamed once, however many panes show it: a LogFeed (one per job,
held by the app while a pane shows it, see ``SimtuiApp.log_feed``) takes the bytes
and keeps the lines; the dashboard's pane and the full-screen log are views of it.

Bytes wait as they came and become lines in batches, BATCH_SECONDS apart: a batch
is decoded and cleaned in one pass (not one a line). A batch is one screenful of
work at most, BATCH_BYTES and about BATCH_LINES lines: what came before that (a
flood, or a screen that fell behind) is not split or cleaned, only counted ("N
lines skipped"; `simtui log` shows them), so a job that prints a million lines a
second costs the screen what a batch costs, ten times a second. A feed keeps
MAX_LINES lines (MAX_CHARS characters at most); a pane draws only the lines in view.
"""

from __future__ import annotations

import re
from collections import deque
from itertools import filterfalse, islice
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.content import Content
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer
from textual.worker import Worker

from simtui.model import Record
from simtui.textsafe import sanitize

if TYPE_CHECKING:
    from simtui.ui.app import SimtuiApp

MAX_LINES = 100_000
MAX_CHARS = 32 << 20
MAX_LINE_BYTES = 16 * 1024  # a line without its end is shown once it holds this much
BATCH_SECONDS = 0.1  # how often new lines reach the screen at most
BATCH_BYTES = 2 << 20  # the most bytes one batch turns into lines: 20 MB/s shown whole
BATCH_LINES = 20_000  # about the most lines one batch turns into lines
BACKLOG_BYTES = BATCH_BYTES  # of a long local copy, only the end is shown: one batch
# What carriage returns draw over (a progress bar): a line's start up to its last
# CR that is followed by more of the line.
_REDRAWN = re.compile(r"^(?:[^\n\r]*\r)+(?=[^\n\r])", re.MULTILINE)


def clean(batch: bytes | bytearray) -> list[str]:
    """Lines of a log (newline-separated) as the screen may show them: where carriage
    returns redraw a line, what a terminal would show last; no controls but colours."""
    text = batch.decode("utf-8", "replace")
    if "\r" in text:
        text = _REDRAWN.sub("", text)
    return sanitize(text).split("\n")


def note_line(text: str) -> str:
    """A line of ours: dim, between rules."""
    return f"\x1b[2;3m── {sanitize(text)} ──\x1b[0m"


class LogFeed:
    """One job's log as lines, from one stream, for every pane that shows it."""

    def __init__(self, app: SimtuiApp, label: str, max_lines: int = MAX_LINES) -> None:
        self.app, self.label, self.max_lines = app, label, max_lines
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.first = 0  # how many lines went before lines[0]: lines[i] is line first + i of the stream
        self.width = 0  # cells of the widest line held (or more)
        self.position = 0  # the byte of the log the next piece starts at
        self.views: set[LogPane] = set()
        self._pending = bytearray()  # bytes not in a batch yet, a last line without its end included
        self._skipped = 0  # lines left out of the next batch
        self._cut = False  # dropping bytes up to the first newline
        self._chars = 0  # characters held in lines
        self._timer: Timer | None = None
        self._worker: Worker | None = None

    def start(self) -> None:
        self._worker = self.app.spawn(self.app, self._stream(), group=f"log {self.label}")

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        if self._timer is not None:
            self._timer.stop()

    async def _stream(self) -> None:
        """The last BACKLOG_BYTES of the log, then live bytes until the job ends: the
        server sends both, every byte once, through a server that goes away."""
        if not self.app.live:  # frozen data: no server to ask
            start, backlog = self.app.frozen_log(self.label)
            self._start(start)
            self.feed(backlog)
            self.flush()
            return
        record: Record = await self.app.client.follow(self.label, self.feed, tail=BACKLOG_BYTES,
                                                      on_start=self._start)
        self.note(f"{record.label} {record.state.value}"
                  + (f" (exit {record.exit_code})" if record.exit_code is not None else ""))

    def _start(self, offset: int) -> None:
        """The backlog starts at byte ``offset``: past the start, it starts mid-line
        and its first piece is dropped."""
        self.position = offset
        if offset > 0:
            self.note(f"the last {BACKLOG_BYTES >> 20} MiB; `simtui log {self.label}` shows it all")
            self._cut = True

    # -- data in ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """A piece of the log, as it came."""
        if self._cut:  # the rest of a line whose start is not shown
            end = data.find(b"\n") + 1
            self.position += end if end else len(data)
            if not end:
                return
            data, self._cut = data[end:], False
        self.position += len(data)
        self._pending += data
        if len(self._pending) > 2 * BATCH_BYTES:  # the screen is behind: never more than this waits
            self._skip(len(self._pending) - BATCH_BYTES)
        if self._timer is None:
            self._timer = self.app.set_timer(BATCH_SECONDS, self.flush)

    def note(self, text: str) -> None:
        """A line of ours after what has arrived so far (a last line without its
        newline included)."""
        if self._pending and not self._pending.endswith(b"\n"):
            self._pending += b"\n"
        self.flush()
        self._add([note_line(text)])

    def flush(self) -> None:
        """What came since the last batch, as lines: whole lines, and a line without
        its end once it is long."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._bound()
        end = self._pending.rfind(b"\n")
        if len(self._pending) - end - 1 > MAX_LINE_BYTES:
            end = len(self._pending)
        lines = clean(self._pending[:end]) if end >= 0 else []
        del self._pending[: end + 1]
        if len(lines) >= self.max_lines:  # the older ones would go again at once: skipped too
            self._skipped += len(lines) - self.max_lines + 1
            lines = lines[len(lines) - self.max_lines + 1 :]
        if self._skipped:
            lines.insert(0, note_line(f"{self._skipped} lines skipped; `simtui log {self.label}` shows them"))
            self._skipped = 0
        if lines:
            self._add(lines)

    def _bound(self) -> None:
        """Leave the last batch's worth of lines waiting: BATCH_BYTES at most, and
        about BATCH_LINES lines (as many bytes as that many lines take on average)."""
        size, count = len(self._pending), self._pending.count(b"\n")
        keep = min(BATCH_BYTES, size * BATCH_LINES // count) if count > BATCH_LINES else BATCH_BYTES
        if size > keep:
            self._skip(size - keep)

    def _skip(self, size: int) -> None:
        """Leave out the oldest whole lines of the pending bytes, ``size`` bytes or a
        little more, and count them."""
        end = self._pending.find(b"\n", size - 1) + 1
        self._skipped += self._pending.count(b"\n", 0, end)
        del self._pending[:end]

    def _add(self, lines: list[str]) -> None:
        # Cells: an ASCII line's length (its colours count too: more), else its cell length.
        self.width = max(self.width, *map(len, lines), *map(cell_len, filterfalse(str.isascii, lines)))
        dropped = min(max(len(self.lines) + len(lines) - self.max_lines, 0), len(self.lines))
        self._chars += sum(map(len, lines)) - sum(map(len, islice(self.lines, dropped)))
        self.lines.extend(lines)  # the oldest go as the newest come (maxlen)
        while self._chars > MAX_CHARS:  # long lines: fewer of them
            self._chars -= len(self.lines.popleft())
            dropped += 1
        self.first += dropped
        for view in self.views:
            view.grown(dropped)


class LogPane(ScrollView, can_focus=True):
    """Shows one job's log (its LogFeed); ``follow(label)`` switches job."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.label: str | None = None
        self.source: LogFeed | None = None
        self._strips: LRUCache[int, Strip] = LRUCache(1024)
        self._at_end = True  # following the end (kept through a scrollbar showing up)

    @property
    def lines(self) -> list[str]:
        """The lines held now, as drawn (for tests)."""
        if self.source is None:
            return []
        self.source.flush()
        return list(self.source.lines)

    def follow(self, label: str | None, title: str = "") -> None:
        """Show ``label``'s log from the start (its last part when long) and follow it."""
        if label == self.label:
            return
        self._leave()
        self.label = label
        self.border_title = Content(title or (f"Log · {label}" if label else "Log"))  # never markup
        self.source = self.app.log_feed(label, self) if label is not None else None
        self._resize()
        self._at_end = True
        self.scroll_to(0, self.max_scroll_y, animate=False, immediate=True, force=True)

    def on_unmount(self) -> None:
        self._leave()

    def _leave(self) -> None:
        if self.source is not None:
            self.app.leave_log(self.source, self)
            self.source = None
        self._strips.clear()

    def grown(self, dropped: int) -> None:
        """The feed has new lines, and ``dropped`` old ones fewer."""
        self._resize()
        if self._at_end:
            self._keep_at_end()
        elif dropped:  # keep the same lines in view as older ones go
            self.scroll_to(y=max(self.scroll_offset.y - dropped, 0), animate=False, immediate=True, force=True)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._at_end = new_value >= self.max_scroll_y  # scrolled away from the end, or back to it

    def on_resize(self) -> None:
        self._keep_at_end()

    def watch_show_horizontal_scrollbar(self) -> None:
        self._keep_at_end()  # a row fewer in view

    def _keep_at_end(self) -> None:
        """Show the last lines again, when following the end."""
        if self._at_end:
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)

    def _resize(self) -> None:
        source = self.source
        self.virtual_size = Size(source.width, len(source.lines)) if source else Size(0, 0)
        self.refresh()

    # -- drawing -----------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        style = self.rich_style
        source = self.source
        if source is None or index >= len(source.lines):
            return Strip.blank(self.size.width, style)
        key = source.first + index
        strip = self._strips.get(key)
        if strip is None:
            strip = self._strips[key] = self._strip(source.lines[index], style)
        return strip.crop_extend(scroll_x, scroll_x + self.size.width, style)

    def _strip(self, line: str, style: Style) -> Strip:
        """A line drawn in the pane's style (its colours over it)."""
        if line.isascii() and line.isprintable():  # the usual line: one cell a character, no colour
            return Strip([Segment(line, style)], len(line))
        text = Text.from_ansi(line) if "\x1b" in line else Text(line)
        text.expand_tabs()
        return Strip(text.render(self.app.console), text.cell_len).apply_style(style)
