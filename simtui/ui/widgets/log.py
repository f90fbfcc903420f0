"""A job's log, live: colours kept, every other control sequence stripped.

Bytes arrive in whatever pieces the stream gives. Of each piece only its last
``max_lines`` lines are cut out (the rest could never be seen); lines reach the
screen in batches a few times a second, at most ``max_lines`` are kept, and a
line is decoded and cleaned only when it is drawn: a job that prints a million
lines costs the screen about what the lines it can still show cost.
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.cache import LRUCache
from textual.content import Content
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from simtui.model import Record
from simtui.textsafe import sanitize

MAX_LINES = 10_000
MAX_LINE_BYTES = 16 * 1024  # a line without its end is shown once it holds this much
BATCH_SECONDS = 1 / 30  # how often new lines reach the screen at most
BACKLOG_BYTES = 4 << 20  # of a long local copy, only the end is shown


def clean(raw: bytes) -> str:
    """One line of a log as the screen may show it: where carriage returns redraw
    the line (progress bars), what a terminal would show last; no controls but colours."""
    text = raw.decode("utf-8", "replace")
    if "\r" in text:
        text = text.rstrip("\r").rpartition("\r")[2]
    # A printable line has no control character for sanitize to remove.
    return text if text.isprintable() else sanitize(text.expandtabs())


class LogPane(ScrollView, can_focus=True):
    """Follows one job's log; ``follow(label)`` switches job."""

    def __init__(self, max_lines: int = MAX_LINES, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_lines = max_lines
        self.label: str | None = None
        self.position = 0  # the byte of the log the next piece starts at
        self._cut = False  # dropping bytes up to the first newline
        self._lines: deque[bytes] = deque(maxlen=max_lines)  # as they came; cleaned when drawn
        self._first = 0  # the number (since the start of the stream) of self._lines[0]
        self._pending: list[bytes] = []
        self._partial = b""
        self._width = 0
        self._flush_timer = None
        self._strips: LRUCache[int, Strip] = LRUCache(1024)

    @property
    def lines(self) -> list[str]:
        """The lines held now, as drawn (for tests)."""
        self._flush()
        return [clean(raw) for raw in self._lines]

    # -- following a job ------------------------------------------------------

    def follow(self, label: str | None, title: str = "") -> None:
        """Show ``label``'s log from the start (its last part when long) and follow it."""
        if label == self.label:
            return
        self.workers.cancel_group(self, "log")
        self.clear()
        self.label = label
        self.border_title = Content(title or (f"Log · {label}" if label else "Log"))  # never markup
        if label is not None:
            self.app.spawn(self, self._stream(label), group="log")

    async def _stream(self, label: str) -> None:
        """The last BACKLOG_BYTES of the log, then live bytes until the job ends: the
        server sends both, every byte once, through a server that goes away."""
        if not self.app.live:  # frozen data: no server to ask
            start, backlog = self.app.frozen_log(label)
            self._start(start)
            self.feed(backlog)
            self._flush()
            return
        record: Record = await self.app.client.follow(label, self.feed, tail=BACKLOG_BYTES, on_start=self._start)
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
        pieces = (self._partial + data).rsplit(b"\n", self.max_lines + 1)
        self._partial = pieces.pop()
        if len(pieces) > self.max_lines:  # the first piece holds lines older than the last max_lines
            del pieces[0]
        if len(self._partial) > MAX_LINE_BYTES:
            pieces.append(self._partial)
            self._partial = b""
        self._pending.extend(pieces)
        if len(self._pending) > 2 * self.max_lines:  # they would scroll away unseen
            del self._pending[: -self.max_lines]
        if self._flush_timer is None and self.is_mounted:
            self._flush_timer = self.set_timer(BATCH_SECONDS, self._flush)

    def note(self, text: str) -> None:
        """A line of ours (dim, between rules), after what has arrived so far
        (a last line without its newline included)."""
        if self._partial:
            self._pending.append(self._partial)
            self._partial = b""
        self._flush()
        self._append([f"\x1b[2;3m── {sanitize(text)} ──\x1b[0m".encode()])

    def clear(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        self._lines.clear()
        self._pending.clear()
        self._partial = b""
        self._cut = False
        self._first = 0
        self._width = 0
        self.position = 0
        self._strips.clear()
        self.virtual_size = Size(0, 0)
        self.scroll_to(0, 0, animate=False)
        self.refresh()

    def _flush(self) -> None:
        self._flush_timer = None
        pending, self._pending = self._pending, []
        if pending:
            self._append(pending[-self.max_lines :])

    def _append(self, lines: list[bytes]) -> None:
        following = self.is_vertical_scroll_end
        dropped = max(len(self._lines) + len(lines) - self.max_lines, 0)
        self._lines.extend(lines)
        self._first += dropped
        self._width = max(self._width, max(map(len, lines)))  # bytes: never fewer than cells
        self.virtual_size = Size(self._width, len(self._lines))
        self.refresh()
        if following:
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)
        elif dropped:  # keep the same lines in view as older ones go
            self.scroll_to(y=max(self.scroll_offset.y - dropped, 0), animate=False, immediate=True, force=True)

    # -- drawing -----------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        style = self.rich_style
        if index >= len(self._lines):
            return Strip.blank(self.size.width, style)
        key = self._first + index
        strip = self._strips.get(key)
        if strip is None:
            line = clean(self._lines[index])
            text = Text.from_ansi(line, style=style) if "\x1b" in line else Text(line, style=style)
            strip = Strip(list(text.render(self.app.console)), text.cell_len)
            self._strips[key] = strip
        return strip.crop_extend(scroll_x, scroll_x + self.size.width, style)
