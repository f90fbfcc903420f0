"""File modes on a host: another Unix user on the same host reads nothing of ours.

Against the real sshd lab, through the real command line: a job's folder and the
jobs folder are 0700 and simtui's files there 0600; the projects folder, the
project folder and the run's own copy 0700 with owner-only files; the agent's
folder 0700, and an agent another user could have put there is never run. With
``share = true`` the user's umask decides (group and other may read). Run as root,
each lab host logs in as its own user (simtui-t0, simtui-t1, ...): h1's user tries
to read h0's files over ssh.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import uuid
from pathlib import Path

import pytest
from clirun import simtui
from projectkit import new_project
from sshd import IS_ROOT

from simtui.hosts import open_host
from simtui.hosts.probe import agent_bundle

OWNER_FILES = ("out.log", "pid", "meta.json", "outputs.json", "exit", "started")
JOB = "umask; echo data > result.txt; echo done"


def on_host(spec, *argv: str):
    async def go():
        async with open_host(spec) as host:
            return await host.run(list(argv))

    return asyncio.run(go())


def modes(spec, *paths: str) -> dict[str, int]:
    """Each path's permission bits, read on the host as its user."""
    result = on_host(spec, "stat", "-c", "%a %n", *paths)
    assert result.ok, result.stderr
    found = {}
    for line in result.stdout.splitlines():
        mode, _, path = line.partition(" ")
        found[path] = int(mode, 8)
    return found


@pytest.fixture
def base(lab):
    """A folder outside every home that all the lab's users may enter, with one folder
    per host user in it (theirs, 0755): what they keep there is guarded by simtui's
    modes alone, not by a closed home."""
    root = Path(f"/tmp/simtui-modes-{uuid.uuid4().hex[:8]}")
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    for host in lab.hosts:
        mine = root / host.name
        mine.mkdir()
        os.chmod(mine, 0o755)
        if IS_ROOT:
            user = pwd.getpwnam(host.user)
            os.chown(mine, user.pw_uid, user.pw_gid)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def config_for(tmp_path, lab, base: Path, share: bool | None = None, extra: str = "") -> Path:
    h0 = lab.hosts[0]
    text = lab.config_toml(local=False, hosts=[h0])
    text += f'jobs_dir = "{base}/h0/jobs"\nprojects_dir = "{base}/h0/projects"\n'
    if share is not None:
        text += f"share = {'true' if share else 'false'}\n"
    path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(text + extra)
    return path


def run_job(config: Path, *args: str, cwd: Path | None = None) -> str:
    proc = simtui("run", "--host", "h0", *args, "--follow", "--", "sh", "-c", JOB, config=config, cwd=cwd,
                  timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    label, *log = proc.stdout.splitlines()
    assert log[-1] == "done", proc.stdout
    return label


def other_user_reads(lab, *paths: str) -> list[str]:
    """What h1's user (another Unix user on the same machine) could read of ``paths``."""
    readable = []
    for path in paths:
        if on_host(lab.hosts[1].spec, "sh", "-c", 'cat "$1" >/dev/null 2>&1 || ls "$1" >/dev/null 2>&1',
                   "sh", path).ok:
            readable.append(path)
    return readable


def needs_two_users(lab) -> None:
    if lab.hosts[0].user == lab.hosts[1].user:
        pytest.skip("run as root: the lab's hosts then log in as distinct Unix users")


def test_a_job_folder_and_simtuis_files_are_the_owners_alone(lab, base, tmp_path):
    spec = lab.hosts[0].spec
    config = config_for(tmp_path, lab, base)
    label = run_job(config, "--workdir", f"{base}/h0", "-p", "alpha=0.5")
    jobs = f"{base}/h0/jobs"
    job = f"{jobs}/{label}"
    listed = on_host(spec, "find", job, "-mindepth", "1").stdout.split()
    files = [f"{job}/{name}" for name in OWNER_FILES]
    assert set(files) <= set(listed) and any(p.startswith(f"{job}/params.") for p in listed), listed
    got = modes(spec, jobs, *listed, job)
    assert got == {jobs: 0o700, job: 0o700, **dict.fromkeys(listed, 0o600)}, {k: oct(v) for k, v in got.items()}

    # the job's own outputs follow the user's umask (as a login shell has it), not simtui's
    log = on_host(spec, "cat", f"{job}/out.log").stdout.splitlines()
    login_umask = on_host(spec, "sh", "-c", "umask").stdout.strip()
    assert log[0] == login_umask
    result = f"{base}/h0/result.txt"
    assert modes(spec, result)[result] == 0o666 & ~int(login_umask, 8)

    needs_two_users(lab)
    assert other_user_reads(lab, jobs, job, *files) == []


def test_with_share_the_users_umask_decides(lab, base, tmp_path):
    config = config_for(tmp_path, lab, base, share=True)
    label = run_job(config, "--workdir", f"{base}/h0")
    job = f"{base}/h0/jobs/{label}"
    files = [f"{job}/{name}" for name in OWNER_FILES]
    got = modes(lab.hosts[0].spec, job, *files)
    assert got[job] & 0o055 == 0o055, oct(got[job])  # group and other may list and enter
    assert all(got[f] & 0o044 == 0o044 for f in files), {k: oct(v) for k, v in got.items()}
    needs_two_users(lab)
    assert other_user_reads(lab, job, f"{job}/out.log", f"{job}/meta.json") == [
        job, f"{job}/out.log", f"{job}/meta.json"]


@pytest.mark.parametrize("share", [False, True], ids=["private", "share"])
def test_synced_project_folders(lab, base, tmp_path, share):
    project = new_project(tmp_path)
    os.chmod(project.root / "train.py", 0o755)
    config = config_for(tmp_path, lab, base, share=share)
    label = run_job(config, "--sync", cwd=project.root)
    projects = f"{base}/h0/projects"
    folder = f"{projects}/{project.name}"
    run = f"{folder}/.simtui-runs/{label}"
    paths = [projects, folder, f"{folder}/lib", f"{folder}/README", f"{folder}/train.py",
             f"{run}", f"{run}/lib", f"{run}/README", f"{run}/train.py"]
    got = modes(lab.hosts[0].spec, *paths)
    shown = {k: oct(v) for k, v in got.items()}
    if share:
        assert got[f"{folder}/README"] == 0o644 and got[f"{folder}/train.py"] == 0o755, shown
        assert got[f"{run}/README"] == 0o644 and got[f"{run}/train.py"] == 0o755, shown
    else:
        for path in (projects, folder, f"{folder}/lib", run, f"{run}/lib", f"{folder}/train.py", f"{run}/train.py"):
            assert got[path] == 0o700, (path, shown)
        assert got[f"{folder}/README"] == 0o600 and got[f"{run}/README"] == 0o600, shown

    # a second sync sends nothing: the host's owner-only modes are what it expects
    again = simtui("sync", "--host", "h0", "--json", config=config, cwd=project.root)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["sent"] == [], again.stdout

    needs_two_users(lab)
    readable = other_user_reads(lab, f"{folder}/README", f"{run}/README")
    assert readable == ([f"{folder}/README", f"{run}/README"] if share else [])


def test_the_agents_folder_is_the_owners_alone(lab, base, tmp_path):
    config = config_for(tmp_path, lab, base, extra=f'cache_dir = "{base}/h0/cache"\n')
    proc = simtui("probe", "h0", "--json", config=config)
    assert proc.returncode == 0, proc.stderr
    digest, files = agent_bundle()
    folder = f"{base}/h0/cache/agent-{digest}"
    got = modes(lab.hosts[0].spec, folder, *(f"{folder}/{f.name}" for f in files))
    assert got == {folder: 0o700, **{f"{folder}/{f.name}": 0o600 for f in files}}, got


def test_an_agent_another_user_could_have_put_there_is_never_run(lab, base, tmp_path):
    """A cache folder of another user's (say a shared /tmp/simtui-cache made first by
    someone else) holding an agent of theirs: simtui refuses it, in one line."""
    needs_two_users(lab)
    digest, _ = agent_bundle()
    cache = base / "h1" / "cache"  # h1's user's, where h0's user may enter but not write
    planted = cache / f"agent-{digest}"
    planted.mkdir(parents=True)
    marker = Path(f"/tmp/simtui-planted-{uuid.uuid4().hex[:8]}")  # where the planted agent could write
    (planted / "agent.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    user = pwd.getpwnam(lab.hosts[1].user)
    for path in (cache, planted, planted / "agent.py"):
        os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    config = config_for(tmp_path, lab, base, extra=f'cache_dir = "{cache}"\n')
    proc = simtui("probe", "h0", "--json", config=config)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    reason = json.loads(proc.stdout)[0]["reason"]
    assert "another user" in reason and "cache_dir" in reason, reason
    ran = marker.exists()
    marker.unlink(missing_ok=True)
    assert not ran
