"""The dashboard with a Slurm cluster as a host: a row per partition on the hosts
panel, `p` listing the user's jobs in the cluster's queue and `k` cancelling one,
the new-job form offering CLUSTER/PARTITION. First with frozen data (a sample made
from sinfo/squeue text as the cluster prints it, a queue faked in the app's
client), then end to end against the real cluster of tests/slurmd.py."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable, OptionList
from uikit import FrozenApp, frozen_project, frozen_results, pick_and_submit, until

from simtui.config import load_config, parse_config
from simtui.errors import SimtuiError
from simtui.hosts.slurm import cluster_sample, reason_words
from simtui.model import ClusterJob, HostFacts, HostState, JobSpec, JobState, ProbeResult
from simtui.ui.app import HostUpdated, SimtuiApp
from simtui.ui.screens.cluster_jobs import ClusterJobsScreen
from simtui.ui.screens.confirm import ConfirmScreen
from simtui.ui.screens.new_job import NewJobScreen
from simtui.ui.screens.processes import ProcessesScreen
from simtui.ui.widgets.hosts import HostsPanel

SIZE = (160, 48)

# What CLUSTER (simtui/hosts/slurm.py) prints: sinfo per node and partition, "--", squeue's jobs.
CLUSTER_OUT = """\
debug*|idle|0/2/0/2|gpu:2|gpu:0|20000|0|infinite|localhost|up|
gpu|mixed|1/1/0/2|gpu:2|gpu:1(IDX:0)|20000|4000|1-00:00:00|node1|up|
gpu|down*|0/0/2/2|gpu:2|gpu:0|20000|0|1-00:00:00|node2|up|
old|idle|0/4/0/4|(null)|(null)|8000|0|30:00|node3|down|
--
gpu|PENDING|alice
gpu|PENDING|bob
gpu|RUNNING|alice
debug|PENDING|alice
"""


def cluster_config():
    """This machine, an SSH box and a Slurm cluster "lab": names only, never dialled."""
    return parse_config({
        "hosts": [
            {"name": "gpu-box", "address": "gpu-box.lab.example"},
            {"name": "lab", "address": "login.lab.example", "kind": "slurm"},
        ],
    }, "frozen.toml")


def cluster_app() -> FrozenApp:
    return FrozenApp(cluster_config(), live=False, cwd=frozen_project())


def post_cluster(pilot, state: HostState = HostState.UP, out: str = CLUSTER_OUT) -> None:
    """This machine and gpu-box as uikit makes them; the cluster as sinfo/squeue say."""
    app = pilot.app
    local, gpu_box, _ = frozen_results(parse_config({"hosts": [
        {"name": "gpu-box", "address": "x"}, {"name": "old-box", "address": "y"}]}, "x.toml"), 0)
    for result in (local, gpu_box):
        app.post_message(HostUpdated(ProbeResult(app.config.host(result.spec.name), result.sample,
                                                 HostFacts(), HostState.UP)))
    spec = app.config.host("lab")
    sample = cluster_sample("lab", out, "alice") if state is not HostState.DOWN else None
    app.post_message(HostUpdated(ProbeResult(spec, sample, HostFacts(), state,
                                             "connection refused" if state is HostState.DOWN else None)))


def rows(panel: OptionList) -> dict[str, str]:
    return {o.id: str(o.prompt) for o in (panel.get_option_at_index(i) for i in range(panel.option_count))}


def highlight(panel: HostsPanel, option_id: str) -> None:
    panel.focus()
    panel.highlighted = panel.get_option_index(option_id)


async def test_a_cluster_shows_a_row_per_partition_and_one_row_until_its_first_sample():
    app = cluster_app()
    async with app.run_test(size=SIZE) as pilot:
        panel = app.dashboard.query_one(HostsPanel)
        assert list(rows(panel)) == ["local", "gpu-box", "lab"]
        assert "connecting" in rows(panel)["lab"]
        highlight(panel, "lab")
        post_cluster(pilot)
        await until(pilot, lambda: "lab/gpu" in rows(panel), what="the partitions' rows")
        shown = rows(panel)
        assert list(shown) == ["local", "gpu-box", "lab/debug", "lab/gpu", "lab/old"]
        assert panel.highlighted_option.id == "lab/debug"  # the highlight stays on the cluster
        debug, gpu, old = shown["lab/debug"], shown["lab/gpu"], shown["lab/old"]
        assert debug.startswith("● lab/debug*") and not gpu.startswith("● lab/gpu*")  # Slurm's default
        assert " up " in debug and "nodes 1/0/0/0" in debug and "CPUs   2/2   free" in debug
        assert "GPUs  2/2  free" in debug and "queue 1 pending (1 yours), 0 running yours" in debug
        assert "nodes 0/1/0/1" in gpu and "CPUs   1/4   free" in gpu and "GPUs  1/4  free" in gpu
        assert "queue 2 pending (1 yours), 1 running yours" in gpu and "limit 1-00:00:00" in gpu
        assert " down " in old and old.endswith("partition down") and "GPUs" not in old and "30:00" not in old
        assert "CPU" in shown["local"] and "mem" in shown["local"]  # other hosts as ever
        assert panel.border_subtitle == HostsPanel.NODES
        highlight(panel, "lab/gpu")
        assert (panel.host, panel.partition, panel.target) == ("lab", "gpu", "lab/gpu")
        highlight(panel, "gpu-box")
        assert (panel.host, panel.partition, panel.target) == ("gpu-box", None, "gpu-box")
        assert "Slurm 3 partitions" in str(app.hosts["lab"].text(3))  # the cluster as a whole

        highlight(panel, "lab/gpu")
        post_cluster(pilot, HostState.DOWN)  # down: one row again, with why
        await until(pilot, lambda: "lab" in rows(panel), what="the cluster's one row")
        assert list(rows(panel)) == ["local", "gpu-box", "lab"] and panel.highlighted_option.id == "lab"
        assert " down " in rows(panel)["lab"] and "refused" in rows(panel)["lab"]
        assert (panel.host, panel.partition) == ("lab", None)


class FakeQueue:
    """The app's client's queue and cancel, as the server would answer them."""

    def __init__(self, app: SimtuiApp, jobs: list[ClusterJob], fail: str | None = None) -> None:
        self.jobs, self.fail, self.cancelled, self.asked = jobs, fail, [], 0
        app.client.queue = self.queue
        app.client.cancel = self.cancel
        app.connect = self.connect

    async def connect(self) -> None:
        pass

    async def queue(self, host: str) -> list[ClusterJob]:
        assert host == "lab"
        self.asked += 1
        return list(self.jobs)

    async def cancel(self, host: str, job_id: str) -> Any:
        if self.fail:
            raise SimtuiError(self.fail)
        self.cancelled.append((host, job_id))
        self.jobs = [job for job in self.jobs if job.job_id != job_id]
        return None


def queue_jobs() -> list[ClusterJob]:
    return [
        ClusterJob("7", "prep", "RUNNING", reason_words("None", "RUNNING"), "debug", "localhost", "1:02", "infinite"),
        ClusterJob("12", "simtui-3f2a9c1b7d40", "PENDING", reason_words("Resources", "PENDING"), "gpu", "",
                   "0:00", "1-00:00:00", "3f2a9c1b7d40"),
        ClusterJob("9", "train", "PENDING", reason_words("Priority", "PENDING"), "gpu", "", "0:00", "1-00:00:00"),
    ]


def toasts(app: SimtuiApp) -> list[tuple[str, str]]:
    """Every notification from now on: (message, severity)."""
    seen: list[tuple[str, str]] = []
    notify = app.notify

    def record(message, **kwargs):
        seen.append((message, kwargs.get("severity", "information")))
        return notify(message, **kwargs)

    app.notify = record
    return seen


def table_rows(table: DataTable) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def test_p_on_a_partition_row_lists_your_jobs_there_and_k_cancels_one_after_asking():
    app = cluster_app()
    seen = toasts(app)
    async with app.run_test(size=SIZE) as pilot:
        fake = FakeQueue(app, queue_jobs())
        panel = app.dashboard.query_one(HostsPanel)
        post_cluster(pilot)
        await until(pilot, lambda: "lab/gpu" in rows(panel), what="the partitions' rows")
        highlight(panel, "lab/gpu")
        await pilot.press("p")
        screen = app.screen
        assert isinstance(screen, ClusterJobsScreen) and (screen.host, screen.partition) == ("lab", "gpu")
        table = screen.query_one("#cluster-jobs", DataTable)
        await until(pilot, lambda: table.row_count == 3, what="the queue")
        assert [str(c.label) for c in table.columns.values()] == [
            "job id", "label", "name", "state", "reason", "partition", "nodes", "elapsed", "limit"]
        assert table_rows(table) == [  # the partition it came from first, then by job id
            ["9", "-", "train", "PENDING", "waiting for jobs of higher priority (priority)", "gpu", "-", "0:00",
             "1-00:00:00"],
            ["12", "3f2a9c1b7d40", "simtui-3f2a9c1b7d40", "PENDING", "waiting for resources", "gpu", "-", "0:00",
             "1-00:00:00"],
            ["7", "-", "prep", "RUNNING", "", "debug", "localhost", "1:02", "infinite"],
        ]
        assert table.cursor_row == 0 and screen.job.job_id == "9"
        footer = {b.binding.id: key for key, b in screen.active_bindings.items() if b.binding.id}
        assert footer["kill"] == "k" and footer["back"] == "escape"

        await pilot.press("down")
        assert screen.job.job_id == "12"
        asked = fake.asked
        await until(pilot, lambda: fake.asked > asked, what="the next poll")
        assert screen.job.job_id == "12"  # the highlight stays on its job
        await pilot.press("k")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen) and "3f2a9c1b7d40 (Slurm job 12) on lab" in confirm.question
        await pilot.press("escape")
        assert app.screen is screen and fake.cancelled == []
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await until(pilot, lambda: fake.cancelled == [("lab", "12")], what="the cancel")
        await until(pilot, lambda: table.row_count == 2, what="the job gone from the list")
        assert [row[0] for row in table_rows(table)] == ["9", "7"]
        await until(pilot, lambda: ("Slurm job 12 cancelled on lab", "information") in seen, what="a toast")

        await pilot.press("escape")
        assert app.screen is app.dashboard
        highlight(panel, "gpu-box")  # any other host: its processes, as before
        await pilot.press("p")
        assert isinstance(app.screen, ProcessesScreen) and app.screen.host == "gpu-box"


async def test_p_on_a_cluster_before_its_first_sample_and_a_failed_cancel_is_reported():
    app = cluster_app()
    seen = toasts(app)
    async with app.run_test(size=SIZE) as pilot:
        fake = FakeQueue(app, queue_jobs()[:1], fail="lab: scancel: Invalid job id specified")
        panel = app.dashboard.query_one(HostsPanel)
        highlight(panel, "lab")  # connecting, no sample yet: a cluster by its spec
        await pilot.press("p")
        screen = app.screen
        assert isinstance(screen, ClusterJobsScreen) and (screen.host, screen.partition) == ("lab", None)
        table = screen.query_one("#cluster-jobs", DataTable)
        await until(pilot, lambda: table.row_count == 1, what="the queue")
        await pilot.press("k", "y")
        await until(pilot, lambda: any("Invalid job id" in m and s == "error" for m, s in seen), what="the error")
        assert app.screen is screen and table.row_count == 1 and fake.cancelled == []
        fake.jobs = []
        await until(pilot, lambda: table.row_count == 0, what="an empty queue")
        await pilot.press("k")
        assert app.screen is screen and ("no job selected", "warning") in seen


async def test_the_form_offers_the_cluster_and_each_of_its_partitions():
    app = cluster_app()
    async with app.run_test(size=SIZE) as pilot:
        post_cluster(pilot)
        await until(pilot, lambda: app.hosts["lab"].partitions, what="the cluster's sample")
        dismissed: list = []
        form = NewJobScreen(app.hosts.values())
        await app.push_screen(form, dismissed.append)
        await until(pilot, lambda: form.is_mounted and form.query_one("#command").has_focus, what="the form")
        picker = form.query_one("#picker", OptionList)
        prompts = rows(picker)
        assert set(prompts) == {"local", "gpu-box", "lab", "lab/debug", "lab/gpu", "lab/old"}
        assert "default partition debug" in prompts["lab"]
        assert "✗" in prompts["lab/old"] and "partition is down" in prompts["lab/old"]

        form.query_one("#cpus").value = "2"  # all that debug's node has free: the tightest fit
        form.query_one("#gpus").value = "2"
        await until(pilot, lambda: form.placement.needs.gpus == 2, what="the needs")
        assert form.placement.host == "lab/debug" and picker.highlighted_option.id == "lab/debug"
        prompts = rows(picker)
        assert [picker.get_option_at_index(i).id for i in range(2)] == ["lab", "lab/debug"]
        assert "✓" in prompts["lab"] and "✓" in prompts["lab/debug"] and "✗" in prompts["local"]
        assert "✗" in prompts["lab/gpu"]  # one GPU free on its one node up: later, after its queue

        spec = await pick_and_submit(pilot, form, "lab/gpu", "python train.py", dismissed)
    assert spec.host == "lab/gpu" and spec.needs.gpus == 2  # the engine takes CLUSTER/PARTITION apart
    assert spec.placement.startswith("lab/gpu: picked by hand (")


async def test_end_to_end_a_real_cluster_its_partitions_your_job_and_k(slurm_lab, tmp_path):
    """The real cluster (tests/slurmd.py) behind its sshd login host: the partitions
    appear, a simtui run shows in `p` with its label, and `k` ends it in the queue
    and in its record."""
    path = tmp_path / "config.toml"
    path.write_text("[defaults]\ninterval = 0.3\nkill_grace = 2\ntimeout = 5\n" + slurm_lab.config_toml())
    app = SimtuiApp(load_config(str(path)))
    seen = toasts(app)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.dashboard.query_one(HostsPanel)
        await until(pilot, lambda: {"lab/debug", "lab/gpu"} <= set(rows(panel)), timeout=60,
                    what="the partitions' rows")
        assert rows(panel)["lab/debug"].startswith("● lab/debug*") and " up " in rows(panel)["lab/debug"]
        assert "GPUs" in rows(panel)["lab/gpu"]

        await app.connect()
        record = await app.client.submit(JobSpec(argv=("sleep", "60"), host="lab/debug"))
        label = record.label
        assert record.host == "lab"
        await until(pilot, lambda: "(1 yours)" in rows(panel)["lab/debug"]
                    or "1 running yours" in rows(panel)["lab/debug"], timeout=60, what="the job in the queue")

        highlight(panel, "lab/debug")
        await pilot.press("p")
        screen = app.screen
        assert isinstance(screen, ClusterJobsScreen) and (screen.host, screen.partition) == ("lab", "debug")
        table = screen.query_one("#cluster-jobs", DataTable)
        job = await until(pilot, lambda: next((j for j in screen.jobs.values() if j.label == label), None),
                          timeout=60, what="the job with its label")
        assert job.partition == "debug" and job.name == f"simtui-{label}"
        table.move_cursor(row=table.get_row_index(job.job_id))
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await until(pilot, lambda: app.store.get(label).state is JobState.KILLED, timeout=60, what="killed")
        await until(pilot, lambda: job.job_id not in screen.jobs, timeout=60, what="the job gone from the queue")
        await until(pilot, lambda: job.job_id not in slurm_lab.cluster.queue(), timeout=30, what="squeue")
        await until(pilot, lambda: (f"{label} killed on lab", "information") in seen, what="a toast")
        assert not [m for m, severity in seen if severity == "error"]
        await pilot.press("escape")
        assert app.screen is app.dashboard

