"""`p`: a host's processes, busiest first, and the processes holding its GPUs' memory."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual.app import ComposeResult
from textual.content import Content
from textual.widgets import DataTable, Footer, Label

from simtui.errors import SimtuiError
from simtui.model import ProcessInfo
from simtui.recordfmt import duration
from simtui.ui.screens.base import BackScreen
from simtui.textsafe import one_line
from simtui.units import format_size


class ProcessesScreen(BackScreen):
    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host

    def compose(self) -> ComposeResult:
        yield Label("", id="summary")
        yield DataTable(cursor_type="row", show_cursor=False, id="gpu-processes")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="processes")
        yield Footer()

    def on_mount(self) -> None:
        gpus = self.query_one("#gpu-processes", DataTable)
        gpus.add_columns("gpu", "pid", "user", "GPU memory", "name")
        gpus.border_title = "GPU processes"
        table = self.query_one("#processes", DataTable)
        table.add_columns("pid", "user", "cpu %", "rss", "elapsed", "command")
        table.border_title = Content(f"Processes on {self.host}")
        table.focus()
        self.app.spawn(self, self._poll(), group="processes", exclusive=True)

    async def _poll(self) -> None:
        """A new listing each interval (the server asks the host), until the screen closes."""
        interval = self.app.config.defaults.interval
        while True:
            self._show_gpus()
            try:
                await self.app.connect()  # at once where connected
                self._show(await self.app.client.processes(self.host))
            except SimtuiError as err:  # the host is down, or the server went away (the app reconnects)
                self.query_one("#summary", Label).update(Text(f"{err}; trying again", "bold red"))
            await asyncio.sleep(interval)

    def _show(self, found: list[ProcessInfo]) -> None:
        table = self.query_one("#processes", DataTable)
        row = table.cursor_row
        table.clear()
        for p in found:
            table.add_row(
                Text(str(p.pid), justify="right"), Text(p.user), Text(f"{p.cpu:.1f}", justify="right"),
                Text(format_size(p.rss), justify="right"), Text(duration(p.elapsed) or "", justify="right"),
                Text(one_line(p.command), no_wrap=True, overflow="ellipsis"),
            )
        table.move_cursor(row=min(row, max(len(found) - 1, 0)), animate=False)
        view = self.app.hosts[self.host]
        summary = view.text(len(self.host)).split()[0]
        summary.append(f"   {len(found)} processes, busiest first; every {self.app.config.defaults.interval:g}s", "dim")
        self.query_one("#summary", Label).update(summary)

    def _show_gpus(self) -> None:
        table = self.query_one("#gpu-processes", DataTable)
        sample = self.app.hosts[self.host].sample
        gpus = sample.gpus if sample else ()
        table.clear()
        for gpu in gpus:
            for p in gpu.processes:
                table.add_row(
                    Text(str(gpu.index)), Text(str(p.pid), justify="right"), Text(p.user or "?"),
                    Text(format_size(p.used_mem), justify="right"), Text(one_line(p.name or "")),
                )
        table.display = bool(gpus)
