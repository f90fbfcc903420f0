"""Machines made for a job: ``simtui run --provider`` on the tests' loopback provider
(tests/fixtures/loop_provider.py: each machine a new Unix user with its own sshd and
host key on 127.0.3.N), against the same steps done by hand.

Each rep, both sides, on a project of 20 small files (a git checkout), the job
``sh -c 'echo done > out.txt'``:

- simtui (its server up, default config): a whole ``simtui run --provider loop --follow
  -- ...`` process from its start to its exit (create, the host key, SSH, sync, launch,
  the job's end seen), then ``simtui machines --json`` processes until none is live
  (log and outputs brought here, destroy run);
- by hand: the provider's create, its host key written to a known_hosts file, ``rsync
  -a`` of the project over ssh, ``ssh ... 'cd proj && sh -c ...'``, ``scp`` of out.txt
  back, then the provider's destroy.

Rows: create alone (the provider's own time, from the hand runs), start to the job's
end, its end to the machine destroyed, and the whole; simtui against by hand. Needs
root (the provider makes Unix users) and rsync: without them this prints why and
exits 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import TESTS, Timings, arguments, ms, ratio_line, simtui_home
from bench.server import serving, simtui

LOOP = TESTS / "fixtures" / "loop_provider.py"
JOB = ("sh", "-c", "echo done > out.txt")


def _project(root: Path) -> Path:
    root.mkdir()
    for i in range(20):
        (root / f"f{i:02}.txt").write_text(f"file {i}\n" * 50)
    for argv in (["init", "-q"], ["add", "."], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "b"]):
        subprocess.run(["git", *argv], cwd=root, check=True)
    return root


def _config(path: Path, state: Path, key: Path) -> Path:
    env = f"LOOP_STATE={state} LOOP_CLIENT_KEY={key}.pub"
    command = f"{env} {sys.executable} {LOOP}"
    path.write_text(f'[local]\nenabled = false\n\n[[providers]]\nname = "loop"\ncreate = "{command} create"\n'
                    f'destroy = "{command} destroy"\nsize = "small"\nidentity = "{key}"\n'
                    f'ssh_config = "{state / "ssh_config"}"\n')
    return path


def _by_hand(state: Path, key: Path, project: Path, name: str, scratch: Path) -> tuple[float, float, float]:
    """Seconds of create, of create to the output here, and of destroy."""
    env = {**os.environ, "LOOP_STATE": str(state), "LOOP_CLIENT_KEY": f"{key}.pub", "SIMTUI_MACHINE": name,
           "SIMTUI_SIZE": "small"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(LOOP), "create"], env=env, capture_output=True, text=True,
                         check=True).stdout
    created = time.perf_counter()
    said = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    known = scratch / f"{name}.known_hosts"
    known.write_text(f"[{said['address']}]:{said['port']} {said['host_key']}\n")
    ssh = f"ssh -F /dev/null -o BatchMode=yes -i {key} -o UserKnownHostsFile={known} -p {said['port']}"
    target = f"{said['user']}@{said['address']}"
    subprocess.run(["rsync", "-a", "-e", ssh, f"{project}/", f"{target}:proj/"], check=True)
    subprocess.run([*ssh.split(), target, "cd proj && sh -c 'echo done > out.txt'"], check=True)
    subprocess.run(["scp", "-q", "-F", "/dev/null", "-o", "BatchMode=yes", "-i", str(key), "-o",
                    f"UserKnownHostsFile={known}", "-P", said["port"], f"{target}:proj/out.txt",
                    str(scratch / f"{name}.out")], check=True)
    done = time.perf_counter()
    subprocess.run([sys.executable, str(LOOP), "destroy"], env=env, check=True)
    return created - start, done - start, time.perf_counter() - done


def main(argv: list[str] | None = None) -> int:
    parser = arguments("machines", __doc__)
    parser.add_argument("--reps", type=int, default=10, help="timed runs of each side (after one warm-up)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run: every row, 2 reps")
    options = parser.parse_args(argv)
    reps = 2 if options.smoke else options.reps
    missing = [] if os.geteuid() == 0 else ["root (the provider makes Unix users)"]
    missing += [tool for tool in ("rsync", "sshd", "scp")
                if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists())]
    if missing:
        print(f"skipped: needs {', '.join(missing)}")
        return 0
    sys.path.insert(0, str(TESTS))
    from sshd import keygen

    with tempfile.TemporaryDirectory(prefix="simtui-bench-machines-") as folder:
        root = Path(folder)
        os.chmod(root, 0o755)
        state = root / "state"
        state.mkdir()
        (state / "ssh_config").write_text("")
        key = keygen(root / "client_key", "simtui-bench")
        project = _project(root / "proj")
        config = _config(root / "config.toml", state, key)
        ours: dict[str, list[float]] = {"end": [], "gone": [], "whole": []}
        theirs: dict[str, list[float]] = {"create": [], "end": [], "gone": [], "whole": []}
        with simtui_home(root / "home") as home, serving(config, home):
            for rep in range(reps + 1):
                start = time.perf_counter()
                simtui(config, "run", "--provider", "loop", "--follow", "--", *JOB, cwd=project)
                ended = time.perf_counter()
                while json.loads(simtui(config, "machines", "--json")):
                    time.sleep(0.05)
                gone = time.perf_counter()
                create, done, destroy = _by_hand(state, key, project, f"hand-{rep}", root)
                if rep == 0:
                    continue  # warm-up: the server's first connection, caches
                ours["end"].append(ended - start)
                ours["gone"].append(gone - ended)
                ours["whole"].append(gone - start)
                theirs["create"].append(create)
                theirs["end"].append(done)
                theirs["gone"].append(destroy)
                theirs["whole"].append(done + destroy)
        left = [p.name for p in state.iterdir() if p.is_dir()]
        if left:
            print(f"bench: machines left behind: {', '.join(left)}")
    timings = {f"simtui {k}": Timings(f"simtui {k}", tuple(v)) for k, v in ours.items()}
    timings |= {f"hand {k}": Timings(f"by hand {k}", tuple(v)) for k, v in theirs.items()}
    print(f"loopback provider: a Unix user + sshd per machine; {reps} reps, project of 20 files")
    for timing in timings.values():
        print(timing.line())
    print(ratio_line("start to the job's end (create ... output)", timings["simtui end"], timings["hand end"]))
    print(ratio_line("its end to the machine destroyed", timings["simtui gone"], timings["hand gone"]))
    print(ratio_line("whole: start to destroyed", timings["simtui whole"], timings["hand whole"]))
    beyond = timings["simtui whole"].median - timings["hand create"].median - timings["hand gone"].median
    print(f"simtui beyond the provider's create and destroy: {ms(beyond).strip()} (median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
