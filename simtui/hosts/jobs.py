"""The remote job layout, over any Host: launch detached, inspect, kill, follow.

A job lives in ``<jobs_dir>/<label>/`` on its host:

- ``out.log``  stdout and stderr of the job
- ``pid``      the wrapper's pid, which is also the job's process group and session
- ``exit``     the exit code, written by the wrapper when the job ends (also on TERM);
               ``kill`` writes 137 when it had to use KILL
- ``meta.json`` / ``outputs.json``  provenance captured on the host (start / end)

The job runs under ``setsid`` with stdin from /dev/null, so closing simtui, losing
the network or restarting sshd does not stop it. Every script here is a constant
and every value reaches it as a quoted argument, never pasted into the text.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from simtui.errors import CommandFailed, UsageError
from simtui.hosts.base import Host, home_relative

# $1 = job dir, $2 = provenance.py on this host ("" for none), $3 = where to look
# for outputs, $4 = how many input paths follow; then the inputs, then the job's
# argv. Runs as the session leader, in the workdir. With provenance.py: meta.json
# before the job starts, peak.json while it runs, outputs.json when it has ended.
WRAPPER = r"""
d=$1; prov=$2; outdir=$3; n=$4; shift 4
echo $$ > "$d/pid.tmp" && mv "$d/pid.tmp" "$d/pid"
if [ -n "$prov" ]; then
    python3 "$prov" start . "$n" "$@" > "$d/meta.json.tmp" 2> "$d/capture.err" \
        && mv "$d/meta.json.tmp" "$d/meta.json"
    python3 "$prov" monitor $$ "$d/peak.json" 2>> "$d/capture.err" &
    monitor=$!
fi
shift "$n"
"$@" &
child=$!
trap 'termed=1; kill -TERM "$child" 2>/dev/null' TERM INT HUP
code=127
while :; do
    termed=0
    wait "$child"; c=$?
    [ "$c" = 127 ] || code=$c  # 127: reaped by an earlier, interrupted wait
    [ "$termed" = 1 ] || break  # a trap cut the wait short: wait for the real end
done
if [ -n "$prov" ]; then
    kill "$monitor" 2>/dev/null
    python3 "$prov" end "$outdir" "$d/pid" > "$d/outputs.json.tmp" 2>> "$d/capture.err" \
        && mv "$d/outputs.json.tmp" "$d/outputs.json"
fi
echo "$code" > "$d/exit.tmp" && mv "$d/exit.tmp" "$d/exit"
exit "$code"
"""

# $1 = wrapper text, $2 = job dir, $3 = workdir, $4 = provenance.py or "", $5 = a
# virtual environment (relative to the workdir) or ""; the rest goes to the wrapper.
# The venv goes first on PATH for the wrapper: the job and its capture both see it.
LAUNCH = r"""
wrapper=$1; d=$2; w=$3; prov=$4; venv=$5; shift 5
case $d in /*) ;; *) d=$PWD/$d ;; esac  # relative to home: keep them so after the cd
case $prov in ""|/*) ;; *) prov=$PWD/$prov ;; esac
mkdir -p "$d" || exit 90
cd "$w" 2>/dev/null || { echo "workdir $w does not exist" >&2; exit 91; }
if [ -n "$venv" ]; then
    VIRTUAL_ENV=$(cd "$venv" 2>/dev/null && pwd) || { echo "virtual environment $venv does not exist" >&2; exit 94; }
    PATH=$VIRTUAL_ENV/bin:$PATH
    export VIRTUAL_ENV PATH
fi
[ -e "$d/pid" ] && { echo "job dir $d is in use" >&2; exit 92; }
: > "$d/out.log"
setsid sh -c "$wrapper" simtui-job "$d" "$prov" "$@" < /dev/null >> "$d/out.log" 2>&1 &
i=0
while [ ! -s "$d/pid" ]; do
    i=$((i + 1)); [ "$i" -gt 500 ] && { echo "job did not start" >&2; exit 93; }
    sleep 0.01
done
cat "$d/pid"
"""

# $1 = job dir: each provenance file there as "name<TAB>its one line of JSON".
PROVENANCE = r"""
for f in meta.json peak.json outputs.json; do
    [ -f "$1/$f" ] && printf '%s\t%s\n' "$f" "$(cat "$1/$f")"
done
exit 0
"""

# Is any process of session $1 still running? Zombies do not count: a reaper
# that is slow to collect them must not make a finished job look alive.
ALIVE = r"""
alive() { ps -o stat= -s "$1" 2>/dev/null | grep -q '^[^Z]'; }
"""

# Arguments: job dirs. One line per job: dir, pid, alive (0/1), exit code, log size,
# and when the exit file was written (unix seconds; "-" when there is none).
STATUS = ALIVE + r"""
for d do
    pid=$(cat "$d/pid" 2>/dev/null)
    alive=0
    [ -n "$pid" ] && alive "$pid" && alive=1
    code=$(cat "$d/exit" 2>/dev/null)  # after the alive test: a job ending between the two is never lost
    size=$(wc -c < "$d/out.log" 2>/dev/null)
    ended=$(date -r "$d/exit" +%s.%N 2>/dev/null)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$d" "${pid:--}" "$alive" "${code:--}" "${size:-0}" "${ended:--}"
done
"""

# $1 = job dir, $2 = grace in tenths of a second. TERM the group, KILL after grace.
KILL = ALIVE + r"""
d=$1; grace=$2
pid=$(cat "$d/pid" 2>/dev/null) || { echo "no pid file in $d" >&2; exit 1; }
kill -s TERM -- "-$pid" 2>/dev/null || exit 0
i=0
while alive "$pid"; do
    [ "$i" -eq "$grace" ] && kill -s KILL -- "-$pid" 2>/dev/null
    [ "$i" -gt $((grace + 50)) ] && { echo "job $pid survived KILL" >&2; exit 1; }
    sleep 0.1; i=$((i + 1))
done
[ -f "$d/exit" ] || echo 137 > "$d/exit"
"""


@dataclass(frozen=True)
class RemoteJob:
    """What a job's folder says right now."""

    label: str
    pid: int | None
    alive: bool
    exit_code: int | None
    log_size: int
    ended: float | None = None

    @property
    def vanished(self) -> bool:
        """Its processes are gone and it left no exit code: the job is lost."""
        return self.pid is not None and not self.alive and self.exit_code is None


def job_dir(jobs_dir: str, label: str) -> str:
    """The job's folder as a path for a command on the host (relative = under home)."""
    if not label or "/" in label or label in (".", ".."):
        raise UsageError(f"bad job label {label!r}")
    return home_relative(posixpath.join(jobs_dir, label))


def _sh(script: str, *args: str) -> list[str]:
    return ["sh", "-c", script, "sh", *args]


@dataclass(frozen=True)
class Capture:
    """Provenance for the wrapper to take on the host (see provenance.py)."""

    script: str  # provenance.py's path on the host
    inputs: tuple[str, ...] = ()  # relative to the workdir
    outputs_dir: str = "."  # where outputs are looked for, relative to the workdir


async def launch(
    host: Host, jobs_dir: str, label: str, argv: Sequence[str], workdir: str = ".",
    capture: Capture | None = None, venv: str | None = None,
) -> int:
    """Start ``argv`` detached in ``workdir`` (with ``venv`` first on its PATH);
    returns the job's pid (= its process group)."""
    d = job_dir(jobs_dir, label)
    capture = capture or Capture("")
    head = [capture.script, venv or "", capture.outputs_dir, str(len(capture.inputs)), *capture.inputs]
    result = await host.run(_sh(LAUNCH, WRAPPER, d, home_relative(workdir), *head, *argv))
    if not result.ok:
        raise CommandFailed(host.name, f"launch {label}", result.exit_status, result.stderr)
    return int(result.stdout.split()[-1])


async def status(host: Host, jobs_dir: str, labels: Sequence[str]) -> dict[str, RemoteJob]:
    """Read every job's folder in one command."""
    if not labels:
        return {}
    dirs = {job_dir(jobs_dir, label): label for label in labels}
    out = await host.check(_sh(STATUS, *dirs))
    jobs = {}
    for line in out.splitlines():
        d, pid, alive, code, size, ended = line.split("\t")
        label = dirs[d]
        jobs[label] = RemoteJob(
            label,
            int(pid) if pid.isdigit() else None,
            alive == "1",
            int(code) if code.lstrip("-").isdigit() else None,
            int(size) if size.isdigit() else 0,
            _seconds(ended),
        )
    return jobs


async def kill(host: Host, jobs_dir: str, label: str, grace: float) -> None:
    """TERM the job's process group; KILL it if it is still there after ``grace`` s."""
    d = job_dir(jobs_dir, label)
    await host.check(_sh(KILL, d, str(max(int(grace * 10), 0))))


async def provenance(host: Host, jobs_dir: str, label: str) -> dict[str, dict]:
    """What the wrapper captured so far: ``meta``, ``peak`` and ``outputs`` (each
    present once written)."""
    out = await host.check(_sh(PROVENANCE, job_dir(jobs_dir, label)))
    found = {}
    for line in out.splitlines():
        name, _, text = line.partition("\t")
        with contextlib.suppress(ValueError):
            found[name.removesuffix(".json")] = json.loads(text)
    return found


def _seconds(text: str) -> float | None:
    """``date +%s.%N`` output; where %N is not supported only the seconds count."""
    try:
        return float(text)
    except ValueError:
        head = text.split(".")[0]
        return float(head) if head.isdigit() else None


def read(host: Host, jobs_dir: str, label: str, offset: int = 0) -> AsyncIterator[bytes]:
    """The log from byte ``offset`` to its current end."""
    return host.stream(["tail", "-c", f"+{offset + 1}", _log(jobs_dir, label)])


def _log(jobs_dir: str, label: str) -> str:
    return posixpath.join(job_dir(jobs_dir, label), "out.log")


def follow(host: Host, jobs_dir: str, label: str, pid: int, offset: int = 0) -> AsyncIterator[bytes]:
    """The log from byte ``offset`` on, live, until the job's wrapper exits.

    ``tail -F`` follows the file by name; ``--pid`` ends it once the job is gone,
    after one last read, so nothing written before the end is missed.
    """
    return host.stream(["tail", "-c", f"+{offset + 1}", "-F", "-s", "0.2", f"--pid={pid}", _log(jobs_dir, label)])
