"""Live resources: the agent and the shell probe over real sshd, the local
sampler, `simtui probe`, and the long-lived watcher."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from simtui.engine.sampler import probe_host
from simtui.errors import ProbeFailed
from simtui.hosts import agent, open_host
from simtui.hosts.local import LocalHost
from simtui.hosts.probe import SHELL_PROBE, agent_bundle, parse_line
from simtui.model import LOCAL, HostFacts, HostKind, HostSpec, HostState, Sample
from sshd import wait_for

def mem_total() -> int:
    with open("/proc/meminfo") as f:
        return int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) * 1024


def df_available(path: str) -> int:
    row = subprocess.run(["df", "-Pk", path], capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    return int(row.split()[3]) * 1024


def near(value: float, expected: float, rel: float = 0.01) -> bool:
    return abs(value - expected) <= rel * expected


def assert_matches_this_machine(sample: Sample) -> None:
    """Every lab host is this machine: its numbers are ours."""
    assert sample.cpu_count == os.cpu_count() == len(sample.cpu_per_core)
    assert 0 <= sample.cpu_percent <= 100
    assert all(p is None or 0 <= p <= 100 for p in sample.cpu_per_core)
    assert near(sample.mem_total, mem_total())
    assert 0 < sample.mem_used < sample.mem_total
    assert near(sample.disk_free, df_available(sample.disk_path))
    assert len(sample.load) == 3 and sample.uptime > 0


def process_clock() -> float:
    """Now, as psutil's create_time counts (boot time in whole seconds + time since boot)."""
    return psutil.boot_time() + time.clock_gettime(time.CLOCK_BOOTTIME)


def processes(user: str, *, marker: str = "", since: float = 0) -> list[psutil.Process]:
    """The user's processes (but sshd) with ``marker`` in their command line, started after ``since``."""
    found = []
    for proc in psutil.process_iter(["username", "name", "cmdline", "create_time"]):
        info = proc.info
        if info["username"] == user and info["name"] != "sshd" and info["create_time"] >= since:
            if marker in " ".join(info["cmdline"] or ()):
                found.append(proc)
    return found


def simtui(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simtui", *args], capture_output=True, text=True, timeout=120)


async def first_readings(host, count: int, interval: float = 0.05) -> tuple[HostFacts, list[Sample]]:
    async with contextlib.aclosing(host.readings(interval)) as stream:
        facts = await anext(stream)
        return facts, [await anext(stream) for _ in range(count)]


# -- the command line ------------------------------------------------------------


def test_probe_json_reports_each_hosts_resources(lab):
    result = simtui("--config", str(lab.config), "probe", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["host"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {LOCAL, "h0", "h1", "h2"}
    for name, row in rows.items():
        assert row["state"] == "up" and row["reason"] is None, row
        sample = Sample.from_dict(row["sample"])
        assert sample.source == ("psutil" if name == LOCAL else "agent")
        assert_matches_this_machine(sample)
        assert row["facts"]["cpu_count"] == os.cpu_count()
        assert row["facts"]["hostname"] == socket.gethostname()


def test_down_host_is_a_row_with_its_reason(lab, tmp_path):
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.2", 0))
        port = s.getsockname()[1]
    config = tmp_path / "config.toml"
    config.write_text(
        lab.config_toml(local=False)
        + f'\n[[hosts]]\nname = "gone"\naddress = "127.0.0.2"\nport = {port}\nknown_hosts = "{lab.known_hosts}"\n'
    )
    rows = {r["host"]: r for r in json.loads(simtui("--config", str(config), "probe", "--json").stdout)}
    assert rows["gone"]["state"] == "down" and rows["gone"]["sample"] is None
    assert "refused" in rows["gone"]["reason"]
    assert rows["h0"]["state"] == "up"

    named = simtui("--config", str(config), "probe", "gone", "h0")
    assert named.returncode == 3
    table = named.stdout.splitlines()
    assert table[0].split()[:3] == ["HOST", "STATE", "CPUS"]
    assert table[1].startswith("gone") and "down" in table[1] and "refused" in table[1]
    assert table[2].split()[:3] == ["h0", "up", str(os.cpu_count())]

    unknown = simtui("--config", str(config), "probe", "nosuch")
    assert unknown.returncode == 2 and "nosuch" in unknown.stderr and unknown.stdout == ""


# -- the agent over SSH ------------------------------------------------------------


async def test_agent_is_uploaded_only_when_changed(lab):
    h = lab.hosts[0]
    spec = replace(h.spec, cache_dir="~/.cache/simtui-upload-test")
    cache = h.home / ".cache/simtui-upload-test"
    shutil.rmtree(cache, ignore_errors=True)
    async with open_host(spec) as host:  # an older agent version, left behind
        await host.check(["mkdir", "-p", ".cache/simtui-upload-test/agent-0ld"])
    installed = cache / f"agent-{agent_bundle()[0]}" / "agent.py"

    assert (await probe_host(open_host(spec), 20)).state is HostState.UP
    first = installed.stat()
    assert installed.read_bytes() == Path(agent.__file__).read_bytes()
    assert not (cache / "agent-0ld").exists()
    assert not [p for p in installed.parent.iterdir() if p.name.endswith(".part")]

    assert (await probe_host(open_host(spec), 20)).state is HostState.UP
    again = installed.stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)

    installed.unlink()  # gone (or another version): uploaded again
    assert (await probe_host(open_host(spec), 20)).state is HostState.UP
    assert installed.read_bytes() == Path(agent.__file__).read_bytes()


async def test_reachable_host_whose_probe_fails_is_degraded(lab):
    spec = replace(lab.hosts[0].spec, cache_dir="/proc/simtui-cannot-be-here")
    result = await probe_host(open_host(spec), 20)
    assert result.state is HostState.DEGRADED and result.sample is None
    assert "mkdir" in result.reason


async def test_agent_starts_once_per_connection_and_exits_with_it(lab):
    h = lab.hosts[1]
    marker = "simtui-once-test/agent-"  # in the agent's path: this test's agents only
    host = open_host(replace(h.spec, cache_dir="~/.cache/simtui-once-test"))
    await host.connect()
    stream = host.readings(0.05)
    try:
        facts = await anext(stream)
        assert facts.python and facts.cpu_count == os.cpu_count()
        await anext(stream)
        agents = processes(h.user, marker=marker)
        for _ in range(3):
            assert_matches_this_machine(await anext(stream))
        assert len(agents) == 1 and processes(h.user, marker=marker) == agents
    finally:
        await host.close()  # the connection, not the stream, ends first
    wait_for(lambda: not processes(h.user, marker=marker), what="the agent to exit")
    await stream.aclose()


async def test_host_without_python3_gets_the_shell_probe(make_lab):
    started = process_clock()
    lab = make_lab(1, prefix="np")
    h = lab.hosts[0]
    bin_dir = h.home / "bin-without-python3"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("sh", "df", "sleep"):
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(shutil.which(tool))
    h.stop()
    with open(h.config, "a") as f:
        f.write(f"SetEnv PATH={bin_dir}\n")
    h.start()

    host = open_host(h.spec)
    await host.connect()
    stream = host.readings(0.05)
    try:
        assert (await host.check(["sh", "-c", 'echo "$PATH"'])).strip() == str(bin_dir)
        assert (await host.run(["python3", "--version"])).exit_status == 127
        facts = await anext(stream)
        samples = [await anext(stream) for _ in range(3)]
        assert processes(h.user, marker="simtui's resource probe", since=started)
        assert facts.python is None and facts.cpu_count == os.cpu_count()
        assert facts.hostname == socket.gethostname() and facts.kernel == platform.release()
        for sample in samples:
            assert sample.source == "shell" and sample.gpus == ()
            assert_matches_this_machine(sample)
        assert samples[0].time < samples[-1].time
        jobs_dir = h.home / ".simtui/jobs"  # or its nearest existing parent
        assert Path(samples[0].disk_path) in (jobs_dir, jobs_dir.parent, h.home)
    finally:
        await host.close()  # the connection, not the stream, ends first
    wait_for(lambda: not processes(h.user, since=started), what="the shell probe and its sleep to end")
    await stream.aclose()


# -- the probes as plain processes, and the local sampler ---------------------------


@pytest.mark.parametrize("kind", ["agent", "shell"])
def test_probe_process_exits_when_its_stdin_closes(kind, tmp_path):
    argv = (
        [sys.executable, agent.__file__, "--interval", "0.05", "--disk", str(tmp_path / "jobs")]
        if kind == "agent"
        else ["sh", "-c", SHELL_PROBE.read_text(), "sh", "0.05", "0.05", str(tmp_path / "jobs")]
    )
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        facts = parse_line("here", kind, proc.stdout.readline())
        samples = [parse_line("here", kind, proc.stdout.readline()) for _ in range(2)]
        family = psutil.Process(proc.pid).children(recursive=True)  # the shell's watcher and sleep
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
    wait_for(lambda: not any(p.is_running() for p in family), what="the probe's children to end")
    assert isinstance(facts, HostFacts) and facts.os and facts.cpu_model
    for sample in samples:
        assert sample.disk_path == str(tmp_path)
        assert_matches_this_machine(sample)


def test_the_agents_sampler_follows_the_jobs_dir_once_it_is_made(tmp_path):
    sampler = agent.ProcSampler(str(tmp_path / "jobs"), agent.NoGpus())
    before = sampler.sample()
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])  # in hundredths, cut
    (tmp_path / "jobs").mkdir()
    after = sampler.sample()
    assert (before["disk_path"], after["disk_path"]) == (str(tmp_path), str(tmp_path / "jobs"))
    assert before["uptime"] - 0.01 < uptime <= after["uptime"]  # the same clock as /proc/uptime
    assert after["cpu_count"] == os.cpu_count() == len(after["cpu_per_core"])
    assert agent.ProcSampler("~", agent.NoGpus()).sample()["disk_path"] == str(Path.home())


async def test_local_sampling_is_sane(tmp_path):
    spec = HostSpec(LOCAL, kind=HostKind.LOCAL, jobs_dir=str(tmp_path / "jobs" / "not-yet"))
    facts, samples = await first_readings(LocalHost(spec), 2)
    assert facts.cpu_count == os.cpu_count() and facts.python == platform.python_version()
    for sample in samples:
        assert sample.source == "psutil" and sample.host == LOCAL
        assert sample.mem_total == psutil.virtual_memory().total
        assert sample.disk_path == str(tmp_path)
        assert_matches_this_machine(sample)
    assert samples[0].time < samples[1].time


def test_probe_output_lines():
    assert parse_line("h", "agent", "Welcome to h! (a login script talking)") is None
    assert parse_line("h", "agent", "[1, 2]") is None
    assert parse_line("h", "agent", '{"facts": {"hostname": "h", "new_fact": 1}}') == HostFacts(hostname="h")
    sample = parse_line("h", "shell", '{"sample": {"time": 1.5, "load": [1, 2, 3], "gpus": []}}')
    assert (sample.host, sample.source, sample.time, sample.load) == ("h", "shell", 1.5, (1, 2, 3))
    with pytest.raises(ProbeFailed, match="ValueError: boom"):
        parse_line("h", "agent", '{"error": "ValueError: boom"}')
    with pytest.raises(ProbeFailed, match="unreadable"):
        parse_line("h", "agent", '{"sample": {"load": [1, 2, 3]}}')  # no time
