"""The remote job layout, over any Host: launch detached, inspect, kill, follow.

A job lives in ``<jobs_dir>/<label>/`` on its host:

- ``out.log``  stdout and stderr of the job
- ``pid``      "PID STARTTIME": the wrapper's pid, which is also the job's process
               group and session, and its start time (``/proc/PID/stat`` field 22):
               together they name that process alone, so a reused pid is never
               taken for the job. Written once (``ln``, never replaced): a cancel
               that writes "cancelled" there first keeps the job from ever starting
- ``started``  touched as the job's command starts: files changed since are outputs
- ``exit``     the exit code, written by the wrapper when the job ends (also on TERM);
               ``kill`` writes 137 when it had to use KILL
- ``params.<format>``  the merged parameters, unless they replace a file in the run's own folder
- ``meta.json`` / ``peak.json`` / ``outputs.json``  provenance captured on the host

Modes: unless the host's config says ``share = true``, the launch runs under
``umask 077`` and makes the job's folder (and the jobs folder, when it is the
user's own, not sticky and not home) 0700: every file simtui writes there
(``out.log``, ``pid``, ``meta.json`` with the git diff, ``params``,
``outputs.json``, ...) is 0600, and no other user can list or read any of it.
The job itself runs with the user's own umask, so its outputs get the modes the
user's other programs give theirs. With ``share = true`` nothing is changed:
the user's umask decides (typically 0755 folders and 0644 files).

The job runs under ``setsid`` with stdin from /dev/null, so closing simtui, losing
the network or restarting sshd does not stop it. Its environment has
``SIMTUI_LABEL``, ``SIMTUI_HOST``, ``SIMTUI_RUN_DIR`` and, with parameters,
``SIMTUI_PARAMS``. Every script here is a constant and every value reaches it as
a quoted argument (or on stdin), never pasted into the text.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from simtui.errors import HostError, UsageError
from simtui.hosts.base import Host, home_relative
from simtui.model import JobState, Needs

# Sets $sess and $st from the words of /proc/PID/stat after "(comm) ": the session
# (field 6) and the start time (field 22).
PROC_FIELDS = r"""
proc_fields() { sess=$4; shift 19; st=$1; }
"""

# With $SIMTUI_CONTAINER and $SIMTUI_IMAGE set (see hosts.containers), the job's argv
# becomes the engine running it in that image: the workdir and the job's folder
# ($d) mounted at the same paths, the workdir as working directory, the user's uid
# kept, the SIMTUI_* variables passed in, GPUs with $SIMTUI_GPUS. stop_container
# stops it (a container's first process may ignore TERM, and podman's and docker's
# run under their own monitor, not in the job's process group).
CONTAINER = r"""
stop_container() { :; }
case ${SIMTUI_CONTAINER:-} in
podman|docker)
    name=simtui-$SIMTUI_LABEL
    user=--userns=keep-id gpu=
    [ "$SIMTUI_CONTAINER" = docker ] && user=--user=$(id -u):$(id -g)
    [ -n "${SIMTUI_GPUS:-}" ] && { gpu=--device=nvidia.com/gpu=all; [ "$SIMTUI_CONTAINER" = docker ] && gpu=--gpus=all; }
    set -- -w "$PWD" -e SIMTUI_LABEL -e SIMTUI_HOST -e SIMTUI_RUN_DIR ${SIMTUI_PARAMS:+-e SIMTUI_PARAMS} $gpu \
        "$SIMTUI_IMAGE" "$@"
    [ "$d" = "$PWD" ] || set -- -v "$d:$d" "$@"
    set -- "$SIMTUI_CONTAINER" run --rm --name "$name" $user -v "$PWD:$PWD" "$@"
    stop_container() { "$SIMTUI_CONTAINER" stop -t 2 "$name" >/dev/null 2>&1; } ;;
apptainer)
    gpu=
    [ -n "${SIMTUI_GPUS:-}" ] && gpu=--nv
    set -- --pwd "$PWD" $gpu "$SIMTUI_IMAGE" "$@"
    [ "$d" = "$PWD" ] || set -- --bind "$d" "$@"
    set -- apptainer exec --bind "$PWD" "$@" ;;
esac
"""

# $1 = job dir, $2 = provenance.py on this host ("" for none), $3 = the umask for
# the job itself (the user's), $4 = where to look for outputs, $5 = how many input
# paths follow; then the inputs, then the job's argv. Runs as the session leader, in
# the workdir, under the launch's umask (077 unless shared) for its own files. With
# provenance.py: meta.json before the job starts, peak.json while it runs,
# outputs.json when it has ended.
WRAPPER = PROC_FIELDS + r"""
d=$1; prov=$2; job_umask=$3; outdir=$4; n=$5; shift 5
own_umask=$(umask)
st=-
if [ -r /proc/$$/stat ]; then s=$(cat /proc/$$/stat); proc_fields ${s##*) }; fi
echo "$$ $st" > "$d/pid.$$" || exit 1
ln "$d/pid.$$" "$d/pid" 2>/dev/null || { rm -f "$d/pid.$$"; exit 0; }  # cancelled first
rm -f "$d/pid.$$"
if [ -n "$prov" ]; then
    python3 "$prov" start . "$n" "$@" > "$d/meta.json.tmp" 2> "$d/capture.err" \
        && mv "$d/meta.json.tmp" "$d/meta.json"
    python3 "$prov" monitor $$ "$d/peak.json" 2>> "$d/capture.err" &
    monitor=$!
fi
shift "$n"
""" + CONTAINER + r"""
: > "$d/started"
umask "$job_umask"
"$@" &
child=$!
umask "$own_umask"
trap 'termed=1; kill -TERM "$child" 2>/dev/null; stop_container' TERM INT HUP
code=127
while :; do
    termed=0
    wait "$child"; c=$?
    [ "$c" = 127 ] || code=$c  # 127: reaped by an earlier, interrupted wait
    [ "$termed" = 1 ] || break  # a trap cut the wait short: wait for the real end
done
if [ -n "$prov" ]; then
    kill "$monitor" 2>/dev/null
    python3 "$prov" end "$outdir" "$d/started" > "$d/outputs.json.tmp" 2>> "$d/capture.err" \
        && mv "$d/outputs.json.tmp" "$d/outputs.json"
fi
echo "$code" > "$d/exit.tmp" && mv "$d/exit.tmp" "$d/exit"
exit "$code"
"""

# $1 = wrapper text, $2 = job dir, $3 = workdir, $4 = provenance.py or "", $5 = a
# virtual environment (relative to the workdir) or "", $6 = label, $7 = host name,
# $8 = "own" when the workdir is the run's own folder (else the job dir is),
# $9 = where the merged parameters go ("" for none; else "work:PATH" relative to the
# workdir or "job:NAME" in the job dir; their text comes on stdin), ${10} = the
# positions (1-based, space separated) of the job's arguments to replace with their
# path, ${11} = "share" to leave modes to the user's umask (else umask 077 and the
# job's folder and the jobs folder 0700); the rest goes to the wrapper. The venv goes
# first on PATH for the wrapper: the job and its capture both see it. Prints,
# NUL-separated: pid, start time, the run's folder, the workdir, the outputs folder
# and the parameters file (absolute). PREPARE is the part every kind of host shares:
# it leaves the wrapper's arguments in "$@" and $out, $run set.
PREPARE = r"""
wrapper=$1; d=$2; w=$3; prov=$4; venv=$5; label=$6; name=$7; own=$8; params=$9; replace=${10}; share=${11}; shift 11
job_umask=$(umask)
[ "$share" = share ] || umask 077
case $d in /*) ;; *) d=$PWD/$d ;; esac  # relative to home: keep them so after the cd
case $prov in ""|/*) ;; *) prov=$PWD/$prov ;; esac
[ -z "$prov" ] || [ -f "$prov" ] || { echo "the agent is gone: no $prov" >&2; exit 97; }
mkdir -p "$d" || exit 90
if [ "$share" != share ]; then  # no other user lists or reads the jobs (a shared /tmp-like parent is left alone)
    chmod 700 "$d" || exit 90
    jobs=${d%/*}
    [ -n "$jobs" ] && [ -O "$jobs" ] && [ ! -k "$jobs" ] && [ "$jobs" != "${HOME%/}" ] && chmod go-rwx "$jobs"
fi
cd "$w" 2>/dev/null || { echo "workdir $w does not exist" >&2; exit 91; }
if [ -n "$venv" ]; then
    VIRTUAL_ENV=$(cd "$venv" 2>/dev/null && pwd) || { echo "virtual environment $venv does not exist" >&2; exit 94; }
    PATH=$VIRTUAL_ENV/bin:$PATH
    export VIRTUAL_ENV PATH
fi
if [ -e "$d/pid" ]; then
    grep -q cancelled "$d/pid" && { echo "cancelled before it started" >&2; exit 96; }
    echo "job dir $d is in use" >&2; exit 92
fi
run=$d
[ "$own" = own ] && run=$PWD
SIMTUI_LABEL=$label SIMTUI_HOST=$name SIMTUI_RUN_DIR=$run
export SIMTUI_LABEL SIMTUI_HOST SIMTUI_RUN_DIR
given=
case $params in
    "") ;;
    work:*) given=${params#work:}; SIMTUI_PARAMS=$PWD/$given ;;
    job:*) SIMTUI_PARAMS=$d/${params#job:}; given=$SIMTUI_PARAMS ;;
esac
if [ -n "$params" ]; then
    mkdir -p "$(dirname "$SIMTUI_PARAMS")" && cat > "$SIMTUI_PARAMS.tmp" \
        && mv -f "$SIMTUI_PARAMS.tmp" "$SIMTUI_PARAMS" \
        || { echo "cannot write the parameters to $SIMTUI_PARAMS" >&2; exit 95; }
    export SIMTUI_PARAMS
fi
if [ -n "$replace" ]; then  # the job's argv follows the outputs folder, the count and the inputs
    skip=$((2 + $2)); i=0
    for a do
        shift; i=$((i + 1))
        case " $replace " in *" $((i - skip)) "*) a=$given ;; esac
        set -- "$@" "$a"
    done
fi
case $1 in /*) out=$1 ;; *) out=$PWD/$1 ;; esac
"""
LAUNCH = PREPARE + r"""
: > "$d/out.log"
setsid sh -c "$wrapper" simtui-job "$d" "$prov" "$job_umask" "$@" < /dev/null >> "$d/out.log" 2>&1 &
i=0
while [ ! -s "$d/pid" ]; do  # the wrapper writes it within milliseconds: look often at first
    i=$((i + 1)); [ "$i" -gt 520 ] && { echo "job did not start" >&2; exit 93; }
    if [ "$i" -le 20 ]; then sleep 0.002; else sleep 0.01; fi
done
read pid st < "$d/pid"
[ "$pid" = cancelled ] && { echo "cancelled before it started" >&2; exit 96; }
printf '%s\0' "$pid" "$st" "$run" "$PWD" "$out" "${SIMTUI_PARAMS:-}"
"""

# $1 = job dir. Cancel a job that has not started: "cancelled" when this made sure
# it never will, else the pid file's "PID STARTTIME" (it had started).
CLAIM = r"""
mkdir -p "$1" || exit 1
if ( set -C; echo cancelled > "$1/pid" ) 2>/dev/null; then echo cancelled; else cat "$1/pid"; fi
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

# Arguments: job dirs. One line per job: dir, pid, its start time, alive (0/1), exit
# code, log size, and when the exit file was written (unix seconds; "-" when none).
STATUS = ALIVE + r"""
for d do
    pid= st=
    read pid st < "$d/pid" 2>/dev/null
    case $pid in ""|*[!0-9]*) pid= ;; esac
    alive=0
    [ -n "$pid" ] && alive "$pid" && alive=1
    code=$(cat "$d/exit" 2>/dev/null)  # after the alive test: a job ending between the two is never lost
    size=$(wc -c < "$d/out.log" 2>/dev/null)
    ended=$(date -r "$d/exit" +%s.%N 2>/dev/null)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$d" "${pid:--}" "${st:--}" "$alive" "${code:--}" "${size:-0}" "${ended:--}"
done
"""

# $1 = job dir, $2 = grace in tenths of a second, $3 = the job's pid and $4 its start
# time as recorded at launch (both "" when unknown: then the pid file's). An exit
# file outranks a pid: the job has ended. No signal unless the pid names the job's
# session leader with that start time. Says "ended", "gone" or "killed".
KILL = ALIVE + PROC_FIELDS + r"""
d=$1; grace=$2; pid=$3; start=$4
[ -f "$d/exit" ] && { echo ended; exit 0; }
[ -n "$pid" ] || read pid start < "$d/pid" 2>/dev/null
case $pid in ""|*[!0-9]*) echo "no job pid in $d" >&2; exit 1 ;; esac
is_job() {
    if [ -d /proc/self ]; then
        s=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
        proc_fields ${s##*) }
        [ "$sess" = "$pid" ] && { [ "$start" = - ] || [ "$st" = "$start" ]; }
    else
        [ "$(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ')" = "$pid" ]
    fi
}
is_job || { echo gone; exit 0; }
kill -s TERM -- "-$pid" 2>/dev/null || { echo gone; exit 0; }
i=0
while alive "$pid"; do
    [ "$i" -eq "$grace" ] && kill -s KILL -- "-$pid" 2>/dev/null
    [ "$i" -gt $((grace + 50)) ] && { echo "job $pid survived KILL" >&2; exit 1; }
    sleep 0.1; i=$((i + 1))
done
[ -f "$d/exit" ] || echo 137 > "$d/exit"
echo killed
"""


@dataclass(frozen=True)
class RemoteJob:
    """What a job's folder (and its host's scheduler, where it has one) says right now."""

    label: str
    pid: int | None
    alive: bool
    exit_code: int | None
    log_size: int
    ended: float | None = None
    pid_start: int | None = None
    # A scheduler's host: whether the job still waits in its queue, when it started,
    # the end state the scheduler gives it (it outranks the exit code: a job it
    # cancelled is killed, one on a node that failed is lost) and what it says.
    queued: bool = False
    started: float | None = None
    outcome: JobState | None = None
    scheduler: dict[str, Any] | None = None

    @property
    def vanished(self) -> bool:
        """Its processes are gone and it left no exit code: the job is lost."""
        return self.pid is not None and not self.alive and self.exit_code is None and self.outcome is None


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


@dataclass(frozen=True)
class Params:
    """The merged parameters file to write before the job starts."""

    text: str
    target: str  # "work:PATH" (relative to the workdir) or "job:NAME" (in the job dir)
    positions: tuple[int, ...] = ()  # the job's arguments (1-based) that name it


@dataclass(frozen=True)
class Request:
    """What a job asks of its host's scheduler (a host without one runs it as it is)."""

    needs: Needs = Needs()
    partition: str | None = None
    time: str | None = None  # a time limit ("1:00:00")
    after: int | None = None  # the job in the same host's queue it waits for (its ``pid``)
    array: bool = False  # a point of a job array: made ready, submitted with the others (submit_array)


@dataclass(frozen=True)
class Launched:
    """What the host says of a job it has just started (paths absolute)."""

    pid: int
    pid_start: int | None
    run_dir: str
    workdir: str
    outputs_root: str
    params_path: str | None
    scheduler: dict[str, Any] | None = None  # what its host's scheduler says of it (it waits in its queue)


class LaunchRefused(UsageError):
    """The launch failed for a reason the user can fix (a missing workdir or venv)."""


class LaunchFailed(HostError):
    """The host could not start the job."""

    reason = "launch failed"


class AlreadyLaunched(LaunchFailed):
    """The job folder shows an earlier launch of this label (one whose answer was lost)."""


class AgentGone(LaunchFailed):
    """provenance.py is no longer where the agent was installed (install it again)."""


USER_FIXABLE = {91, 94, 98}  # workdir, virtual environment missing; the scheduler refused the job
IN_USE = 92  # the job folder has a pid file: launched before
AGENT_GONE = 97


async def launch(
    host: Host, jobs_dir: str, label: str, argv: Sequence[str], workdir: str = ".",
    capture: Capture | None = None, venv: str | None = None, *, own_dir: bool = False,
    params: Params | None = None, share: bool = False, script: str = LAUNCH, lead: Sequence[str] = (),
    environment: Sequence[str] = (),
) -> Launched:
    """Start ``argv`` detached in ``workdir`` (with ``venv`` first on its PATH);
    ``own_dir``: the workdir is the run's own folder; ``share``: leave the modes of
    the job's folder and files to the user's umask (else 0700 and 0600). Raises
    LaunchRefused for what the user can fix, LaunchFailed otherwise (also when a
    cancel came first). ``script`` (PREPARE and how to start) and the arguments it
    takes before PREPARE's (``lead``) are another kind of host's way to start it.
    ``environment``: NAME=VALUE words for the job and its wrapper (an image to run it in)."""
    d = job_dir(jobs_dir, label)
    capture = capture or Capture("")
    head = [capture.script, venv or "", label, host.name, "own" if own_dir else "",
            params.target if params else "", " ".join(map(str, params.positions)) if params else "",
            "share" if share else ""]
    tail = [capture.outputs_dir, str(len(capture.inputs)), *capture.inputs, *argv]
    argv = _sh(script, *lead, WRAPPER, d, home_relative(workdir), *head, *tail)
    result = await host.run(["env", *environment, *argv] if environment else argv,
                            input=params.text if params else None)
    if not result.ok:
        why = result.why
        if result.exit_status in USER_FIXABLE:
            raise LaunchRefused(f"{host.name}: {why}")
        failure = {IN_USE: AlreadyLaunched, AGENT_GONE: AgentGone}.get(result.exit_status, LaunchFailed)
        raise failure(host.name, why)
    pid, start, run_dir, cwd, outputs_root, params_path = result.stdout.split("\0")[-7:-1]
    return Launched(int(pid.split()[-1]), int(start) if start.isdigit() else None, run_dir, cwd,
                    posixpath.normpath(outputs_root),
                    params_path or None)


async def claim(host: Host, jobs_dir: str, label: str) -> tuple[int, int | None] | None:
    """Make sure a job that has not started never will: None when that is so now,
    else its ``(pid, start time)`` (it had started)."""
    out = (await host.check(_sh(CLAIM, job_dir(jobs_dir, label)))).split()
    if not out or out[0] == "cancelled" or not out[0].isdigit():
        return None
    return int(out[0]), int(out[1]) if len(out) > 1 and out[1].isdigit() else None


async def status(host: Host, jobs_dir: str, labels: Sequence[str]) -> dict[str, RemoteJob]:
    """Read every job's folder in one command."""
    if not labels:
        return {}
    dirs = {job_dir(jobs_dir, label): label for label in labels}
    out = await host.check(_sh(STATUS, *dirs))
    jobs = {}
    for line in out.splitlines():
        d, pid, start, alive, code, size, ended = line.split("\t")
        label = dirs[d]
        jobs[label] = RemoteJob(
            label,
            int(pid) if pid.isdigit() else None,
            alive == "1",
            int(code) if code.lstrip("-").isdigit() else None,
            int(size) if size.isdigit() else 0,
            _seconds(ended),
            int(start) if start.isdigit() else None,
        )
    return jobs


async def kill(host: Host, jobs_dir: str, label: str, grace: float,
               pid: int | None = None, pid_start: int | None = None) -> str:
    """TERM the job's process group; KILL it if it is still there after ``grace`` s.
    Only when ``pid`` (default: the pid file's) is the job's session leader started
    at ``pid_start``. Returns "killed", "ended" (its exit file was there first) or
    "gone" (no process of it is left)."""
    d = job_dir(jobs_dir, label)
    start = "-" if pid is not None and pid_start is None else str(pid_start or "")
    out = await host.check(_sh(KILL, d, str(max(int(grace * 10), 0)), str(pid or ""), start))
    return out.split()[-1] if out.split() else "gone"


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


# $1 = log, $2 = offset, $3 = the job's folder, $4 = the job's pid (0: none to watch
# here, as on a cluster's login node), $5 = its start time ("-": unknown). Prints the
# log from the offset until the exit file appears (or the ``ended`` file a scheduler's
# host writes for a job that ended without one, or that process is gone: no such pid,
# a zombie, or another process's), then what
# the log got before: nothing written before the end is missed. It notices the end
# at once (inotify; else within 50 ms), where ``tail --pid`` waits for the job's
# zombie to be reaped (by an init that may take seconds, or never). Framed (see
# Follower): "F", then "D" + 4-byte length + log bytes, and last "E" + length + one
# JSON object: what the job's folder says at the end (exit code, when, the log's
# size, the provenance files), so that the caller settles the record with no
# further round trip. It ends when its stdin closes (the caller stopped).
FOLLOW_PY = r"""
import json, os, select, struct, sys
log, offset, d, pid, start = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
out = sys.stdout.buffer
exit_file = os.path.join(d, "exit")
ended_file = os.path.join(d, "ended")


def gone():
    if pid <= 0:
        return os.path.exists(ended_file)
    try:
        with open("/proc/%d/stat" % pid, "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[0] == b"Z" or (start != "-" and fields[19] != start.encode())
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False


# An inotify descriptor on the job's folder (the log grows, the exit file comes), so
# the end is seen at once; None where there is no inotify: then a 50 ms poll.
def watch():
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd >= 0 and libc.inotify_add_watch(fd, d.encode(), 0x2 | 0x8 | 0x80 | 0x100) >= 0:
            return fd  # IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE
        if fd >= 0:
            os.close(fd)
    except (OSError, AttributeError):
        pass
    return None


def frame(kind, data):
    out.write(kind + struct.pack(">I", len(data)))
    out.write(data)


def end():
    found = {"size": os.path.getsize(log) if os.path.exists(log) else 0}
    try:
        with open(exit_file) as f:
            found["exit"] = f.read().strip()
        found["ended"] = os.stat(exit_file).st_mtime
    except OSError:
        pass
    for name in ("meta", "peak", "outputs"):
        try:
            with open(os.path.join(d, name + ".json")) as f:
                found[name] = json.load(f)
        except (OSError, ValueError):
            pass
    return json.dumps(found).encode()


out.write(b"F")
events = watch()
source = None
while True:
    done = os.path.exists(exit_file) or gone()
    if source is None:
        try:
            source = open(log, "rb")
            source.seek(offset)
        except OSError:
            source = None
    while source is not None:
        data = source.read(1 << 20)
        if not data:
            break
        frame(b"D", data)
        out.flush()
    if done:
        frame(b"E", end())
        out.flush()
        break
    ready = select.select([0] if events is None else [0, events], [], [], 0.05 if events is None else 0.5)[0]
    if 0 in ready and not os.read(0, 1024):
        break
    if events in ready:
        while True:  # drained: one pass reads all the log has got
            try:
                if not os.read(events, 1 << 16):
                    break
            except BlockingIOError:
                break
"""
# The same with python ($7) where the host has it, else ``tail -F --pid`` unframed ("R").
FOLLOW = r"""
log=$1 offset=$2 d=$3 pid=$4 start=$5 script=$6 python=$7
command -v "$python" >/dev/null 2>&1 && exec "$python" -S -c "$script" "$log" "$offset" "$d" "$pid" "$start"
printf R
exec tail -c +$((offset + 1)) -F -s 0.2 --pid="$pid" "$log"
"""


FRAME_HEAD = struct.Struct(">cI")  # a frame's kind and length


class Follower:
    """The log of one job from byte ``offset`` on, live, until the job has ended
    (see FOLLOW_PY): iterate it for the bytes; then ``ended`` holds what the job's
    folder said at its end (as status() would: its exit code is None where the
    processes went without one) and ``provenance`` its files (as provenance()
    gives them); ``ended`` stays None where the stream was cut (or the host has
    no python3)."""

    def __init__(self, host: Host, jobs_dir: str, label: str, pid: int, offset: int = 0,
                 pid_start: int | None = None) -> None:
        d = job_dir(jobs_dir, label)
        self._argv = _sh(FOLLOW, _log(jobs_dir, label), str(offset), d, str(pid),
                         str(pid_start) if pid_start is not None else "-", FOLLOW_PY, host.helper_python)
        self._host = host
        self._job = (label, pid, pid_start)
        self.ended: RemoteJob | None = None
        self.provenance: dict[str, dict] = {}

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """The log's bytes as they arrive: a frame's data is passed on piece by
        piece, never held back until the whole frame is there."""
        head = b""  # a frame's header, while it is incomplete
        kind, left = b"", 0  # the frame being read and how many of its bytes are still to come
        trailer = bytearray()
        framed: bool | None = None
        async for chunk in self._host.stream(self._argv):
            if framed is None:
                framed, chunk = chunk[:1] == b"F", chunk[1:]
            if not framed:
                yield chunk
                continue
            at = 0
            while at < len(chunk):
                if not left:
                    need = FRAME_HEAD.size - len(head)
                    head, at = head + chunk[at:at + need], at + need
                    if len(head) == FRAME_HEAD.size:
                        kind, left = FRAME_HEAD.unpack(head)
                        head = b""
                    continue
                piece = chunk[at:at + left]
                at, left = at + len(piece), left - len(piece)
                if kind == b"D":
                    yield piece
                    continue
                trailer += piece
                if not left:
                    self._end(bytes(trailer))
                    return

    def _end(self, trailer: bytes) -> None:
        try:
            found = json.loads(trailer)
        except ValueError:
            return
        label, pid, pid_start = self._job
        code = str(found.get("exit", ""))
        self.ended = RemoteJob(label, pid, False, int(code) if code.lstrip("-").isdigit() else None,
                               int(found.get("size", 0)), found.get("ended"), pid_start)
        self.provenance = {name: found[name] for name in ("meta", "peak", "outputs")
                           if isinstance(found.get(name), dict)}
