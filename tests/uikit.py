"""Helpers for the dashboard's tests: waiting on conditions under Pilot, frozen
hosts and records for snapshots."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from recordkit import T0, make_record

from simtui.config import parse_config
from simtui.model import GpuProcess, GpuSample, HostFacts, HostState, JobState, ProbeResult, Sample
from simtui.store import Store
from simtui.store.logs import LocalLog
from simtui.ui.app import HostUpdated, SimtuiApp
from simtui.ui.widgets.log import BACKLOG_BYTES

GiB = 1024**3
NOW = T0 + 3600  # the frozen clock


async def until(pilot, condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Let the app run until ``condition()`` is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await pilot.pause(0.05)
    return value


@pytest.fixture
def utc(monkeypatch):
    """Times in records show in UTC whatever the machine's zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def frozen_config():
    """This machine, a GPU box and a host that is down: names only, never dialled."""
    return parse_config({
        "hosts": [
            {"name": "gpu-box", "address": "gpu-box.lab.example", "tags": ["gpu"]},
            {"name": "old-box", "address": "old-box.lab.example"},
        ],
    }, "frozen.toml")


def frozen_results(config, step: int) -> list[ProbeResult]:
    """Step ``step`` of a made-up history: busy CPUs, a GPU filling up, a host down."""
    local, gpu_box, old_box = config.hosts
    wave = [12, 18, 30, 45, 60, 52, 40, 35, 55, 70, 82, 76]
    cpu = wave[step % len(wave)]
    gpus = tuple(
        GpuSample(index=i, name="NVIDIA H100 80GB HBM3", util=float((cpu + 20 * i) % 100),
                  mem_used=(20 + 10 * i + step) * GiB, mem_total=80 * GiB, temperature=40.0 + i, power=300.0,
                  processes=(GpuProcess(pid=4242 + i, user="alice", used_mem=(18 + step) * GiB, name="python"),))
        for i in range(2)
    )

    def sample(host: str, cores: int, used: float, total: int, **more: Any) -> Sample:
        return Sample(host=host, time=NOW, cpu_percent=float(cpu if host == "gpu-box" else cpu / 2),
                      cpu_count=cores, load=(cores * cpu / 100, 1.5, 1.25), mem_total=total * GiB,
                      mem_used=int(used * GiB), mem_available=int((total - used) * GiB),
                      disk_total=500 * GiB, disk_free=int(120.5 * GiB), **more)

    return [
        ProbeResult(local, sample("local", 8, 6.5 + step / 10, 16), HostFacts(), HostState.UP),
        ProbeResult(gpu_box, sample("gpu-box", 64, 100 + step, 512, gpus=gpus), HostFacts(), HostState.UP),
        ProbeResult(old_box, None, None, HostState.DOWN, "connection refused"),
    ]


def frozen_records() -> list:
    """Records of every state, with a log for the first, stored in $SIMTUI_HOME."""
    records = [
        make_record("3f2a9c1b7d40", host="gpu-box", command="python train.py --lr 0.1 --epochs 50",
                    argv=["python", "train.py", "--lr", "0.1", "--epochs", "50"], state=JobState.RUNNING,
                    exit_code=None, ended=None, duration=None, started=NOW - 754, created=NOW - 760,
                    tags=["sweep", "lr"], reason="does a smaller lr converge?", params={"lr": 0.1, "epochs": 50},
                    workdir="~/proj", placement="gpu-box: the only host of 3 that fits (left over: 1 spare GPU)",
                    git={"repo": "proj", "branch": "main", "commit": "9c1d2e3f4a5b", "dirty": False},
                    environment={"python": "3.11.7", "python_executable": "/usr/bin/python3", "os": "Linux",
                                 "kernel": "6.8.0", "arch": "x86_64", "hostname": "gpu-box", "cpu_count": 64,
                                 "memory": 512 * GiB, "packages": {"torch": "2.3.0", "numpy": "1.26.4"}}),
        make_record("8e51b0aa92c7", command="sh -c 'sleep 600'", argv=["sh", "-c", "sleep 600"],
                    state=JobState.QUEUED, exit_code=None, started=None, ended=None, duration=None,
                    created=NOW - 30, after="3f2a9c1b7d40"),
        make_record("c0ffee123456", command="python eval.py --split test", state=JobState.FAILED, exit_code=3,
                    created=NOW - 7200, tags=["eval"], log_tail="Traceback (most recent call last):\nValueError: bad split"),
        make_record("b16b00b5cafe", host="gpu-box", command="python train.py --lr 0.3", created=NOW - 9000,
                    duration=3725.0, tags=["sweep"]),
        make_record("d34db33f0001", command="make data", state=JobState.KILLED, exit_code=143, created=NOW - 10000),
    ]
    store = Store.open()
    store.insert(*records)
    store.close()
    log = LocalLog("3f2a9c1b7d40")
    log.append(b"epoch 1/50 loss=2.31\n\x1b[32mepoch 2/50 loss=1.87\x1b[0m\n\x1b]0;stolen title\x07epoch 3/50"
               b" loss=1.52\x07\n\x1b[2J\x1b[Hepoch 4/50 loss=1.30  \x1b[33mwarn: lr high\x1b[0m\n")
    log.close()
    return records


def frozen_project() -> Path:
    """A git checkout named ``proj`` beside $SIMTUI_HOME: the project a frozen app runs in."""
    root = Path(os.environ["SIMTUI_HOME"]).parent / "proj"
    if not (root / ".git").exists():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


class FrozenApp(SimtuiApp):
    """A SimtuiApp that runs in ``cwd`` (restored after): the form's sync toggle names
    the same project on every machine, whatever the checkout's folder is called. Its
    log pane shows the local copy that frozen_records wrote (no server is asked)."""

    CSS_PATH = Path(sys.modules[SimtuiApp.__module__].__file__).with_name(SimtuiApp.CSS_PATH)

    def __init__(self, *args: Any, cwd: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cwd = cwd

    def frozen_log(self, label: str) -> tuple[int, bytes]:
        return LocalLog(label).tail(BACKLOG_BYTES)

    async def run_async(self, *args: Any, **kwargs: Any) -> Any:  # snap_compare runs it so
        with contextlib.chdir(self.cwd):
            return await super().run_async(*args, **kwargs)

    @contextlib.asynccontextmanager
    async def run_test(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        with contextlib.chdir(self.cwd):
            async with super().run_test(*args, **kwargs) as pilot:
                yield pilot


def frozen_app(cwd: Path | None = None) -> SimtuiApp:
    """A dashboard with no live worker: hosts and jobs as frozen_* make them, run in
    ``cwd`` (default: frozen_project())."""
    config = frozen_config()
    frozen_records()
    return FrozenApp(config, live=False, clock=lambda: NOW, cwd=cwd or frozen_project())


async def post_frozen_hosts(pilot) -> None:
    app = pilot.app
    for step in range(12):
        for result in frozen_results(app.config, step):
            app.post_message(HostUpdated(result))
    await pilot.pause()


async def pick_and_submit(pilot, form, option_id: str, command: str, dismissed: list) -> Any:
    """In the new-job form: down the picker to ``option_id``, type ``command``, ctrl+s;
    the spec it was dismissed with."""
    picker = form.query_one("#picker")
    picker.focus()
    if picker.highlighted is None:
        picker.highlighted = 0
    while picker.highlighted_option.id != option_id:
        await pilot.press("down")
    form.query_one("#command").value = command
    await pilot.press("ctrl+s")
    await until(pilot, lambda: dismissed, what="the spec")
    return dismissed[0]
