"""Round trips over a warm connection: what a launch and a follow ask of the host.

Every command a Host runs (run, check, stream, an upload) opens a channel: two
round trips, which a far host (20-150 ms away) makes felt. The engine is driven
directly against a real sshd host; a spy on its connection lists each command,
which still runs for real. Speed itself is measured in bench/far.py.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import textwrap

import pytest

from simtui.config import load_config
from simtui.engine.jobs import Engine
from simtui.model import JobSpec, JobState
from simtui.store import Store


def spy(host) -> list[str]:
    """The commands ``host`` runs from now on (their first words), in order."""
    seen: list[str] = []
    for name in ("run", "stream", "run_with_input", "put", "get"):
        real = getattr(host, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            argv = args[0] if args else kwargs.get("argv")
            words = list(argv) if not isinstance(argv, str) else [argv]
            seen.append(f"{_name}: {' '.join(words[:3])[:60]}")
            return _real(*args, **kwargs)

        setattr(host, name, counted)
    return seen


@pytest.fixture
async def engine(lab, tmp_path):
    store = Store.open(tmp_path / "records.db")
    engine = Engine(load_config(str(lab.config)), store)
    yield engine
    await engine.close()
    store.close()


async def test_a_launch_is_one_command_and_its_follow_one_more(engine):
    await engine.submit(JobSpec(argv=("true",), host="h0"))  # the connection warm, the agent checked
    host = await engine.host("h0")
    workdir = f"rt-{secrets.token_hex(4)}"
    await host.check(["mkdir", workdir])
    commands = spy(host)
    record = await engine.submit(JobSpec(argv=("sh", "-c", "echo hi; echo out > made.txt; exit 4"), host="h0",
                                         workdir=workdir))
    assert record.state is JobState.RUNNING
    assert len(commands) == 1, commands  # the launch alone
    commands.clear()
    got: list[bytes] = []
    final = await engine.follow(record.label, got.append)
    assert b"".join(got) == b"hi\n"
    assert len(commands) == 1, commands  # the follower alone: the job's end came with its log
    # ... and the record is whole all the same: exit code, provenance, outputs, log tail.
    assert final.state is JobState.FAILED and final.exit_code == 4
    assert final.environment and final.log_tail == "hi"
    assert "made.txt" in [item["path"].rsplit("/", 1)[-1] for item in final.outputs]


async def test_an_agent_removed_behind_our_back_is_installed_again(engine, lab):
    await engine.submit(JobSpec(argv=("true",), host="h1"))
    host = await engine.host("h1")
    agent = host.known["agent"]
    await host.check(["rm", "-rf", agent.rsplit("/", 1)[0]])  # its folder: provenance.py with it
    record = await engine.submit(JobSpec(argv=("true",), host="h1"))
    final = await engine.follow(record.label)
    assert final.state is JobState.SUCCEEDED and final.environment  # captured by the agent put back
    assert (await host.run(["test", "-f", agent])).ok


FOLLOW_UNDER_A_LAZY_INIT = textwrap.dedent("""
    import asyncio, ctypes, json, sys
    from simtui.hosts import jobs, open_host
    from simtui.model import LOCAL, HostKind, HostSpec

    # Orphans come to this process, which never reaps them: the job's wrapper stays
    # a zombie, as under an init that is slow to reap (or never does).
    assert ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER

    async def main():
        spec = HostSpec(name=LOCAL, kind=HostKind.LOCAL, jobs_dir=sys.argv[1])
        async with open_host(spec) as host:
            launched = await jobs.launch(host, spec.jobs_dir, "lazy", ["sh", "-c", "echo done; exit 7"])
            follower = jobs.Follower(host, spec.jobs_dir, "lazy", launched.pid, 0, launched.pid_start)
            log = b"".join([chunk async for chunk in follower])
            print(json.dumps({"log": log.decode(), "exit": follower.ended.exit_code}))

    asyncio.run(asyncio.wait_for(main(), 30))
""")


def test_follow_ends_on_the_exit_file_though_no_one_reaps_the_job(tmp_path):
    proc = subprocess.run([sys.executable, "-c", FOLLOW_UNDER_A_LAZY_INIT, str(tmp_path / "jobs")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith('{"log": "done\\n", "exit": 7}')


async def test_a_job_a_kill_ends_is_killed_though_its_follower_sees_the_end_first(engine):
    """The follower hears the exit file at once; the kill's outcome still decides."""
    import asyncio

    script = "trap 'exit 143' TERM; echo up; while :; do sleep 0.05; done"
    record = await engine.submit(JobSpec(argv=("sh", "-c", script), host="h1"))
    seen: list[bytes] = []
    following = asyncio.create_task(engine.follow(record.label, seen.append))
    async with asyncio.timeout(20):
        while b"up" not in b"".join(seen):
            await asyncio.sleep(0.02)
    killed = await engine.kill(record.label)
    final = await following
    assert killed.state is JobState.KILLED and final.state is JobState.KILLED and final.exit_code == 143
