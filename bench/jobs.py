"""Jobs: launch latency and log ingest, on a real sshd host.

(a) launch: a whole ``simtui run --host H -- true`` process (cold: new process,
    new connection, a new record), ``Engine.submit`` on a warm connection, and
    the OpenSSH baseline ``ssh HOST 'setsid nohup CMD >log 2>&1 &'``.
(b) ingest: a job writes SIZE MB as fast as it can; ``Engine.follow`` copies it
    into the local log copy. Against raw ``ssh HOST cat FILE >/dev/null`` of the
    same file. simtui's peak memory is read from a separate ``simtui log --follow``
    process (its ru_maxrss), so the bench's own memory does not count.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import arguments, clean_hosts, measure, ratio_line, simtui_home, sshd_lab
from bench.ssh import CURVE25519, openssh
from simtui.config import load_config
from simtui.engine.jobs import Engine
from simtui.model import JobSpec
from simtui.store import Store


JOBS = ".simtui-bench-jobs/jobs"  # on the host, under home: removed at the end
RAW_LOG = "/tmp/simtui-bench.log"


def simtui(config: Path, *args: str, stdout=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simtui", "--config", str(config), *args],
                          check=True, stdout=stdout, stderr=subprocess.PIPE)


async def launch(host, config: Path, reps: int) -> None:
    engine = Engine(load_config(str(config)), Store.open())
    try:
        await engine.host(host.name)  # warm
        whole = await measure("simtui run (whole process, cold)",
                              lambda: simtui(config, "run", "--host", host.name, "--", "true"), reps)
        warm = await measure("Engine.submit on a warm connection",
                             lambda: engine.submit(JobSpec(argv=("true",), host=host.name)), reps)
        raw = await measure("ssh 'setsid nohup true >log 2>&1 &'", lambda: subprocess.run(
            [*openssh(host, *CURVE25519), f"setsid nohup true >{RAW_LOG} 2>&1 &"], check=True), reps)
    finally:
        await engine.close()
    for timing in (whole, warm, raw):
        print(timing.line())
    print(ratio_line("launch: whole simtui run / ssh setsid nohup", whole, raw))
    print(ratio_line("launch: warm submit / ssh setsid nohup", warm, raw))


async def ingest(host, config: Path, size_mb: int) -> None:
    size = size_mb * 1_000_000
    engine = Engine(load_config(str(config)), Store.open())
    try:
        script = f"yes 'a log line of simulated output, fifty bytes long' | head -c {size}"
        record = await engine.submit(JobSpec(argv=("sh", "-c", script), host=host.name))
        start = time.perf_counter()
        received, last_byte = 0, 0.0

        def count(chunk: bytes) -> None:
            nonlocal received, last_byte
            received += len(chunk)
            last_byte = time.perf_counter()

        await engine.follow(record.label, count, offset=0)
        finished_s = time.perf_counter() - start
        simtui_s = last_byte - start
    finally:
        await engine.close()
    assert received == size, f"received {received} of {size} bytes"
    remote_log = f"{JOBS}/{record.label}/out.log"
    start = time.perf_counter()
    subprocess.run([*openssh(host, *CURVE25519), "cat", remote_log], check=True, stdout=subprocess.DEVNULL)
    ssh_s = time.perf_counter() - start
    # Peak memory of a separate simtui process reading the same log from the host.
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    local_copy = Path(os.environ["SIMTUI_HOME"]) / "logs" / f"{record.label}.log.gz"
    local_copy.rename(local_copy.with_suffix(".moved"))  # make `simtui log` fetch it from the host
    simtui(config, "log", record.label)
    peak_mb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    print(f"ingest {size_mb} MB: simtui follow -> local copy {size_mb / simtui_s:7.1f} MB/s "
          f"({simtui_s:.2f} s to the last byte; {finished_s:.2f} s with the record settled "
          f"and the copy gzipped)")
    print(f"ingest {size_mb} MB: ssh cat >/dev/null         {size_mb / ssh_s:7.1f} MB/s ({ssh_s:.2f} s)")
    print(f"ratio simtui/ssh: {ssh_s / simtui_s:.2f}x of the raw ssh rate (target >= 0.5x)")
    print(f"peak RSS of `simtui log` streaming {size_mb} MB: {peak_mb:.0f} MB (target < 150 MB)")


def main(argv: list[str] | None = None) -> None:
    parser = arguments("jobs", __doc__)
    parser.add_argument("--reps", type=int, default=15, help="launches per case")
    parser.add_argument("--size", type=int, default=200, help="MB the ingest job writes")
    parser.add_argument("--smoke", action="store_true", help="a tiny run: every row, 2 launches, 2 MB")
    options = parser.parse_args(argv)
    if options.smoke:
        options.reps, options.size = 2, 2
    with tempfile.TemporaryDirectory(prefix="simtui-bench-jobs-") as tmp, sshd_lab(1) as lab, \
            simtui_home(Path(tmp)) as home:
        config = home / "config.toml"
        config.write_text(f'[defaults]\njobs_dir = "{JOBS}"\n\n' + lab.config_toml())
        host = lab.hosts[0]
        try:
            asyncio.run(launch(host, config, options.reps))
            asyncio.run(ingest(host, config, options.size))
        finally:
            clean_hosts(lab, JOBS.split("/")[0], RAW_LOG)
            subprocess.run([sys.executable, "-m", "simtui", "--config", str(config), "server", "stop"],
                           capture_output=True, check=False)
