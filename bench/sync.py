"""Sync: simtui against rsync on a tree of many small files, on a real sshd host.

A git checkout of FILES files of a few KB each (default 5,000), synced three ways:

- first: into an empty folder;
- no change: nothing changed since the last sync;
- one file: one file's content changed.

simtui runs in process on a warm connection (``await sync(...)``). rsync runs as
``rsync -a --delete --exclude=/.git -e "ssh ..."`` (the same files) to its own folder on the same host, once with a
new SSH connection each time (cold) and once over an OpenSSH ControlMaster (warm,
the fair comparison). rsync is a bench-only dependency: ``apt-get install -y rsync``.

The tree is made in a temporary folder and removed at the end; on the host, every
folder the bench wrote is removed once, at the end. The first syncs are taken in
turns (simtui, rsync cold, rsync warm), as the disk slows while trees pile up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import Timings, arguments, measure, ratio_line, sshd_lab
from bench.ssh import openssh
from simtui.engine.project import Project
from simtui.engine.sync import sync
from simtui.hosts import open_host


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


async def bench(host, tree: Path, reps: int, first_reps: int, control: tuple[str, ...]) -> dict[str, Timings]:
    project = Project(tree)
    counter = iter(range(10**6))
    edited = tree / "pkg00" / "module_00000.py"

    def touch_one() -> None:
        edited.write_text(f"# edited {next(counter)}\n" + "x = 2\n" * 100)

    async with open_host(host.spec) as connected:
        await connected.check(["mkdir", "-p", "bench-sync"])
        spec = connected.spec

        async def first_simtui() -> None:
            connected.spec = dataclasses.replace(spec, projects_dir=f"~/bench-sync/first-{next(counter)}")
            await sync(connected, project)

        def first_rsync(options: tuple[str, ...]):
            return lambda: rsync(host, options, tree, f"bench-sync/rsync-first-{next(counter)}")

        # Taken in turns: each writes a whole tree, and the disk's state shifts as trees pile up.
        firsts = {
            "simtui first": ("simtui first sync (warm connection)", first_simtui),
            "rsync first": ("rsync first sync (cold ssh)", first_rsync(())),
            "rsync mux first": ("rsync first sync (ControlMaster)", first_rsync(control)),
        }
        seconds: dict[str, list[float]] = {key: [] for key in firsts}
        for _ in range(first_reps):
            for key, (label, fn) in firsts.items():
                seconds[key] += (await measure(label, fn, 1, 0)).seconds
        results = {key: Timings(label, tuple(seconds[key])) for key, (label, _) in firsts.items()}
        connected.spec = spec
        await sync(connected, project)
        rsync(host, control, tree, "bench-sync/rsync")
        results["simtui none"] = await measure("simtui no change", lambda: sync(connected, project), reps)
        results["rsync none"] = await measure("rsync no change (cold ssh)",
                                              lambda: rsync(host, (), tree, "bench-sync/rsync"), reps)
        results["rsync mux none"] = await measure("rsync no change (ControlMaster)",
                                                  lambda: rsync(host, control, tree, "bench-sync/rsync"), reps)

        async def one_simtui() -> None:
            touch_one()
            result = await sync(connected, project)
            assert len(result.sent) == 1, result.sent

        def one_rsync(options: tuple[str, ...]):
            return lambda: (touch_one(), rsync(host, options, tree, "bench-sync/rsync"))

        results["simtui one"] = await measure("simtui one file changed", one_simtui, reps)
        results["rsync one"] = await measure("rsync one file changed (cold ssh)", one_rsync(()), reps)
        results["rsync mux one"] = await measure("rsync one file changed (ControlMaster)", one_rsync(control), reps)
        await connected.check(["rm", "-rf", "bench-sync", "simtui/projects/" + project.name])
    return results


def main(argv: list[str] | None = None) -> None:
    parser = arguments("sync", __doc__)
    parser.add_argument("--files", type=int, default=5000, help="files in the tree")
    parser.add_argument("--reps", type=int, default=20, help="repetitions of the no-change and one-file cases")
    parser.add_argument("--first-reps", type=int, default=3, help="repetitions of the first sync")
    options = parser.parse_args(argv)
    if shutil.which("rsync") is None:
        raise SystemExit("bench sync: rsync is not installed (apt-get install -y rsync)")
    with tempfile.TemporaryDirectory(prefix="simtui-bench-sync-") as tmp, sshd_lab(1) as lab:
        os.environ["SIMTUI_HOME"] = str(Path(tmp) / "home")  # sync's memory of the tree: thrown away
        host = lab.hosts[0]
        tree = Path(tmp) / "tree"
        make_tree(tree, options.files)
        size = sum(p.stat().st_size for p in tree.rglob("*.py"))
        print(f"sshd {host.address}:{host.port} as {host.user}; {options.files} files, {size / 1e6:.1f} MB; "
              f"{options.reps} reps ({options.first_reps} for the first sync)")
        control = ("-o", f"ControlPath={Path(tmp) / 'control'}")
        subprocess.run(openssh(host, *control, "-o", "ControlMaster=yes", "-f", "-N"), check=True)
        try:
            results = asyncio.run(bench(host, tree, options.reps, options.first_reps, control))
        finally:
            subprocess.run(openssh(host, *control, "-O", "exit"), check=False, capture_output=True)
    for timing in results.values():
        print(timing.line())
    print("ratios (simtui/rsync, below 1 = simtui faster):")
    for case, what in (("first", "first sync"), ("none", "no change"), ("one", "one file changed")):
        print(ratio_line(f"{what}: simtui warm / rsync over ControlMaster", results[f"simtui {case}"],
                         results[f"rsync mux {case}"]))
    for case, what in (("first", "first sync"), ("none", "no change"), ("one", "one file changed")):
        print(ratio_line(f"{what}: simtui warm / rsync cold", results[f"simtui {case}"], results[f"rsync {case}"]))
