"""Sync: simtui against rsync on a tree of many small files, on a real sshd host.

A git checkout of FILES files of a few KB each (default 5,000), synced three ways:

- first: into an empty folder;
- no change: nothing changed since the last sync;
- one file: one file's content changed.

simtui runs in process on a warm connection (``await sync(...)``). rsync runs as
``rsync -a --delete --exclude=/.git -e "ssh ..."`` (the same files) to its own
folder on the same host, once with a new SSH connection each time (cold) and once
over an OpenSSH ControlMaster (warm, the fair comparison). Every row is printed as
a ratio against rsync over the ControlMaster, measured in the same run (below 1:
faster than it); the first sync also as the median of each round's own ratio. rsync
is a bench-only dependency: ``apt-get install -y rsync``.

The tree is made in a temporary folder and removed at the end; on the host, every
folder the bench wrote is removed at the end. The first syncs are taken in turns,
each round starting with the next tool (each writes a whole tree, and the disk's
state shifts as trees pile up). ``--smoke``: a small tree, two rounds of each.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Timings, arguments, measure, ms, simtui_home, sshd_lab
from bench.ssh import openssh
from simtui.engine.project import Project
from simtui.engine.sync import sync
from simtui.hosts import open_host

WORK = "bench-sync"  # on the host: the bench's folder (simtui's first syncs and every rsync)
CASES = (("first", "first sync"), ("none", "no change"), ("one", "one file changed"))
TOOLS = (("simtui", "simtui (warm connection)"), ("rsync", "rsync (cold ssh)"), ("rsync mux", "rsync (ControlMaster)"))


def make_tree(root: Path, files: int) -> None:
    """``files`` files of 1-4 KB in 50 folders, committed to git."""
    for i in range(files):
        path = root / f"pkg{i % 50:02d}" / f"module_{i:05d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# module {i}\n" + "x = 1  # padding\n" * (60 + i % 180))
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    subprocess.run(["git", "-C", str(root), "-c", "user.email=b@example.org", "-c", "user.name=b",
                    "commit", "-qm", "tree"], check=True)


def rsync(host, ssh_options: tuple[str, ...], source: Path, dest: str) -> subprocess.CompletedProcess:
    ssh = " ".join(openssh(host, *ssh_options)[:-1])  # rsync adds the destination itself
    return subprocess.run(["rsync", "-a", "--delete", "--exclude=/.git", "-e", ssh, f"{source}/",
                           f"{host.user}@{host.address}:{dest}/"], check=True, stdin=subprocess.DEVNULL)


async def firsts(connected, host, tree: Path, rounds: int, control: tuple[str, ...]) -> dict[str, Timings]:
    """Each tool's first sync into a new folder, ``rounds`` times, in turns: round k
    starts with tool k (mod 3), so none always follows the same one."""
    spec = connected.spec
    count = iter(range(10**6))

    async def simtui() -> None:
        connected.spec = dataclasses.replace(spec, projects_dir=f"~/{WORK}/first-{next(count)}")
        await sync(connected, Project(tree))

    def rsync_with(options: tuple[str, ...]) -> Callable[[], Any]:
        return lambda: rsync(host, options, tree, f"{WORK}/rsync-first-{next(count)}")

    runs = {"simtui": simtui, "rsync": rsync_with(()), "rsync mux": rsync_with(control)}
    seconds: dict[str, list[float]] = {key: [] for key in runs}
    order = list(runs)
    for k in range(rounds):
        for key in order[k % 3:] + order[: k % 3]:
            seconds[key] += (await measure(key, runs[key], 1, 0)).seconds
    connected.spec = spec
    return {f"{key} first": Timings(key, tuple(values)) for key, values in seconds.items()}


async def later(connected, host, tree: Path, reps: int, control: tuple[str, ...]) -> dict[str, Timings]:
    """No change, then one file changed, each tool into its own synced folder."""
    project = Project(tree)
    counter = iter(range(10**6))
    edited = tree / "pkg00" / "module_00000.py"

    def touch_one() -> None:
        edited.write_text(f"# edited {next(counter)}\n" + "x = 2\n" * 100)

    async def one_simtui() -> None:
        touch_one()
        result = await sync(connected, project)
        assert len(result.sent) == 1, result.sent

    def rsync_with(options: tuple[str, ...], first: Callable[[], None] = lambda: None):
        return lambda: (first(), rsync(host, options, tree, f"{WORK}/rsync"))

    await sync(connected, project)
    rsync(host, control, tree, f"{WORK}/rsync")
    return {
        "simtui none": await measure("simtui", lambda: sync(connected, project), reps),
        "rsync none": await measure("rsync", rsync_with(()), reps),
        "rsync mux none": await measure("rsync mux", rsync_with(control), reps),
        "simtui one": await measure("simtui", one_simtui, reps),
        "rsync one": await measure("rsync", rsync_with((), touch_one), reps),
        "rsync mux one": await measure("rsync mux", rsync_with(control, touch_one), reps),
    }


async def bench(host, tree: Path, reps: int, rounds: int, control: tuple[str, ...]) -> dict[str, Timings]:
    project = Project(tree)
    async with open_host(host.spec) as connected:
        folder = project.folder_arg(connected.spec)
        try:
            await connected.check(["mkdir", "-p", WORK])
            return {**await firsts(connected, host, tree, rounds, control),
                    **await later(connected, host, tree, reps, control)}
        finally:  # what the bench wrote there, and the folders sync made for it if now empty
            await connected.check(["sh", "-c", 'rm -rf "$1" "$2" && rmdir -p "${2%/*}" 2>/dev/null; true',
                                   "sh", WORK, folder])


def report(results: dict[str, Timings]) -> None:
    print("each row against rsync over a ControlMaster in this run (below 1 = faster):")
    for case, what in CASES:
        anchor = results[f"rsync mux {case}"]
        for key, label in TOOLS:
            timing = results[f"{key} {case}"]
            print(f"  {what:<17} {label:<25} n={len(timing.seconds):<3} median {ms(timing.median)}  "
                  f"p90 {ms(timing.percentile(90))}  {timing.median / anchor.median:6.2f}x")
    simtui, anchor = results["simtui first"].seconds, results["rsync mux first"].seconds
    paired = statistics.median(a / b for a, b in zip(simtui, anchor))
    print(f"  first sync, simtui / rsync (ControlMaster), median of each round's ratio: {paired:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = arguments("sync", __doc__)
    parser.add_argument("--files", type=int, default=5000, help="files in the tree")
    parser.add_argument("--reps", type=int, default=20, help="repetitions of the no-change and one-file cases")
    parser.add_argument("--first-reps", type=int, default=5, help="rounds of the first sync")
    parser.add_argument("--smoke", action="store_true", help="a quick run: 300 files, 2 of everything")
    options = parser.parse_args(argv)
    if options.smoke:
        options.files, options.reps, options.first_reps = 300, 2, 2
    if shutil.which("rsync") is None:
        raise SystemExit("bench sync: rsync is not installed (apt-get install -y rsync)")
    with tempfile.TemporaryDirectory(prefix="simtui-bench-sync-") as tmp, sshd_lab(1) as lab, \
            simtui_home(Path(tmp) / "home"):  # sync's memory of the tree: thrown away
        host = lab.hosts[0]
        tree = Path(tmp) / "tree"
        make_tree(tree, options.files)
        size = sum(p.stat().st_size for p in tree.rglob("*.py"))
        print(f"sshd {host.address}:{host.port} as {host.user}; {options.files} files, {size / 1e6:.1f} MB; "
              f"{options.reps} reps ({options.first_reps} rounds of the first sync)")
        control = ("-o", f"ControlPath={Path(tmp) / 'control'}")
        subprocess.run(openssh(host, *control, "-o", "ControlMaster=yes", "-f", "-N"), check=True)
        try:
            results = asyncio.run(bench(host, tree, options.reps, options.first_reps, control))
        finally:
            subprocess.run(openssh(host, *control, "-O", "exit"), check=False, capture_output=True)
    report(results)
