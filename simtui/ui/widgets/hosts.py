"""The hosts panel: a row per host with its state and resources, each with a
sparkline of its recent history, and a line per GPU."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from simtui.model import HostSpec, HostState, ProbeResult, Sample
from simtui.units import format_size

HISTORY = 60  # samples kept per series
SPARK_WIDTH = 10
BARS = "▁▂▃▄▅▆▇█"
STATE_STYLE = {
    HostState.CONNECTING: "bold blue",
    HostState.UP: "bold green",
    HostState.DEGRADED: "bold yellow",
    HostState.DOWN: "bold red",
}
DOT = "●"


def spark(values: Iterable[float | None], top: float = 100.0, width: int = SPARK_WIDTH) -> str:
    """The last ``width`` values as block characters (0..top), newest on the right."""
    last = list(values)[-width:]
    bars = [" " if v is None else BARS[max(0, min(round(v / top * (len(BARS) - 1)), len(BARS) - 1))] for v in last]
    return "".join(bars).rjust(width)


def percent(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return 100.0 * part / whole


class HostView:
    """What the dashboard knows of one host: its latest state and sample, and the
    recent history of each series for the sparklines."""

    def __init__(self, spec: HostSpec) -> None:
        self.spec = spec
        self.state = HostState.CONNECTING
        self.reason: str | None = None
        self.sample: Sample | None = None
        self.was_up = False  # since it last went down: a drop to down is news
        self.cpu: deque[float | None] = deque(maxlen=HISTORY)
        self.mem: deque[float | None] = deque(maxlen=HISTORY)
        self.gpu_util: dict[int, deque[float | None]] = {}
        self.gpu_mem: dict[int, deque[float | None]] = {}
        self.latest = ProbeResult(spec, None, None, HostState.CONNECTING)

    @property
    def name(self) -> str:
        return self.spec.name

    def update(self, result: ProbeResult) -> bool:
        """Take a new result; True when the host just went down after being up."""
        self.latest = result
        self.state, self.reason = result.state, result.reason
        went_down = result.state is HostState.DOWN and self.was_up
        if result.state is HostState.UP:
            self.was_up = True
        elif result.state is HostState.DOWN:
            self.was_up = False
            self.sample = None
        if result.sample is not None:
            self._record(result.sample)
        return went_down

    def _record(self, sample: Sample) -> None:
        self.sample = sample
        self.cpu.append(sample.cpu_percent)
        self.mem.append(percent(sample.mem_used, sample.mem_total))
        for gpu in sample.gpus:
            self.gpu_util.setdefault(gpu.index, deque(maxlen=HISTORY)).append(gpu.util)
            self.gpu_mem.setdefault(gpu.index, deque(maxlen=HISTORY)).append(percent(gpu.mem_used, gpu.mem_total))

    def text(self, name_width: int) -> Text:
        """The host's row: name, state, CPU, load, memory, disk; then a line per GPU."""
        style = STATE_STYLE[self.state]
        row = Text(no_wrap=True, overflow="ellipsis")
        row.append(f"{DOT} ", style)
        row.append(self.name.ljust(name_width), "bold")
        row.append(f"  {self.state.value:<10}", style)
        s = self.sample
        if s is None or self.state in (HostState.DOWN, HostState.CONNECTING):
            if self.reason:
                row.append(f" {self.reason}", "dim")
            return row
        row.append(" CPU ", "dim")
        row.append(_pct(s.cpu_percent))
        row.append(f" {spark(self.cpu)}", "green")
        if s.cpu_count:
            row.append(f" {s.cpu_count:>3} cores", "dim")
        row.append("  load ", "dim")
        row.append(" ".join(f"{v:5.2f}" for v in s.load) if s.load else "  n/a")
        row.append("  mem ", "dim")
        row.append(f"{format_size(s.mem_used)}/{format_size(s.mem_total)}".rjust(13))
        row.append(f" {spark(self.mem)}", "magenta")
        row.append("  disk ", "dim")
        row.append(f"{format_size(s.disk_free)} free")
        if self.state is HostState.DEGRADED and self.reason:
            row.append(f"  ({self.reason})", "yellow")
        for gpu in s.gpus:
            row.append("\n")
            row.append(" " * (name_width + 4))
            row.append(f"gpu{gpu.index} ", "dim")
            row.append(f"{gpu.name[:22]:<22}")
            row.append(" util ", "dim")
            row.append(_pct(gpu.util))
            row.append(f" {spark(self.gpu_util.get(gpu.index, ()))}", "green")
            row.append("  mem ", "dim")
            row.append(f"{format_size(gpu.mem_used)}/{format_size(gpu.mem_total)}".rjust(13))
            row.append(f" {spark(self.gpu_mem.get(gpu.index, ()))}", "magenta")
            if gpu.temperature is not None:
                row.append(f"  {gpu.temperature:.0f}°C", "dim")
            if gpu.power is not None:
                row.append(f" {gpu.power:.0f}W", "dim")
        return row


def _pct(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:4.0f}%"


class HostsPanel(OptionList):
    """One option per host; the highlighted host is the one `p` opens."""

    def __init__(self, views: Iterable[HostView], **kwargs) -> None:
        views = list(views)
        self.name_width = max((len(view.name) for view in views), default=4)
        super().__init__(*(Option(view.text(self.name_width), id=view.name) for view in views), **kwargs)

    def on_mount(self) -> None:
        self.border_title = "Hosts"

    def show(self, view: HostView) -> None:
        self.replace_option_prompt(view.name, view.text(self.name_width))

    @property
    def host(self) -> str | None:
        """The highlighted host's name."""
        option = self.highlighted_option
        return option.id if option is not None else None
