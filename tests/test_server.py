"""The local simtui server: one owner of the truth that outlives every window.

Against real sshd hosts, through the real command line and the library.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from clirun import popen, simtui, simtui_json
from sshd import IS_ROOT, wait_for


@pytest.fixture
def quick_config(lab, tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[defaults]\ninterval = 0.2\nkill_grace = 2\n" + lab.config_toml())
    return path


def server_pid(home: Path) -> int:
    return int((home / "server.pid").read_text())


def test_an_after_job_starts_with_no_client_open(quick_config, lab):
    first = simtui("run", "--host", "h0", "--", "sh", "-c", "sleep 1; echo one", config=quick_config)
    assert first.returncode == 0, first.stderr
    second = simtui("run", "--host", "h1", "--after", first.stdout.strip(), "--", "echo", "two", config=quick_config)
    label = second.stdout.strip()
    assert simtui_json("show", label, config=quick_config)["state"] == "queued"
    # no command runs now: the server starts it once the first has succeeded
    record = wait_for(lambda: (r := simtui_json("show", label, config=quick_config))["state"] == "succeeded"
                      and r["log_tail"] and r, timeout=60, what="the queued job to run and end")
    assert record["log_tail"] == "two"


def _sessions(port: int) -> int:
    """Established TCP connections to an sshd port: one per SSH connection."""
    return sum(1 for c in psutil.net_connections("tcp")
               if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


def test_one_ssh_connection_per_host_for_dashboard_follower_and_list(quick_config, lab, simtui_env):
    h1 = lab.hosts[1]
    label = simtui("run", "--host", "h1", "--", "sh", "-c", "while :; do echo tick; sleep 0.2; done",
                   config=quick_config).stdout.strip()
    follower = popen("log", label, "--follow", config=quick_config)
    watcher = popen("watch", config=quick_config)
    try:
        assert "watching" in watcher.stderr.readline()
        assert follower.stdout.readline() == "tick\n"
        assert simtui("list", config=quick_config).returncode == 0
        wait_for(lambda: _sessions(h1.port) >= 1, what="the server's connection")
        assert _sessions(h1.port) == 1  # the server's, shared by all of them
        assert simtui("kill", label, config=quick_config).returncode == 0
        assert follower.wait(timeout=60) == 1  # killed: the follower says so
    finally:
        for proc in (follower, watcher):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
    assert watcher.returncode == 0


def test_kill_9_of_the_server_mid_job_loses_no_line_and_doubles_none(quick_config, lab, simtui_env):
    script = "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); sleep 0.01; done"
    label = simtui("run", "--host", "h0", "--", "sh", "-c", script, config=quick_config).stdout.strip()
    follower = popen("log", label, "--follow", config=quick_config)
    home = simtui_env / "home"
    lines = []
    try:
        for _ in range(2):  # kill it twice, mid-stream
            for _ in range(60):
                lines.append(follower.stdout.readline())
            os.kill(server_pid(home), signal.SIGKILL)
        lines += follower.stdout.readlines()  # through the same buffer as readline: nothing skipped
        follower.wait(timeout=120)
        err = follower.stderr.read()
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert lines == [f"line-{i}\n" for i in range(400)]
    record = simtui_json("show", label, config=quick_config)
    assert record["state"] == "succeeded" and record["log_tail"].endswith("line-399")


def test_server_status_stop_and_log(quick_config):
    assert simtui("server", "status", config=quick_config).returncode == 1
    pid = int(simtui("server", "start", config=quick_config).stdout)
    status = simtui_json("server", "status", config=quick_config)
    assert status["pid"] == pid and {h["host"] for h in status["hosts"]} == {"local", "h0", "h1", "h2"}
    assert "up" in simtui("server", "log", config=quick_config).stdout
    assert simtui("server", "stop", config=quick_config).returncode == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_the_server_exits_when_idle(tmp_path):
    config = tmp_path / "idle.toml"
    config.write_text('[server]\nidle = "1s"\n')
    pid = int(simtui("server", "start", config=config).stdout)
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             timeout=30, what="the idle server to exit")


def test_a_client_of_another_config_restarts_an_idle_server(quick_config, tmp_path):
    first = int(simtui("server", "start", config=quick_config).stdout)
    other = tmp_path / "other.toml"
    other.write_text(quick_config.read_text() + "\n[server]\nidle = \"5m\"\n")
    second = int(simtui("server", "start", config=other).stdout)
    assert second != first


@pytest.mark.skipif(not IS_ROOT, reason="needs another Unix user (the tests run as root to make them)")
async def _run_as(spec, argv):
    from simtui.hosts import open_host

    async with open_host(spec) as host:
        return await host.check(argv)


def test_another_unix_user_is_refused_at_the_socket(quick_config, lab, simtui_env):
    simtui("server", "start", config=quick_config)
    home = simtui_env / "home"
    socket = next(iter([home / "server.sock"] if (home / "server.sock").exists() else
                       Path(f"/tmp/simtui-{os.getuid()}").glob("*.sock")))
    probe = textwrap.dedent(f"""
        import socket, sys
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect({str(socket)!r})
        except PermissionError:
            print("refused")
        else:
            print("connected")
    """)
    # another Unix user of this machine: a lab host's, logged in over SSH
    answer = asyncio.run(_run_as(lab.hosts[0].spec, ["python3", "-c", probe]))
    assert answer.strip() == "refused"
    assert oct((home).stat().st_mode & 0o777) == oct(0o700)


LIBRARY = """
import json, sys
import simtui

with simtui.connect(sys.argv[1]) as client:
    record = client.run(["sh", "-c", "echo one; echo two"], host="h1", params={"alpha": 7}, tags=["lib"])
    lines = list(client.lines(record.label))
    final = client.record(record.label)
print(json.dumps({"lines": lines, "state": final.state.value, "params": final.params,
                  "frame": simtui.records(tags=["lib"], frame=False)[0]["params.alpha"]}))
"""


def test_a_python_snippet_runs_a_job_through_connect_and_reads_its_lines(quick_config, lab):
    done = subprocess.run([sys.executable, "-c", LIBRARY, str(quick_config)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {"lines": ["one", "two"], "state": "succeeded", "params": {"alpha": 7}, "frame": 7}


async def test_the_async_client_follows_and_kills(quick_config, lab):
    import simtui

    async with simtui.connect(quick_config) as client:
        record = await client.run("sleep 300", host="h0")
        killed = await client.kill(record.label)
        assert killed.state.value == "killed"
        final = await client.follow(record.label)
        assert final.state.value == "killed"


async def test_the_server_shows_a_host_up_degraded_down_and_up_again(make_lab, tmp_path):
    from simtui.client import Client
    from simtui.model import HostState

    lab = make_lab(1, prefix="w")
    h = lab.hosts[0]
    config = tmp_path / "watch.toml"
    config.write_text("[local]\nenabled = false\n[defaults]\ninterval = 0.1\n"
                      + lab.config_toml().replace('name = "w0"', 'name = "w0"\ncache_dir = "~/.cache/simtui-watch-test"'))
    seen: list[str] = []

    async def until(views, state: HostState, reason: str = "") -> dict:
        async for view in views:
            seen.append(view["state"])
            if view["state"] == state.value and reason in (view["reason"] or ""):
                return view

    async with Client(str(config)) as client:
        views = client.samples()
        up = await asyncio.wait_for(until(views, HostState.UP), 30)
        up = up if up["sample"] else await asyncio.wait_for(until(views, HostState.UP), 30)
        assert up["sample"]["source"] == "agent" and up["facts"]["cpu_count"] == os.cpu_count()
        (agent,) = [p for p in psutil.process_iter(["username", "cmdline"]) if p.info["username"] == h.user
                    and any("simtui-watch-test/agent-" in part for part in p.info["cmdline"] or ())]
        agent.suspend()  # connected, but the samples stop coming
        late = await asyncio.wait_for(until(views, HostState.DEGRADED), 30)
        assert "no sample" in late["reason"]
        agent.resume()
        await asyncio.wait_for(until(views, HostState.UP), 30)
        h.stop()
        down = await asyncio.wait_for(until(views, HostState.DOWN, "refused"), 60)
        assert down["sample"] is None
        h.start()
        await asyncio.wait_for(until(views, HostState.UP), 60)
        await views.aclose()
    assert seen.index("up") < seen.index("degraded") < seen.index("down")


def test_a_queued_job_whose_host_is_down_waits_for_it(make_lab, tmp_path):
    lab = make_lab(1, prefix="q")
    q0 = lab.hosts[0]
    config = tmp_path / "queue.toml"
    config.write_text("[defaults]\ninterval = 0.2\ntimeout = 2.0\n" + lab.config_toml())
    go = tmp_path / "go"
    first = simtui("run", "--host", "local", "--", "sh", "-c", f"until [ -e {go} ]; do sleep 0.05; done",
                   config=config).stdout.strip()
    second = simtui("run", "--host", "q0", "--after", first, "--", "echo", "back", config=config).stdout.strip()
    q0.stop()
    wait_for(lambda: {h["host"]: h["state"] for h in simtui_json("server", "status", config=config)["hosts"]}["q0"]
             == "down", timeout=60, what="the server to see q0 down")
    go.touch()  # the first ends: the second's turn comes while its host is down
    wait_for(lambda: simtui_json("show", first, config=config)["state"] == "succeeded", timeout=60, what="the first")
    q0.start()
    def settled():
        r = simtui_json("show", second, config=config)
        return r if r["state"] == "failed" or (r["state"] == "succeeded" and r["log_tail"]) else None

    record = wait_for(settled, timeout=90, what="the second to run once q0 is back")
    assert record["state"] == "succeeded" and record["log_tail"] == "back", record


def test_a_local_copy_left_unfinished_is_finished_by_the_next_server(quick_config, lab, simtui_env):
    from simtui.store.logs import LocalLog

    proc = simtui("run", "--host", "h1", "--follow", "--", "sh", "-c", "for i in 1 2 3 4 5; do echo line $i; done",
                  config=quick_config)
    label = proc.stdout.split()[0]
    wait_for(lambda: LocalLog(label).compressed, what="the finished copy")
    assert simtui("server", "stop", config=quick_config).returncode == 0
    # as a server killed between settling the record and finishing the copy leaves it
    log = LocalLog(label)
    log.gz_path.unlink()
    log.path.write_bytes(b"line 1\nli")
    simtui("server", "start", config=quick_config)
    wait_for(lambda: LocalLog(label).compressed, timeout=60, what="the copy finished by the new server")
    assert b"".join(LocalLog(label).chunks()) == b"".join(b"line %d\n" % i for i in range(1, 6))
