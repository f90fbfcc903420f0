"""The dashboard under Pilot, against this machine and real sshd hosts: every key,
live hosts, live logs, hosts going down, its server killed. The app's client
starts a real server in the test's SIMTUI_HOME (conftest stops it after)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
from textual.widgets import Checkbox, Label
from uikit import frozen_app, post_frozen_hosts, until

from simtui.config import load_config
from simtui.model import HostState, JobSpec, JobState
from simtui.store import Store
from simtui.ui.app import SimtuiApp
from simtui.ui.screens.confirm import ConfirmScreen, PromptScreen
from simtui.ui.screens.help import HelpScreen
from simtui.ui.screens.history import HistoryScreen
from simtui.ui.screens.log import LogScreen
from simtui.ui.screens.new_job import NewJobScreen
from simtui.ui.screens.processes import ProcessesScreen
from simtui.ui.screens.record import RecordScreen
from simtui.ui.widgets.log import BATCH_BYTES, BATCH_LINES, LogFeed, LogPane, note_line

SIZE = (160, 48)
HOSTS = ["local", "h0", "h1", "h2"]


def quick(tmp_path, more: str = "") -> str:
    """Fast sampling; this machine's jobs in the test's own folder."""
    return f'[defaults]\ninterval = 0.3\nkill_grace = 2\ntimeout = 3\n{more}[local]\njobs_dir = "{tmp_path}/jobs"\n'


@pytest.fixture
def config_file(lab, tmp_path):
    """This machine and the lab's three sshd hosts."""
    path = tmp_path / "config.toml"
    path.write_text(quick(tmp_path) + lab.config_toml())
    return path


def dashboard(path, **kwargs) -> SimtuiApp:
    return SimtuiApp(load_config(str(path)), **kwargs)


def toasts(app: SimtuiApp) -> list[str]:
    """Every notification the app raises from now on."""
    seen: list[str] = []
    notify = app.notify

    def record(message, **kwargs):
        seen.append(message)
        return notify(message, **kwargs)

    app.notify = record
    return seen


async def all_up(pilot, names=HOSTS) -> None:
    hosts = pilot.app.hosts
    await until(pilot, lambda: all(hosts[n].state is HostState.UP and hosts[n].sample for n in names),
                what="every host up with a sample")


async def submit(app: SimtuiApp, *argv: str, host: str = "local", **more) -> str:
    """Start a job through the app's server (as the form would) and show it."""
    await app.connect()
    record = await app.client.submit(JobSpec(argv=argv, host=host, **more))
    app.refresh_jobs()
    return record.label


def state(app: SimtuiApp, label: str) -> JobState:
    return app.store.get(label).state


async def select(pilot, label: str) -> None:
    jobs = pilot.app.dashboard.jobs
    await until(pilot, lambda: label in jobs.records, what=f"{label} in the table")
    jobs.select(label)
    jobs.focus()
    await until(pilot, lambda: jobs.label == label and pilot.app.dashboard.log_pane.label == label,
                what=f"{label} selected")


async def test_hosts_panel_shows_every_host_live_and_a_dead_one_as_down(lab, tmp_path):
    path = tmp_path / "config.toml"
    dead = lab.config_toml(hosts=[lab.hosts[0]]).replace('name = "h0"', 'name = "dead"').replace(
        f"port = {lab.hosts[0].port}", "port = 1")
    path.write_text(quick(tmp_path) + lab.config_toml() + dead)
    app = dashboard(path)
    async with app.run_test(size=SIZE) as pilot:
        await all_up(pilot)
        await until(pilot, lambda: app.hosts["dead"].state is HostState.DOWN, what="dead down")
        await until(pilot, lambda: len(app.hosts["h0"].cpu) >= 2, what="a second sample")
        panel = app.dashboard.query_one("HostsPanel")
        rows = {o.id: str(o.prompt) for o in (panel.get_option_at_index(i) for i in range(panel.option_count))}
        for name in HOSTS:
            assert rows[name].startswith(f"● {name}") and " up " in rows[name]
            assert "CPU" in rows[name] and "load" in rows[name] and "mem" in rows[name] and "free" in rows[name]
        assert "down" in rows["dead"] and "refused" in rows["dead"]
        await pilot.press("n")  # the screen keeps working with a host down
        assert isinstance(app.screen, NewJobScreen)


async def test_n_opens_a_form_that_ranks_hosts_by_fit_and_launches_on_the_pick(config_file):
    app = dashboard(config_file)
    async with app.run_test(size=SIZE) as pilot:
        await all_up(pilot)
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, NewJobScreen)
        picker = form.query_one("#picker")
        assert picker.highlighted_option.id == "local"  # no needs: this machine, as `simtui run` does
        form.query_one("#mem").value = "100T"
        await until(pilot, lambda: form.placement.needs.mem == 100 * 1024**4, what="the needs")
        assert form.placement.host is None and picker.highlighted is None
        assert all("✗" in str(picker.get_option_at_index(i).prompt) for i in range(4))
        form.query_one("#mem").value = "1M"
        await until(pilot, lambda: form.placement.host is not None, what="a best fit")
        assert picker.highlighted_option.id == picker.get_option_at_index(0).id == form.placement.host
        assert "best fit" in str(picker.highlighted_option.prompt)
        for i in range(4):
            assert "✓" in str(picker.get_option_at_index(i).prompt)
        picker.focus()
        while picker.highlighted_option.id != "h1":
            await pilot.press("down")
        form.query_one("#command").value = r"""printf '\033]0;pwned\007\033[31mred\033[0m\a\033[2Jdone\n'"""
        form.query_one("#tags").value = "ui, smoke"
        form.query_one("#reason").value = "testing the form"
        await pilot.press("ctrl+s")
        assert not isinstance(app.screen, NewJobScreen)
        record = await until(pilot, lambda: next(iter(app.store.find(limit=1)), None), what="the record")
        assert record.host == "h1" and record.tags == ["ui", "smoke"] and record.reason == "testing the form"
        assert record.needs == {"cpus": 0, "mem": 1024**2, "gpus": 0, "gpu_mem": 0, "disk": 0}
        assert record.placement == f"h1: picked by hand ({form.placement.reasons['h1']})" or (
            form.placement.host == "h1" and record.placement == form.placement.why)
        pane = app.dashboard.log_pane
        await until(pilot, lambda: any("done" in line for line in pane.lines), what="the job's output")
        line = next(line for line in pane.lines if "done" in line)
        assert line == "\x1b[31mred\x1b[0mdone"  # colour kept; title, bell and screen clear gone
        await until(pilot, lambda: state(app, record.label) is JobState.SUCCEEDED, what="success")


async def open_form(pilot) -> tuple[NewJobScreen, list]:
    """The new-job form over a frozen dashboard; what it dismisses with lands in the list."""
    await post_frozen_hosts(pilot)
    dismissed: list = []
    form = NewJobScreen(pilot.app.hosts.values())
    await pilot.app.push_screen(form, dismissed.append)
    await until(pilot, lambda: form.is_mounted and form.query_one("#command").has_focus, what="the form")
    return form, dismissed


def fill(form: NewJobScreen, **fields: str) -> None:
    for key, value in fields.items():
        form.query_one(f"#{key}").value = value


def error(form: NewJobScreen) -> str:
    return str(form.query_one("#error", Label).content)


async def test_form_merges_a_params_file_and_overrides_as_simtui_run_does(tmp_path):
    params = tmp_path / "params.toml"
    params.write_text('lr = 0.1\nepochs = 10\n[model]\nwidth = 64\n')
    app = frozen_app()
    async with app.run_test(size=(100, 36)) as pilot:
        form, dismissed = await open_form(pilot)
        fill(form, command=f"python train.py --config {params}", workdir="~/proj-a", params=str(params),
             overrides="lr=0.05 name='run 1'")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: dismissed, what="the dismissed spec")
        assert app.screen is not form
    spec = dismissed[0]
    assert isinstance(spec, JobSpec) and spec.argv == ("python", "train.py", "--config", str(params))
    assert spec.params == {"lr": 0.05, "epochs": 10, "model": {"width": 64}, "name": "run 1"}  # the override wins
    assert (spec.params_file, spec.params_format, spec.workdir) == (str(params), "toml", "~/proj-a")
    assert spec.host == "local" and not spec.sync and spec.project_root is None


async def test_form_refuses_sync_with_a_workdir_and_stays_open():
    app = frozen_app()
    async with app.run_test(size=(100, 36)) as pilot:
        form, dismissed = await open_form(pilot)
        fill(form, command="python train.py", workdir="~/elsewhere")
        form.query_one("#sync", Checkbox).value = True
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "give sync or a workdir, not both" in error(form)
        assert app.screen is form and dismissed == [] and form.query_one("#workdir").has_focus


async def test_form_names_a_params_file_it_cannot_read_and_a_bad_override(tmp_path):
    missing = tmp_path / "nope.json"
    app = frozen_app()
    async with app.run_test(size=(100, 36)) as pilot:
        form, dismissed = await open_form(pilot)
        fill(form, command="python train.py", params=str(missing))
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert str(missing) in error(form) and "cannot read" in error(form)
        assert app.screen is form and dismissed == [] and form.query_one("#params").has_focus
        missing.write_text('{"lr": 0.1}')
        fill(form, overrides="lr=0.2 epochs")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "'epochs': expected key=value" in error(form)
        assert app.screen is form and dismissed == [] and form.query_one("#overrides").has_focus
        fill(form, overrides="lr=0.2 'name=unclosed")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert error(form).startswith("overrides: ") and dismissed == []


async def test_form_syncs_the_checkout_it_was_opened_in(tmp_path):
    repo = tmp_path / "lab-code"
    (repo / "src").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    app = frozen_app(cwd=repo / "src")
    async with app.run_test(size=(100, 36)) as pilot:
        form, dismissed = await open_form(pilot)
        toggle = form.query_one("#sync", Checkbox)
        assert not toggle.disabled and not toggle.value and "lab-code" in str(toggle.label)
        fill(form, command="python train.py --lr 0.1")
        toggle.value = True
        await pilot.press("ctrl+s")
        await until(pilot, lambda: dismissed, what="the dismissed spec")
    spec = dismissed[0]
    assert spec.sync and spec.project_root == str(repo.resolve()) and spec.workdir is None
    assert spec.params == {} and spec.params_file is None and spec.params_format == "json"


async def test_form_without_a_project_disables_sync(monkeypatch):
    from simtui.errors import UsageError
    from simtui.ui.screens import new_job

    def nowhere():
        raise UsageError("/ cannot be a project: run simtui from the project's folder")

    monkeypatch.setattr(new_job, "find_project", nowhere)
    app = frozen_app()
    async with app.run_test(size=(100, 36)) as pilot:
        form, dismissed = await open_form(pilot)
        toggle = form.query_one("#sync", Checkbox)
        assert toggle.disabled and "cannot be a project" in str(toggle.tooltip)
        fill(form, command="true")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: dismissed, what="the dismissed spec")
    assert not dismissed[0].sync and dismissed[0].project_root is None


async def test_k_kills_after_asking_and_escape_keeps_it_running(config_file):
    app = dashboard(config_file)
    seen = toasts(app)
    async with app.run_test(size=SIZE) as pilot:
        label = await submit(app, "sleep", "60", host="h0")
        await select(pilot, label)
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, ConfirmScreen) and state(app, label) is JobState.RUNNING
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await until(pilot, lambda: app.dashboard.jobs.records[label].state is JobState.KILLED, what="killed")
        await until(pilot, lambda: any(label in t and "killed" in t for t in seen), what="a toast")


async def test_r_relaunches_on_another_host(config_file):
    app = dashboard(config_file)
    async with app.run_test(size=SIZE) as pilot:
        label = await submit(app, "echo", "again", host="h0", tags=("first",))
        await select(pilot, label)
        await pilot.press("r")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        confirm.query_one("#choice").value = "h2"
        await pilot.press("y")
        rerun = await until(pilot, lambda: next((r for r in app.store.find() if r.repeat_of == label), None),
                            what="the new record")
        assert rerun.host == "h2" and rerun.tags == ["first"] and rerun.label != label
        await until(pilot, lambda: state(app, rerun.label) is JobState.SUCCEEDED, what="the rerun to end")
        await until(pilot, lambda: app.dashboard.jobs.label == rerun.label, what="the rerun selected")


async def test_enter_shows_the_record_and_l_the_whole_log(config_file):
    app = dashboard(config_file)
    async with app.run_test(size=SIZE) as pilot:
        label = await submit(app, "sh", "-c", "for i in 1 2 3; do echo line $i; done; printf 'no newline'", host="h2")
        await until(pilot, lambda: state(app, label).finished, what="the job to end")
        await select(pilot, label)
        await pilot.press("enter")
        assert isinstance(app.screen, RecordScreen)
        text = await until(pilot, lambda: str(app.screen.query_one("#record-text").render()), what="the record")
        assert f"Record {label}  succeeded (exit 0)" in text and "for i in 1 2 3" in text and "Events" in text
        await pilot.press("escape", "l")
        assert isinstance(app.screen, LogScreen)
        pane = app.screen.query_one(LogPane)
        await until(pilot, lambda: pane.lines[:4] == ["line 1", "line 2", "line 3", "no newline"], what="the log")
        await pilot.press("escape")
        assert app.screen is app.dashboard


async def test_slash_filters_t_tags_and_h_searches_the_history(config_file):
    app = dashboard(config_file)
    async with app.run_test(size=SIZE) as pilot:
        alpha = await submit(app, "echo", "alpha")
        beta = await submit(app, "echo", "beta")
        jobs = app.dashboard.jobs
        await until(pilot, lambda: {alpha, beta} <= set(jobs.records), what="both jobs")
        await pilot.press("slash", *"alpha")
        assert jobs.row_count == 1 and jobs.label == alpha
        await pilot.press("enter", "t")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"keep,best", "enter")
        await until(pilot, lambda: app.store.get(alpha).tags == ["keep", "best"], what="the tags")
        await until(pilot, lambda: "keep, best" in str(jobs.get_row(alpha)[3]), what="the tags shown")
        await pilot.press("escape")
        assert jobs.row_count == len(jobs.records) >= 2
        await pilot.press("h")
        history = app.screen
        assert isinstance(history, HistoryScreen)
        table = history.query_one("#history")
        await until(pilot, lambda: table.row_count >= 2, what="the history")
        await pilot.press("slash", *"beta")
        await until(pilot, lambda: table.row_count == 1, what="the search")
        await pilot.press("enter", "enter")
        assert isinstance(app.screen, RecordScreen) and app.screen.label == beta


@pytest.mark.parametrize("host", ["local", "h1"])
async def test_p_lists_a_hosts_processes(config_file, lab, host):
    app = dashboard(config_file)
    async with app.run_test(size=SIZE) as pilot:
        await all_up(pilot, ["local", host])
        label = await submit(app, "sleep", "30", host=host)
        pid = app.store.get(label).pid
        panel = app.dashboard.query_one("HostsPanel")
        panel.focus()
        panel.highlighted = HOSTS.index(host)
        await pilot.press("p")
        screen = app.screen
        assert isinstance(screen, ProcessesScreen) and screen.host == host
        table = screen.query_one("#processes")
        await until(pilot, lambda: table.row_count > 0, what="the processes")
        pids = {int(str(table.get_row_at(i)[0])) for i in range(table.row_count)}
        assert pid in pids  # the job's wrapper, on its own host
        await pilot.press("escape")
        assert app.screen is app.dashboard
        await app.client.kill(label)


async def test_question_mark_lists_the_keys_and_keys_remap_from_the_config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(quick(tmp_path, '[keys]\nkill = "x"\nhistory = "H"\nnope = "z"\n'))
    app = dashboard(path)
    seen = toasts(app)
    async with app.run_test(size=SIZE) as pilot:
        assert any("unknown action nope" in t for t in seen)
        label = await submit(app, "sleep", "30")
        await select(pilot, label)
        await pilot.press("question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        rows = {action: (key, does) for key, does, action in help_screen.keys}
        assert rows["kill"][0] == "x" and rows["history"][0] == "H" and rows["new"][0] == "n"
        assert set(rows) >= {"new", "kill", "relaunch", "record", "log", "filter", "tag", "history", "processes",
                             "quit", "help"}
        await pilot.press("escape", "k")
        assert app.screen is app.dashboard  # k is free now
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(pilot, lambda: state(app, label) is JobState.KILLED, what="killed by x")
        footer_keys = {b.binding.id: key for key, b in app.screen.active_bindings.items() if b.binding.id}
        assert footer_keys["kill"] == "x"


async def test_q_quits_and_jobs_keep_running(config_file):
    app = dashboard(config_file)
    async with app.run_test(size=SIZE) as pilot:
        label = await submit(app, "sleep", "30", host="h0")
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, what="the app to exit")
    store = Store.open()
    try:
        assert store.get(label).state is JobState.RUNNING
    finally:
        store.close()


async def test_queued_jobs_start_while_the_dashboard_is_open(config_file):
    app = dashboard(config_file)
    async with app.run_test(size=SIZE) as pilot:
        first = await submit(app, "sleep", "0.5", host="h1")
        then = await submit(app, "echo", "after", host="h2", after=first)
        assert state(app, then) is JobState.QUEUED
        await until(pilot, lambda: state(app, then) is JobState.SUCCEEDED, what="the queued job")
        assert app.store.get(then).started >= app.store.get(first).ended


async def test_a_host_going_down_is_shown_and_toasted_never_fatal(make_lab, tmp_path):
    lab = make_lab(1)
    path = tmp_path / "config.toml"
    path.write_text(quick(tmp_path) + lab.config_toml())
    app = dashboard(path)
    seen = toasts(app)
    async with app.run_test(size=SIZE) as pilot:
        await all_up(pilot, ["local", "x0"])
        lab.hosts[0].stop()
        await until(pilot, lambda: app.hosts["x0"].state is HostState.DOWN, what="x0 down")
        assert any(t.startswith("x0 is down") for t in seen)
        await pilot.press("n", "escape")  # still answering keys
        lab.hosts[0].start()
        await until(pilot, lambda: app.hosts["x0"].state is HostState.UP, timeout=60, what="x0 back up")


async def test_a_million_lines_do_not_stall_typing_and_memory_stays_bounded(config_file):
    app = dashboard(config_file)
    async with app.run_test(size=SIZE) as pilot:
        label = await submit(app, "seq", "1", "1000000")
        await select(pilot, label)
        pane = app.dashboard.log_pane
        await pilot.press("slash", *"seq 1 1000000")  # a filter that keeps the job shown
        assert app.dashboard.query_one("#filter").value == "seq 1 1000000"
        await until(pilot, lambda: pane.lines and "succeeded" in pane.lines[-1], timeout=120, what="the end")
        lines = pane.lines
        numbers = [int(line) for line in lines if line.isdigit()]
        assert len(lines) <= pane.source.max_lines and numbers == sorted(set(numbers))  # bounded, in order, once
        assert lines[-2] == "1000000" and lines[-3] == "999999"
        assert pane.source.position == len("".join(f"{i}\n" for i in range(1, 1000001)))


async def frozen_feed(pilot, label: str = "0123456789ab") -> LogFeed:
    """The dashboard pane of a frozen app following a job with no log: its feed, to feed by hand."""
    pane = pilot.app.dashboard.log_pane
    pane.follow(label)
    await until(pilot, lambda: not pilot.app.workers, what="the frozen stream to end")
    return pane.source


async def test_log_pane_cleans_lines_and_cuts_runaway_ones(config_file):
    app = dashboard(config_file, live=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.dashboard.log_pane
        feed = await frozen_feed(pilot)
        feed.feed(b"plain\n\x1b[1;32mgreen\x1b[0m\n\x1b]8;;http://x\x07link\x1b]8;;\x07\n\x1b]0;tit")
        feed.feed(b"le\x07\x1b[5Acursor\x1b[?25l\n10%\r50%\r100%\r\n\xff\xfebad utf8\x9b6n\xc2\x9b2J\nsplit \x1b[3")
        feed.feed(b"1mline\x1b\n" + b"x" * 40000)
        await pilot.pause()
        assert pane.lines == ["plain", "\x1b[1;32mgreen\x1b[0m", "link", "cursor", "100%",
                              "\ufffd\ufffdbad utf8\ufffd6n", "split \x1b[31mline", "x" * 40000]
        count = 3 * feed.max_lines  # more than a batch takes: most are skipped
        feed.feed(b"".join(b"%d\n" % i for i in range(count)))
        lines = pane.lines
        assert len(lines) < feed.max_lines and lines[-1] == str(count - 1) and "lines skipped" in lines[8]
        await pilot.pause()
        assert pane.scroll_offset.y == pane.max_scroll_y > 0  # following the end


async def test_a_flood_between_two_batches_is_skipped_and_said_not_queued(config_file):
    app = dashboard(config_file, live=False)
    async with app.run_test(size=SIZE) as pilot:
        feed = await frozen_feed(pilot)
        line = b"%07d " + b"y" * 91 + b"\n"  # 100 bytes
        count = 126_000  # 12.6 MB: three batches' worth
        for start in range(0, count, 1000):  # all before the next batch: the screen fell behind
            feed.feed(b"".join(line % i for i in range(start, start + 1000)))
            assert len(feed._pending) <= 2 * BATCH_BYTES  # bounded while it waits
        lines = app.dashboard.log_pane.lines
        kept = min(BATCH_BYTES // 100, BATCH_LINES)  # one batch of whole lines
        assert lines[0] == note_line(f"{count - kept} lines skipped; `simtui log 0123456789ab` shows them")
        assert [int(x.split()[0]) for x in lines[1:]] == list(range(count - kept, count))


def host_followers(label: str) -> int:
    """Processes on this machine (its sshd hosts included) following ``label``'s log live."""
    return sum(1 for proc in psutil.process_iter(["cmdline"])
               if any(arg.endswith(f"/{label}/out.log") for arg in proc.info["cmdline"] or ())
               and ("-S" in proc.info["cmdline"] or "-F" in proc.info["cmdline"]))


async def test_the_dashboard_streams_each_log_once(config_file):
    """The pane and the full-screen log of one job are views of one stream: one feed in
    the app, one follower on the host; the feed goes with the last view."""
    app = dashboard(config_file)
    ticking = "i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo tick $i; sleep 0.05; done"
    async with app.run_test(size=SIZE) as pilot:
        label = await submit(app, "sh", "-c", ticking, host="h2")
        await select(pilot, label)
        pane = app.dashboard.log_pane
        await until(pilot, lambda: "tick 2" in pane.lines, what="ticks in the pane")
        await pilot.press("l")
        full = app.screen.query_one(LogPane)
        assert full.source is pane.source and app.logs == {label: pane.source} and pane.source.views == {pane, full}
        await until(pilot, lambda: host_followers(label) >= 1, what="the follower on h2")
        assert host_followers(label) == 1
        seen = len(full.lines)
        await until(pilot, lambda: len(full.lines) > seen + 3, what="more ticks on the full screen")
        assert full.lines == pane.lines
        await pilot.press("escape")
        assert app.logs == {label: pane.source} and pane.source.views == {pane}
        await app.client.kill(label)
        await until(pilot, lambda: pane.lines[-1].startswith(f"\x1b[2;3m── {label} "), what="the end in the pane")
        assert pane.lines[-1].startswith(f"\x1b[2;3m── {label} killed")  # the kill's outcome, not the TERM's exit
        ticks = [line for line in pane.lines if line.startswith("tick")]
        assert ticks == [f"tick {i}" for i in range(1, len(ticks) + 1)]  # every line once
        pane.follow(None)
        assert app.logs == {}


async def test_the_dashboard_outlives_a_killed_server(tmp_path):
    """kill -9 of the server: the dashboard reconnects (a new one starts), says so,
    and every stream goes on: hosts, the jobs table, the log pane (every byte once)."""
    path = tmp_path / "config.toml"
    path.write_text(quick(tmp_path))
    home = Path(os.environ["SIMTUI_HOME"])
    work = tmp_path / "work"
    work.mkdir()
    app = dashboard(path)
    seen = toasts(app)
    ticking = "i=0; while [ ! -e stop ]; do i=$((i+1)); echo tick $i; sleep 0.05; done; echo end"
    async with app.run_test(size=SIZE) as pilot:
        await all_up(pilot, ["local"])
        ticker = await submit(app, "sh", "-c", ticking, workdir=str(work))
        await select(pilot, ticker)
        pane = app.dashboard.log_pane
        await until(pilot, lambda: "tick 3" in pane.lines, what="the ticks")
        old = int((home / "server.pid").read_text())
        assert app.server_pid == app.client.server_pid == old

        os.kill(old, signal.SIGKILL)
        await until(pilot, lambda: not app.client.connected or app.client.server_pid != old, what="the loss seen")
        await app.connect()  # as a key does: the new server takes it
        gate = ("sh", "-c", "while [ ! -e go ]; do sleep 0.05; done; echo after")
        gated = (await app.client.submit(JobSpec(argv=gate, host="local", workdir=str(work)))).label
        await until(pilot, lambda: any(t.startswith("simtui server restarted") for t in seen), what="the toast")
        new = app.server_pid
        assert new != old and app.client.server_pid == new and int((home / "server.pid").read_text()) == new

        jobs = app.dashboard.jobs  # nothing but the jobs stream tells the table of this job
        await until(pilot, lambda: gated in jobs.records and jobs.records[gated].state is JobState.RUNNING,
                    what="the job submitted after the kill, running")
        (work / "go").touch()
        await until(pilot, lambda: jobs.records[gated].state is JobState.SUCCEEDED, what="it succeeded")
        since = app.hosts["local"].sample.time
        await until(pilot, lambda: app.hosts["local"].sample.time > since, what="a sample from the new server")

        shown = len(pane.lines)
        await until(pilot, lambda: len(pane.lines) > shown + 3, what="ticks through the new server")
        (work / "stop").touch()
        await until(pilot, lambda: pane.lines and f"{ticker} succeeded" in pane.lines[-1],
                    what="the end of the log")
        lines = pane.lines[:-1]
        assert lines[-1] == "end" and lines[:-1] == [f"tick {i}" for i in range(1, len(lines))]  # once each
        assert not [t for t in seen if "went away" in t or "Error" in t]
