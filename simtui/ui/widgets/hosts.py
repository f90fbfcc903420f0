"""The hosts panel: a row per host with its state and resources, each with a
sparkline of its recent history, and a line per GPU.

A Slurm cluster (a host whose latest sample has partitions) shows a row per
partition instead, named ``CLUSTER/PARTITION`` (``*`` marks Slurm's default):
its nodes idle/mixed/allocated/down, CPUs and GPUs free of all, and its queue.
Until its first sample it is one row with its state, like any host. Whatever row
is highlighted, ``HostsPanel.host`` is the host's own name (what the processes
key, the server and the config know); ``HostsPanel.partition`` and
``HostsPanel.target`` (``CLUSTER/PARTITION``, which a JobSpec's host may be)
say which partition's row it is."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from simtui.model import HostSpec, HostState, Partition, ProbeResult, Sample
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
        self.partition_cpu: dict[str, deque[float | None]] = {}  # a cluster's: CPUs in use, per partition
        self.latest = ProbeResult(spec, None, None, HostState.CONNECTING)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def machine(self) -> bool:
        """A machine made for a job (run --provider): it goes when its job ends."""
        return "machine" in self.spec.tags

    @property
    def partitions(self) -> tuple[Partition, ...]:
        """A cluster's partitions, as its latest sample has them (() for any other host)."""
        return self.sample.partitions if self.sample is not None else ()

    @property
    def cluster(self) -> bool:
        """Whether it is a Slurm cluster: its sample has partitions; before the first
        sample, its spec says how jobs are submitted there."""
        return bool(self.partitions) or self.spec.slurm is not None

    @property
    def default_partition(self) -> str | None:
        """Where a job sent to the cluster itself goes: the first partition the config
        names, else Slurm's default, else the first one (None before the first sample)."""
        names = [p.name for p in self.partitions]
        wanted = self.spec.slurm.partitions if self.spec.slurm else ()
        for name in wanted:
            if name in names:
                return name
        return next((p.name for p in self.partitions if p.default), names[0] if names else None)

    def rows(self) -> list[tuple[str, Partition | None]]:
        """The panel's rows for it: (option id, partition); one (its name, None) unless
        it is a cluster with a sample, then ``CLUSTER/PARTITION`` each."""
        if self.partitions:
            return [(f"{self.name}/{p.name}", p) for p in self.partitions]
        return [(self.name, None)]

    def row_name(self, partition: Partition | None) -> str:
        if partition is None:
            return self.name
        return f"{self.name}/{partition.name}{'*' if partition.default else ''}"

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
        for p in sample.partitions:
            busy = percent(p.cpus_total - p.cpus_idle, p.cpus_total)
            self.partition_cpu.setdefault(p.name, deque(maxlen=HISTORY)).append(busy)

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
        if self.cluster:
            self._cluster_summary(row)
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


    def _cluster_summary(self, row: Text) -> None:
        """The whole cluster on one line (its partitions have a row each on the panel)."""
        parts = self.partitions
        row.append(" Slurm ", "dim")
        if not parts:
            row.append("no partitions to show (sinfo lists none of those you may use)", "yellow")
        else:
            row.append(f"{len(parts)} partition{'s' if len(parts) != 1 else ''}")
            row.append("  pending ", "dim")
            row.append(f"{sum(p.pending for p in parts)} ({sum(p.mine_pending for p in parts)} yours)")
            row.append("  running yours ", "dim")
            row.append(str(sum(p.mine_running for p in parts)))
        if self.state is HostState.DEGRADED and self.reason:
            row.append(f"  ({self.reason})", "yellow")

    def partition_text(self, p: Partition, name_width: int) -> Text:
        """A cluster's row for one partition: nodes, CPUs and GPUs free, its queue."""
        style = STATE_STYLE[self.state] if p.up else "bold red"
        row = Text(no_wrap=True, overflow="ellipsis")
        row.append(f"{DOT} ", style)
        row.append(self.row_name(p).ljust(name_width), "bold")
        row.append(f"  {(self.state.value if p.up else 'down'):<10}", style)
        if self.state in (HostState.DOWN, HostState.CONNECTING):  # what it last said is stale
            if self.reason:
                row.append(f" {self.reason}", "dim")
            return row
        row.append(" nodes ", "dim")
        row.append(f"{p.nodes_idle}/{p.nodes_mixed}/{p.nodes_allocated}/")
        row.append(str(p.nodes_down), "bold red" if p.nodes_down else "")
        row.append("  CPUs ", "dim")
        row.append(f"{p.cpus_idle:>3}/{p.cpus_total:<3} free")
        row.append(f" {spark(self.partition_cpu.get(p.name, ()))}", "green")
        if p.gpus_total:
            row.append("  GPUs ", "dim")
            row.append(f"{p.gpus_free:>2}/{p.gpus_total:<2} free")
        else:
            row.append(" " * 16)
        row.append("  queue ", "dim")
        row.append(f"{p.pending} pending ({p.mine_pending} yours), {p.mine_running} running yours")
        if not p.up:  # in place of its limit: it takes no job now
            row.append("  partition down", "bold red")
        elif p.time_limit:
            row.append(f"  limit {p.time_limit}", "dim")
        if self.state is HostState.DEGRADED and self.reason:
            row.append(f"  ({self.reason})", "yellow")
        return row

    def row_text(self, partition: Partition | None, name_width: int) -> Text:
        return self.text(name_width) if partition is None else self.partition_text(partition, name_width)


def _pct(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:4.0f}%"


class HostsPanel(OptionList):
    """One option per host, or per partition of a cluster; the highlighted host is
    the one `p` opens."""

    NODES = "nodes: idle/mixed/allocated/down"

    def __init__(self, views: Iterable[HostView], **kwargs) -> None:
        self.views = {view.name: view for view in views}
        self.targets: dict[str, tuple[str, str | None]] = {}  # option id: (host, partition)
        self.name_width = self._width()
        super().__init__(*self._rows_as_options(), **kwargs)

    def on_mount(self) -> None:
        self.border_title = "Hosts"
        self._subtitle()

    def _width(self) -> int:
        return max((len(view.row_name(p)) for view in self.views.values() for _, p in view.rows()), default=4)

    def _rows_as_options(self) -> list[Option]:
        options = []
        self.targets = {}
        for view in self.views.values():
            for option_id, partition in view.rows():
                self.targets[option_id] = (view.name, partition.name if partition else None)
                options.append(Option(view.row_text(partition, self.name_width), id=option_id))
        return options

    def _subtitle(self) -> None:
        clustered = any(p is not None for _, p in self.targets.values())
        self.border_subtitle = self.NODES if clustered else ""

    def show(self, view: HostView) -> None:
        self.views[view.name] = view
        rows = view.rows()
        if self._width() != self.name_width or any(option_id not in self.targets for option_id, _ in rows) or (
                sum(host == view.name for host, _ in self.targets.values()) != len(rows)):
            self._rebuild()  # a cluster's first sample (or a host down again): other rows
            return
        for option_id, partition in rows:
            self.replace_option_prompt(option_id, view.row_text(partition, self.name_width))

    def forget(self, name: str) -> None:
        if self.views.pop(name, None) is not None:
            self._rebuild()

    def _rebuild(self) -> None:
        """Every row again, the highlight kept on its row, else on its host's first."""
        was = self.highlighted_option.id if self.highlighted_option is not None else None
        host = self.targets.get(was, (None, None))[0] if was else None
        self.name_width = self._width()
        self.set_options(self._rows_as_options())
        self._subtitle()
        if was is None:
            return
        ids = [option.id for option in self.options]
        if was in ids:
            self.highlighted = ids.index(was)
        else:
            self.highlighted = next((i for i, option_id in enumerate(ids) if self.targets[option_id][0] == host), 0)

    @property
    def host(self) -> str | None:
        """The highlighted host's name (a cluster's own name on any of its partition rows)."""
        option = self.highlighted_option
        return self.targets[option.id][0] if option is not None else None

    @property
    def partition(self) -> str | None:
        """The highlighted row's partition (None on a host's row)."""
        option = self.highlighted_option
        return self.targets[option.id][1] if option is not None else None

    @property
    def target(self) -> str | None:
        """What a job for the highlighted row names as its host: ``CLUSTER/PARTITION``
        on a partition's row, else the host's name."""
        option = self.highlighted_option
        return option.id if option is not None else None
