"""The remote job layout (simtui.hosts.jobs) on this machine and on a real sshd host."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from simtui.hosts import jobs, open_host
from simtui.model import LOCAL, HostKind, HostSpec

TRICKY = ["a b", "it's", '"q"', "$(echo no)", "; echo no", "*", "\\", "ünï", "", "--x"]


@pytest.fixture(params=["local", "ssh"])
async def host(request, lab, tmp_path):
    if request.param == "local":
        spec = HostSpec(name=LOCAL, kind=HostKind.LOCAL, jobs_dir=str(tmp_path / "jobs"))
    else:
        spec = lab.hosts[0].spec
    async with open_host(spec) as h:
        yield h


def new_label() -> str:
    return uuid.uuid4().hex[:12]


async def wait_until(check, timeout=20.0):
    """Poll an async check until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while not (value := await check()):
            await asyncio.sleep(0.05)
    return value


async def finished(host, label):
    async def check():
        job = (await jobs.status(host, host.spec.jobs_dir, [label]))[label]
        return job if not job.alive else None

    return await wait_until(check)


async def test_argv_reaches_the_job_exactly_and_exit_code_is_kept(host):
    label = new_label()
    script = "import json, sys; print(json.dumps(sys.argv[1:])); sys.exit(3)"
    pid = (await jobs.launch(host, host.spec.jobs_dir, label, ["python3", "-c", script, *TRICKY])).pid
    assert pid > 1
    follower = jobs.Follower(host, host.spec.jobs_dir, label, pid)
    log = b"".join([c async for c in follower])
    assert json.loads(log) == TRICKY
    job = await finished(host, label)
    assert job.exit_code == 3 and job.log_size == len(log) and not job.vanished
    # The follower's last word is what the job's folder says, read with the log.
    assert follower.ended.exit_code == 3 and follower.ended.log_size == len(log)
    assert follower.ended.ended == pytest.approx(job.ended, abs=0.01)


async def test_follow_resumes_from_an_offset(host):
    label = new_label()
    pid = (await jobs.launch(host, host.spec.jobs_dir, label, ["printf", "0123456789"])).pid
    await finished(host, label)
    follower = jobs.Follower(host, host.spec.jobs_dir, label, pid, offset=4)
    assert b"".join([c async for c in follower]) == b"456789"
    assert follower.ended.log_size == 10


@pytest.mark.parametrize("trap,grace,exit_code", [
    ("'echo bye; exit 5'", 5, 5),  # TERM ends it; the job's own exit code is kept
    ("''", 0.3, 137),  # TERM ignored: KILL after the grace period
], ids=["term", "kill-after-grace"])
async def test_kill_ends_the_whole_group(host, trap, grace, exit_code):
    label = new_label()
    script = f"trap {trap} TERM; echo ready; while :; do sleep 0.05; done"
    pid = (await jobs.launch(host, host.spec.jobs_dir, label, ["sh", "-c", script])).pid
    await wait_until(lambda: _logged(host, label))
    await jobs.kill(host, host.spec.jobs_dir, label, grace=grace)
    job = await finished(host, label)
    assert job.exit_code == exit_code
    assert await running(host, pid) == []


async def running(host, session: int) -> list[str]:
    """Processes of the job's session that still run (zombies awaiting a reaper do not)."""
    out = (await host.run(["ps", "-o", "stat=,pid=", "-s", str(session)])).stdout
    return [line for line in out.splitlines() if not line.strip().startswith("Z")]


async def _logged(host, label) -> bool:
    return (await jobs.status(host, host.spec.jobs_dir, [label]))[label].log_size > 0


async def test_a_job_killed_behind_our_back_is_vanished(host):
    label = new_label()
    pid = (await jobs.launch(host, host.spec.jobs_dir, label, ["sleep", "60"])).pid
    await host.check(["sh", "-c", f"kill -s KILL -- -{pid}"])  # no trap can write an exit file
    job = await finished(host, label)
    assert job.vanished and job.exit_code is None


async def test_the_job_runs_in_its_workdir_away_from_the_jobs_dir(host, tmp_path):
    label = new_label()
    workdir = "/tmp" if host.spec.kind.value == "ssh" else str(tmp_path)
    pid = (await jobs.launch(host, host.spec.jobs_dir, label, ["pwd"], workdir=workdir)).pid
    log = b"".join([c async for c in jobs.Follower(host, host.spec.jobs_dir, label, pid)])
    assert log.decode().strip() == workdir
    assert (await finished(host, label)).exit_code == 0


async def test_a_missing_workdir_is_refused(host):
    with pytest.raises(Exception, match="workdir"):
        await jobs.launch(host, host.spec.jobs_dir, new_label(), ["true"], workdir="/nonexistent/dir")


def test_a_label_cannot_escape_the_jobs_dir():
    from simtui.errors import UsageError

    for bad in ("../x", "a/b", "..", ""):
        with pytest.raises(UsageError):
            jobs.job_dir("~/.simtui/jobs", bad)
