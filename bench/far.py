"""Far hosts: round trips per operation, through a delay proxy on loopback.

Users' hosts sit 20-150 ms away, where every round trip shows. One sshd host is
reached twice: directly ("near") and through bench/delay.py's relay, which holds
each chunk ``--delay`` seconds each way ("far"). An operation's round trips are
(far median - near median) / (2 * delay). Rows, each beside OpenSSH's:

- ``ssh true``: a new OpenSSH process (handshake, auth, one command): the anchor;
- ``run``: a whole ``simtui run --host H -- true`` (the server up, its connection warm);
- ``run --follow``: the same with ``--follow`` (a job that ends at once);
- ``hosts``: a whole ``simtui hosts`` (facts and one sample of the host);
- ``connect``: a new asyncssh connection, in-process (the SSH handshake alone);
- ``reconnect``: the engine dialling again while a job runs there: the handshake,
  then that job's record brought up to date.

Targets (warm connection): a launch <= 2 round trips, a follow of a job that ends
at once <= 3 more, a reconnect <= the SSH handshake + 2.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import Timings, arguments, clean_hosts, measure, simtui_home, sshd_lab
from bench.delay import delayed
from bench.server import serving, simtui

TARGETS = {"run": 2, "run --follow": 5, "reconnect": 2}  # a launch 2, its follow 3 more; handshake + 2


def far_config(lab, host, proxy_port: int, root: Path) -> Path:
    """Hosts "near" (direct) and "far" (through the proxy), its own known_hosts."""
    known = root / "known_hosts_far"
    known.write_text(f"[127.0.0.1]:{proxy_port} {lab.host_key_line(host)}\n"
                     f"[{host.address}]:{host.port} {lab.host_key_line(host)}\n")
    config = root / "far.toml"
    config.write_text("".join(
        f'[[hosts]]\nname = "{name}"\naddress = "{address}"\nport = {port}\nuser = "{host.user}"\n'
        f'identity = "{lab.client_key}"\nknown_hosts = "{known}"\nssh_config = "{lab.ssh_config}"\n'
        f'jobs_dir = ".simtui-bench-far/jobs"\n\n'
        for name, address, port in (("near", host.address, host.port), ("far", "127.0.0.1", proxy_port))))
    return config


def openssh_to(lab, known: Path, address: str, port: int, user: str) -> list[str]:
    return ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-i", str(lab.client_key),
            "-o", f"UserKnownHostsFile={known}", "-p", str(port), f"{user}@{address}", "true"]


async def reconnects(config: Path, reps: int) -> tuple[tuple[Timings, Timings], tuple[Timings, Timings]]:
    """In-process, near and far: a new connection (the handshake alone), and the
    engine's reconnect after a drop while a job runs there (the handshake, then the
    job's record brought up to date)."""
    from simtui.config import load_config
    from simtui.engine.jobs import Engine
    from simtui.hosts import open_host
    from simtui.model import JobSpec
    from simtui.store import Store

    loaded = load_config(str(config))
    handshakes, recons = [], []
    for name in ("near", "far"):
        async def handshake() -> None:
            host = open_host(loaded.host(name))
            await host.connect()
            await host.close()

        handshakes.append(await measure(f"connect {name}", handshake, reps))
        store = Store.open()
        engine = Engine(loaded, store)
        try:
            record = await engine.submit(JobSpec(argv=("sleep", "300"), host=name))

            async def reconnect() -> None:
                await engine.pool.drop(name)  # as a drop does: the next use dials again
                await engine.host(name)

            recons.append(await measure(f"reconnect {name}", reconnect, reps))
            await engine.kill(record.label)
        finally:
            await engine.close()
            store.close()
    return (handshakes[0], handshakes[1]), (recons[0], recons[1])


def trips(near: Timings, far: Timings, delay: float) -> float:
    """Round trips from the fastest of each: the relay's delay is a floor that a busy
    machine cannot lower, so minimums count them more steadily than medians."""
    return (min(far.seconds) - min(near.seconds)) / (2 * delay)


def row(what: str, near: Timings, far: Timings, delay: float, anchor: float | None = None) -> str:
    count = trips(near, far, delay)
    ratio = f"  {count / anchor:5.2f}x ssh true's" if anchor else ""
    return (f"{what:<30} near {near.median * 1000:6.1f} ms  far {far.median * 1000:6.1f} ms (medians)  "
            f"fastest +{(min(far.seconds) - min(near.seconds)) * 1000:4.0f} ms = {count:4.1f} round trips{ratio}")


def main(argv: list[str] | None = None) -> None:
    parser = arguments("far", __doc__)
    parser.add_argument("--delay", type=float, default=0.025, help="seconds the proxy holds a chunk, each way")
    parser.add_argument("--reps", type=int, default=9, help="whole processes per case and distance")
    parser.add_argument("--smoke", action="store_true", help="a tiny run: every row, few repetitions")
    options = parser.parse_args(argv)
    reps = 2 if options.smoke else options.reps
    with tempfile.TemporaryDirectory(prefix="simtui-bench-far-") as tmp, sshd_lab(1, first_address=90) as lab:
        root = Path(tmp)
        host = lab.hosts[0]
        try:
            with delayed(host.address, host.port, options.delay) as proxy, simtui_home(root / "home") as home:
                config = far_config(lab, host, proxy.port, root)
                known = root / "known_hosts_far"
                print(f"one sshd host, reached directly and through a relay holding each chunk "
                      f"{options.delay * 1000:.0f} ms each way ({options.delay * 2000:.0f} ms round trip); "
                      f"{reps} reps", flush=True)

                def timed(label: str, fn) -> Timings:
                    return asyncio.run(measure(label, fn, reps))

                def ssh(address: str, port: int):
                    argv = openssh_to(lab, known, address, port, host.user)
                    return lambda: subprocess.run(argv, check=True, stdin=subprocess.DEVNULL,
                                                  stdout=subprocess.DEVNULL)

                anchor_near = timed("ssh true near", ssh(host.address, host.port))
                anchor_far = timed("ssh true far", ssh("127.0.0.1", proxy.port))
                anchor = trips(anchor_near, anchor_far, options.delay)
                print(row("ssh true (new process)", anchor_near, anchor_far, options.delay), flush=True)
                scratch = root / "scratch"
                scratch.mkdir()
                cases = {
                    "run": lambda name: ("run", "--host", name, "--", "true"),
                    "run --follow": lambda name: ("run", "--host", name, "--follow", "--", "true"),
                    "hosts": lambda name: ("hosts", name),
                }
                got: dict[str, float] = {}
                with serving(config, home):
                    for name in ("near", "far"):
                        simtui(config, "run", "--host", name, "--", "true", cwd=scratch)  # connections warm
                    for case, args in cases.items():
                        near = timed(f"{case} near", lambda: simtui(config, *args("near"), cwd=scratch))
                        far = timed(f"{case} far", lambda: simtui(config, *args("far"), cwd=scratch))
                        got[case] = trips(near, far, options.delay)
                        print(row(f"simtui {case}", near, far, options.delay, anchor), flush=True)
                with simtui_home(root / "home-reconnect"):
                    handshake, again = asyncio.run(reconnects(config, reps))
                print(row("connect (the SSH handshake)", *handshake, options.delay), flush=True)
                print(row("reconnect, one job running", *again, options.delay), flush=True)
                got["reconnect"] = trips(*again, options.delay) - trips(*handshake, options.delay)
                print("targets (round trips over a warm connection; reconnect: above the handshake):")
                for case, target in TARGETS.items():
                    print(f"  {case}: <= {target}: {got[case]:.1f}  {'met' if got[case] <= target + 0.5 else 'missed'}")
        finally:
            clean_hosts(lab, ".simtui-bench-far")


if __name__ == "__main__":
    main(sys.argv[1:])
