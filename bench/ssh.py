"""SSH cost: simtui's asyncssh connection against the OpenSSH client, on a real sshd.

- cold: open a connection, run ``true``, close (simtui: ``open_host`` + connect +
  run + close; OpenSSH: a new ``ssh ... true`` process each time, with its default
  key exchange, sntrup761x25519 on OpenSSH 9, and with curve25519 as asyncssh uses);
- warm: ``true`` on an open connection (simtui: ``SshHost.run``; OpenSSH: a new
  ``ssh`` process multiplexed over a ControlMaster connection, its cheapest warm path).
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from pathlib import Path

from bench.common import arguments, Timings, measure, ratio_line, sshd_lab
from simtui.hosts import open_host

CURVE25519 = ("-o", "KexAlgorithms=curve25519-sha256")


def openssh(host, *options: str) -> list[str]:
    """The OpenSSH client command line for an SshdHost, before the remote command."""
    lab = host.lab
    return [
        "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-i", str(lab.client_key),
        "-o", f"UserKnownHostsFile={lab.known_hosts}", "-p", str(host.port), *options,
        f"{host.user}@{host.address}",
    ]


async def bench(host, reps: int) -> list[Timings]:
    spec = host.spec

    async def simtui_cold() -> None:
        async with open_host(spec):
            pass

    async def simtui_cold_true() -> None:
        async with open_host(spec) as connected:
            await connected.run(["true"])

    def ssh(argv: list[str]):
        return lambda: subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)

    with tempfile.TemporaryDirectory(prefix="simtui-bench-ssh-") as tmp:
        control = ("-o", f"ControlPath={Path(tmp) / 'control'}")
        # -f: ssh returns once the master is authenticated and its socket listens.
        subprocess.run(openssh(host, *control, "-o", "ControlMaster=yes", "-f", "-N"), check=True)
        try:
            async with open_host(spec) as connected:
                timings = [
                    await measure("simtui cold: connect+close", simtui_cold, reps),
                    await measure("simtui cold: connect+true+close", simtui_cold_true, reps),
                    await measure("openssh cold: ssh true", ssh([*openssh(host), "true"]), reps),
                    await measure("openssh cold: ssh true, curve25519 kex",
                                  ssh([*openssh(host, *CURVE25519), "true"]), reps),
                    await measure("simtui warm: true", lambda: connected.run(["true"]), reps * 5),
                    await measure("openssh warm: ssh true over mux", ssh([*openssh(host, *control), "true"]), reps),
                ]
        finally:
            subprocess.run(openssh(host, *control, "-O", "exit"), check=False, capture_output=True)
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = arguments("ssh", __doc__)
    parser.add_argument("--reps", type=int, default=30, help="repetitions per cold case (warm: 5x)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run: every row, 2 reps")
    options = parser.parse_args(argv)
    if options.smoke:
        options.reps = 2
    with sshd_lab(1) as lab:
        host = lab.hosts[0]
        print(f"sshd {host.address}:{host.port} as {host.user}; {options.reps} reps")
        timings = asyncio.run(bench(host, options.reps))
    for timing in timings:
        print(timing.line())
    _, cold, ssh_cold, ssh_curve, warm, ssh_warm = timings
    print("ratios (simtui/ssh, below 1 = simtui faster):")
    print(ratio_line("cold: connect+true+close / ssh true", cold, ssh_cold))
    print(ratio_line("cold: same / ssh true, curve25519 kex", cold, ssh_curve))
    print(ratio_line("warm: run true / ssh mux true", warm, ssh_warm))
    print(ratio_line("warm: run true / ssh true (new process)", warm, ssh_cold))


if __name__ == "__main__":
    main()
