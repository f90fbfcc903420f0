"""The selected job's metrics, live: one plot per metric (PLOTS at a time, ``]``
pages through the rest), the step as x. A job of a sweep has every run of its sweep
overlaid (MAX_RUNS at most), each in its own colour and named in the legend by the
parameters that differ between them (``lr=0.1 seed=2``); the selected run is drawn
last and bright, the others dimmer.

Cheap whatever the series' length, so a flooding log and a 100k-point sweep leave
the keys alone: every POLL seconds while the pane is shown, a thread with its own
connection to the store reads only the points printed since its last read (a series
grows from the line after the last one read) and thins each run to at most two points
per column of its plot (the lowest and the highest of the column, in the order they
were printed, so a spike stays); the plots are redrawn only when something changed,
one plot per frame. The plots are textual-plot's PlotWidget (braille lines).
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Grid, Vertical
from textual.content import Content
from textual.widgets import Label, Static
from textual.worker import Worker
from textual_hires_canvas import Canvas
from textual_plot import HiResMode, PlotWidget
from textual_plot.axis_formatter import AxisFormatter

from simtui.model import Record
from simtui.store import Store
from simtui.store.db import connect, translated
from simtui.textsafe import one_line

PLOTS = 4  # metrics plotted at once
MAX_RUNS = 12  # runs of a sweep overlaid (the selected one always among them)
POLL = 1.0  # seconds between reads of the store while the pane is shown
PLOT_WIDTH = 36  # columns a plot wants at least: the pane puts as many side by side as fit
MARGIN_LEFT = 8  # columns of a plot's y tick labels
NAME_WIDTH = 40  # characters of a run's name in the legend
DIM = 0.45  # how far the runs not selected fade toward the background
HINT = "no metrics yet: print key=value lines, e.g. step=1 loss=0.5"
# Distinct on dark and light backgrounds (Tableau's 10, then two more).
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2",
           "#edc948", "#ff9da7", "#9c755f", "#bab0ac", "#17becf", "#bcbd22")
POINTS = "select step, value, offset from metrics where label = ? and key = ? and offset > ? order by offset"


# -- thinning and naming (pure) ---------------------------------------------------------


def thin(x: np.ndarray, y: np.ndarray, lo: float, hi: float, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """At most about two points per column of ``columns`` over [lo, hi]: in each run
    of consecutive points that fall in one column, its lowest and its highest (in the
    order printed), and the first and last point of all."""
    n = len(x)
    if n <= 2 * columns or hi <= lo:
        return x, y
    column = ((x - lo) * (columns / (hi - lo))).astype(np.int64)
    np.clip(column, 0, columns - 1, out=column)
    change = column[1:] != column[:-1]
    starts = np.flatnonzero(np.r_[True, change])
    group = np.cumsum(np.r_[False, change])

    def first_of_each(mask: np.ndarray) -> np.ndarray:
        at = np.flatnonzero(mask)
        g = group[at]
        return at[np.r_[True, g[1:] != g[:-1]]]

    low = first_of_each(y == np.minimum.reduceat(y, starts)[group])
    high = first_of_each(y == np.maximum.reduceat(y, starts)[group])
    keep = np.union1d(np.union1d(low, high), [0, n - 1])
    return x[keep], y[keep]


def flat(params: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Nested parameters as dotted names: {"model": {"width": 64}} -> {"model.width": 64}."""
    out: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if isinstance(value, Mapping) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differing(params: Sequence[Mapping[str, Any]]) -> list[str]:
    """The (flat) parameter names whose values are not the same in every one of
    ``params`` (missing counts as a value), in the order first seen."""
    flats = [flat(p) for p in params]
    names = list(dict.fromkeys(name for f in flats for name in f))
    if len(flats) < 2:
        return []
    missing = object()
    return [n for n in names if len({json.dumps(f.get(n, missing), default=repr, sort_keys=True) for f in flats}) > 1]


def value_text(value: Any) -> str:
    """A parameter's value, short: 0.1, 3, adam, [1, 2]."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def number(value: float | None) -> str:
    """A metric's value, short."""
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def run_name(params: Mapping[str, Any] | None, names: Sequence[str], label: str) -> str:
    """A run as the legend names it: its values of ``names`` (the parameters that
    differ), else its label."""
    values = flat(params)
    text = " ".join(f"{n}={value_text(values[n])}" for n in names if n in values)
    text = one_line(text) if text else label
    return text if len(text) <= NAME_WIDTH else text[: NAME_WIDTH - 1] + "…"


def side_by_side(count: int, width: int) -> int:
    """How many of ``count`` plots go side by side in ``width`` columns."""
    return max(1, min(count, width // PLOT_WIDTH))


def plot_columns(count: int, width: int) -> int:
    """The columns of each plot's drawing area with ``count`` plots in ``width``
    (what a series is thinned to)."""
    return max(width // side_by_side(count, width) - MARGIN_LEFT - 2, 10)


class CompactTicks(AxisFormatter):
    """Ticks at 1, 2, 5 times a power of ten, as many as ``cells`` leave room for,
    labelled short: 0.05, 250, 12k, 1.5M, 1e-05."""

    def __init__(self, cells_per_tick: int) -> None:
        self.cells_per_tick = cells_per_tick
        self.cells = 40  # the axis's length, set before each draw

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        count = max(2, min(max_ticks, self.cells // self.cells_per_tick))
        span = max_ - min_
        if not (span > 0 and math.isfinite(span)):
            return [min_]
        rough = span / count
        power = 10 ** math.floor(math.log10(rough))
        step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
        first = math.ceil(min_ / step) * step
        return [first + i * step for i in range(int((max_ - first) / step + 1e-9) + 1)]

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 0.0
        return [self.label(t, step) for t in ticks]

    @staticmethod
    def label(value: float, step: float) -> str:
        if abs(value) < step * 1e-6:
            return "0"
        size = abs(value)
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if size >= scale * 10 or (size >= scale and step >= scale / 10):
                return f"{value / scale:.3g}{suffix}"
        if size < 1e-3:
            return f"{value:.1e}".replace("e-0", "e-")
        return f"{value:.4g}"


class Plot(PlotWidget, can_focus=False):
    """One metric's plot: no focus (the dashboard's keys stay its own), no pan or
    zoom, narrow margins, compact ticks; a redraw repaints each canvas once (not once
    a cell)."""

    DEFAULT_CSS = "Plot { height: 1fr; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_pan_and_zoom=False, **kwargs)
        self.set_reactive(PlotWidget.margin_top, 0)
        self.set_reactive(PlotWidget.margin_bottom, 1)
        self.set_reactive(PlotWidget.margin_left, MARGIN_LEFT)
        self._x_ticks_format = CompactTicks(10)
        self._y_ticks_format = CompactTicks(3)
        self._x_formatter, self._y_formatter = self._x_ticks_format, self._y_ticks_format

    def _render_plot(self) -> None:
        self._x_ticks_format.cells = max(self.size.width - self.margin_left, 1)
        self._y_ticks_format.cells = max(self.size.height - self.margin_bottom, 1)
        with contextlib.ExitStack() as stack:
            for canvas in self.query(Canvas):
                stack.enter_context(canvas.batch_refresh())
            super()._render_plot()

    def draw(self, lines: Sequence[Line]) -> None:
        """``lines`` instead of what was drawn. The values keep clear of the frame
        (a twentieth of their range above and below); a flat line (or a single point)
        is in the middle of a range around it."""
        self.clear()
        for axis, setter in ((0, self.set_xlimits), (1, self.set_ylimits)):
            data = [(line.x, line.y)[axis] for line in lines if len(line.x)]
            if not data:
                setter(None, None)
                continue
            low, high = min(float(a.min()) for a in data), max(float(a.max()) for a in data)
            if high - low <= 1e-12 * max(abs(low), abs(high), 1.0):
                pad = abs(low) * 0.1 or 1.0
            else:
                pad = (high - low) / 20 if axis else 0.0
            setter(low - pad, high + pad)
        for line in lines:
            if len(line.x) == 1:
                self.scatter(line.x, line.y, marker_style=line.style, hires_mode=HiResMode.BRAILLE)
            elif len(line.x):
                self.plot(line.x, line.y, line_style=line.style, hires_mode=HiResMode.BRAILLE)


# -- what the thread reads ------------------------------------------------------------------


@dataclass
class Series:
    x: np.ndarray = field(default_factory=lambda: np.empty(0))
    y: np.ndarray = field(default_factory=lambda: np.empty(0))
    after: int = -1  # the offset of the last line read


@dataclass(frozen=True)
class Run:
    label: str
    name: str
    colour: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class Line:
    x: np.ndarray
    y: np.ndarray
    style: str


@dataclass(frozen=True)
class Want:
    """What to read: asked on the event loop, read in the thread."""

    generation: int
    label: str
    sweep: str | None
    page: int
    width: int  # the pane's, in columns: how finely to thin


@dataclass(frozen=True)
class View:
    """What to show, ready to draw."""

    generation: int
    label: str
    sweep: str | None
    runs: list[Run]
    left_out: int  # runs of the sweep not drawn
    keys: list[str]  # every metric, in the order first printed
    page: int
    shown: list[str]
    lines: dict[str, list[tuple[str, np.ndarray, np.ndarray]]]  # key -> (label, x, y) each run, selected last


class MetricsReader:
    """The points read so far, and what was thinned from them; used by one thread
    at a time (the pane starts the next read only after the last one ended)."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str], Series] = {}
        self._thinned: dict[tuple[str, str], tuple[Any, ...]] = {}

    def read(self, store: Store, want: Want) -> View:
        runs, left_out = self._runs(store, want)
        keys = list(dict.fromkeys(k for r in reversed(runs) for k in r.metrics))  # the selected run's first
        pages = max(1, math.ceil(len(keys) / PLOTS))
        page = want.page % pages
        shown = keys[page * PLOTS: (page + 1) * PLOTS]
        lines: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
        columns = plot_columns(len(shown), want.width)
        for key in shown:
            series = [(r.label, self._grow(store, r.label, key)) for r in runs if key in r.metrics]
            xs = [s.x for _, s in series if len(s.x)]
            lo = min((float(x.min()) for x in xs), default=0.0)
            hi = max((float(x.max()) for x in xs), default=0.0)
            lines[key] = [(label, *self._thin(label, key, s, lo, hi, columns)) for label, s in series]
        return View(want.generation, want.label, want.sweep, runs, left_out, keys, page, shown, lines)

    def _runs(self, store: Store, want: Want) -> tuple[list[Run], int]:
        """The runs to draw, oldest first, the selected one last; how many were left out."""
        if want.sweep:
            rows = [(label, json.loads(p) if p else None, json.loads(m) if m else None)
                    for label, p, m in store.select(("label", "params", "metrics"), sweep=want.sweep, limit=None)]
            rows.reverse()  # oldest first: a run keeps its colour as the sweep grows
        else:
            rows = []
        if want.label not in {label for label, _, _ in rows}:
            record = store.get(want.label)
            rows.append((record.label, record.params, record.metrics))
        colours = {label: PALETTE[i % len(PALETTE)] for i, (label, _, _) in enumerate(rows)}
        selected = next(row for row in rows if row[0] == want.label)
        others = [row for row in rows if row[0] != want.label]
        drawn = others[: MAX_RUNS - 1] + [selected]
        names = differing([params or {} for _, params, _ in rows])
        runs = [Run(label, run_name(params, names, label), colours[label], metrics or {})
                for label, params, metrics in drawn]
        return runs, len(others) - len(drawn) + 1

    def _grow(self, store: Store, label: str, key: str) -> Series:
        """``label``'s series of ``key`` with the points printed since the last read."""
        series = self.series.setdefault((label, key), Series())
        with translated(store.path):
            rows = store.conn.execute(POINTS, [label, key, series.after]).fetchall()
        if rows:
            new = np.array(rows, dtype=float).reshape(-1, 3)
            finite = np.isfinite(new[:, 0]) & np.isfinite(new[:, 1])
            series.x = np.concatenate([series.x, new[finite, 0]])
            series.y = np.concatenate([series.y, new[finite, 1]])
            series.after = int(rows[-1][2])
        return series

    def _thin(self, label: str, key: str, series: Series, lo: float, hi: float,
              columns: int) -> tuple[np.ndarray, np.ndarray]:
        """thin(), kept while the series and its plot stay the same."""
        stamp = (len(series.x), lo, hi, columns)
        kept = self._thinned.get((label, key))
        if kept is None or kept[0] != stamp:
            kept = self._thinned[(label, key)] = (stamp, *thin(series.x, series.y, lo, hi, columns))
        return kept[1], kept[2]


# -- the pane ----------------------------------------------------------------------------


class MetricPlot(Vertical):
    """A metric's name and the selected run's last value, over its plot."""

    DEFAULT_CSS = """
    MetricPlot { height: 1fr; }
    MetricPlot > Label { width: 1fr; padding: 0 0 0 1; text-style: bold; }
    """

    def compose(self) -> ComposeResult:
        yield Label()
        yield Plot()


class MetricsPane(Vertical):
    """The selected job's metrics (see the module's doc); hidden until shown."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.record: Record | None = None
        self.page = 0
        self.view: View | None = None
        self._reader = MetricsReader()
        self._reader_of: str | None = None  # the label or sweep the reader's points belong to
        self._generation = 0
        self._worker: Worker | None = None
        self._again = False  # asked to read while a read ran: read once more after it
        self._redraw: list[int] = []  # plots waiting to be drawn, one per frame
        self._drawing = False  # a _draw_next is waiting for the next frame
        self._error: str | None = None  # the last error reported (said once, not once a poll)
        self._lock = threading.Lock()

    def compose(self) -> ComposeResult:
        yield Static(HINT, id="metrics-hint")
        with Grid(id="metrics-plots"):
            for _ in range(PLOTS):
                yield MetricPlot()

    def on_mount(self) -> None:
        self.border_title = "Metrics"
        self.set_interval(POLL, self.poll)
        self._hint("no job selected" if self.record is None else "reading metrics…")

    @property
    def shown(self) -> bool:
        return self.display and self.is_attached and self.app.screen is self.screen

    # -- from the dashboard -----------------------------------------------------------

    def follow(self, record: Record | None) -> None:
        """Show ``record``'s metrics (None: no job selected)."""
        before = self.record
        self.record = record
        if record is None:
            if before is not None:
                self._generation += 1
                self.view = None
                self._hint("no job selected")
            return
        if before is None or before.label != record.label or before.sweep != record.sweep:
            self._generation += 1
            same_sweep = bool(record.sweep and before and before.sweep == record.sweep)
            if same_sweep and self.view is not None and any(r.label == record.label for r in self.view.runs):
                self._show(self._reselected(self.view, record.label))  # at once, from the points it has
            elif not same_sweep:
                self.page = 0
                self.view = None
                self._hint("reading metrics…")
            self.poll()

    def _reselected(self, view: View, label: str) -> View:
        """``view`` with another of its runs selected: drawn last, on top of the others."""
        lines = {key: sorted(entries, key=lambda entry: entry[0] == label) for key, entries in view.lines.items()}
        return replace(view, generation=self._generation, label=label, lines=lines)

    def next_page(self) -> None:
        """The next PLOTS metrics (after the last: the first)."""
        self.page += 1
        self.poll()

    @property
    def pages(self) -> int:
        return math.ceil(len(self.view.keys) / PLOTS) if self.view else 0

    def on_show(self) -> None:
        self.poll()

    def on_resize(self) -> None:
        if self.view is not None:
            self._layout(len(self.view.shown))
            self.call_after_refresh(self.poll)  # thinned for the new widths

    # -- reading (in a thread) ---------------------------------------------------------

    def poll(self) -> None:
        """Read what is new, unless the pane is hidden or a read is on its way."""
        if self.record is None or not self.shown:
            return
        if self._worker is not None and not self._worker.is_finished:
            self._again = True
            return
        self._again = False
        want = Want(self._generation, self.record.label, self.record.sweep, self.page, self.size.width or 80)
        store: Store = self.app.store
        path = store.path
        if path is None or str(path) == ":memory:":  # a database of that connection alone: read it here
            self._worker = self.run_worker(self._read_here(store, want), group="metrics", exit_on_error=False)
        else:  # off the event loop, on a connection of the thread's own
            self._worker = self.run_worker(lambda: self._read(lambda: Store(connect(path, upgrade=False)), want),
                                           thread=True, group="metrics", exit_on_error=False)

    async def _read_here(self, store: Store, want: Want) -> None:
        self._done(self._read(lambda: store, want, threaded=False))

    def _read(self, opener: Callable[[], Store], want: Want, threaded: bool = True) -> View | Exception:
        """What ``want`` asks for, or why it could not be read. ``threaded``: in a
        thread, on a connection of its own (closed after), handed to _done on the
        event loop."""
        of = want.sweep or want.label  # a sweep's points serve every run of it
        try:
            with self._lock:
                if self._reader_of != of:  # another job: its points, not the last one's
                    self._reader, self._reader_of = MetricsReader(), of
                store = opener()
                try:
                    outcome: View | Exception = self._reader.read(store, want)
                finally:
                    if threaded:
                        store.close()
        except Exception as err:  # noqa: BLE001 - said once on the screen, the next poll tries again
            outcome = err
        if threaded:
            with contextlib.suppress(RuntimeError):  # the app ended meanwhile
                self.app.call_from_thread(self._done, outcome)
        return outcome

    def _done(self, outcome: View | Exception) -> None:
        if isinstance(outcome, Exception):
            text = str(outcome)
            if text != self._error:
                self._error = text
                self.app.report(outcome)
        else:
            self._error = None
            if outcome.generation == self._generation:
                self._show(outcome)
        if self._again:
            self.call_later(self.poll)

    # -- drawing -------------------------------------------------------------------------

    def _show(self, view: View) -> None:
        old, self.view = self.view, view
        self.page = view.page
        if old is None or math.ceil(len(old.keys) / PLOTS) != self.pages:
            self.screen.refresh_bindings()  # ] shows only while there is more
        title = f"Metrics · {view.label}"
        if view.sweep:
            title += f" · sweep {view.sweep} ({len(view.runs) + view.left_out} runs)"
        title += " · x: step"
        self.border_title = Content(title)
        pages = self.pages
        self.border_subtitle = (Content(f"{view.page * PLOTS + 1}-{view.page * PLOTS + len(view.shown)} of "
                                        f"{len(view.keys)} metrics · ] next") if pages > 1 else "")
        if not view.shown:
            self._hint(HINT)
            return
        legend = self._legend(view)
        hint = self.query_one("#metrics-hint", Static)
        hint.update(legend or "")
        hint.display = legend is not None
        self._layout(len(view.shown))
        runs = {r.label: r for r in view.runs}
        last = runs[view.label].metrics
        for i, (box, key) in enumerate(zip(self.query(MetricPlot), view.shown)):
            box.query_one(Label).update(Text.assemble((key, "bold"), "  ", (number(last.get(key)), "")))
            if old is None or old.shown != view.shown or _changed(old.lines.get(key), view.lines[key]):
                if i not in self._redraw:
                    self._redraw.append(i)
        if self._redraw and not self._drawing:
            self._drawing = True
            self.call_after_refresh(self._draw_next)

    def _draw_next(self) -> None:
        """Draw one waiting plot, then the next after the next frame."""
        self._drawing = False
        if not self._redraw or self.view is None:
            return
        index = self._redraw.pop(0)
        view = self.view
        if index < len(view.shown):
            key = view.shown[index]
            runs = {r.label: r for r in view.runs}
            background = self.background_colors[1]
            lines = []
            for label, x, y in view.lines[key]:
                colour = Color.parse(runs[label].colour)
                selected = label == view.label or len(view.runs) == 1
                style = colour.hex if selected else colour.blend(background, DIM).hex
                lines.append(Line(x, y, style))
            list(self.query(Plot))[index].draw(lines)
        if self._redraw:
            self._drawing = True
            self.call_after_refresh(self._draw_next)

    def _legend(self, view: View) -> Text | None:
        if len(view.runs) < 2:
            return None
        text = Text(no_wrap=False)
        for run in view.runs:
            selected = run.label == view.label
            text.append("━━ ", run.colour)
            text.append(run.name, "bold underline" if selected else "dim")
            text.append("   ")
        if view.left_out:
            text.append(f"(+{view.left_out} more runs not drawn)", "dim italic")
        return text

    def _hint(self, text: str) -> None:
        if not self.children:  # not composed yet: on_mount says it
            return
        hint = self.query_one("#metrics-hint", Static)
        hint.update(Text(text, "dim italic"))
        hint.display = True
        self._layout(0)
        if text != HINT:
            self.border_subtitle = ""

    def _layout(self, count: int) -> None:
        """``count`` plots, as many side by side as leave each PLOT_WIDTH columns."""
        if not self.children:
            return
        grid = self.query_one("#metrics-plots", Grid)
        grid.display = count > 0
        if not count:
            return
        across = side_by_side(count, self.size.width or 80)
        grid.styles.grid_size_columns = across
        grid.styles.grid_size_rows = math.ceil(count / across)
        for i, box in enumerate(self.query(MetricPlot)):
            box.display = i < count


def _changed(old: list[tuple[str, np.ndarray, np.ndarray]] | None,
             new: list[tuple[str, np.ndarray, np.ndarray]]) -> bool:
    if old is None or len(old) != len(new):
        return True
    return any(a[0] != b[0] or a[1] is not b[1] or a[2] is not b[2] for a, b in zip(old, new))
