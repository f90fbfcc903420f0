"""A Slurm cluster as a host: jobs go to ``sbatch``, states come from ``squeue``.

The cluster is reached through its login node, over SSH like any host (or this
machine, ``local = true``). Jobs keep the layout of hosts.jobs in the jobs folder
on the shared filesystem: the same wrapper is the batch script, so provenance is
captured on the compute node. Besides the usual files a job's folder holds
``job.sh`` (the batch script), ``slurm_job`` (its job id, written once: a cancel
that writes "cancelled" there first keeps it from ever being submitted) and, for a
job that Slurm ended without the wrapper writing ``exit`` (killed at its time
limit, a node that failed), ``ended`` with Slurm's state: the follower stops there.

One command per interval serves every job (squeue for all of the user's jobs,
then the folders), and one per interval the partitions (sinfo, squeue's pending
counts). Slurm's state outranks the exit code for the ends it alone knows of
(CANCELLED is killed, NODE_FAIL lost); the record keeps it, with the job id, the
partition, the nodes and the sbatch line.
"""

from __future__ import annotations

import contextlib
import math
import shlex
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from simtui.errors import HostDisconnected, ProbeFailed, UsageError
from simtui.hosts import jobs
from simtui.hosts.base import CommandResult, Host, PortForward
from simtui.model import ClusterJob, HostFacts, HostKind, HostSpec, JobState, Partition, Record, Sample, SlurmOptions

MIB = 1 << 20
FORGOTTEN = 30.0  # seconds squeue must go on not listing a job with no exit code before it is lost
WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
# End states whose outcome Slurm alone knows (COMPLETED and FAILED: the exit code says).
OUTCOMES = {
    "CANCELLED": JobState.KILLED,
    "TIMEOUT": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "NODE_FAIL": JobState.LOST,
    "PREEMPTED": JobState.LOST,
    "REVOKED": JobState.LOST,
}
FINAL = {"COMPLETED", "FAILED", "SPECIAL_EXIT", *OUTCOMES}
# Why a job waits, in plain words (squeue's %r); others are shown as Slurm says them.
REASONS = {
    "Resources": "waiting for resources",
    "Priority": "waiting for jobs of higher priority (priority)",
    "Dependency": "waiting for a dependency",
    "DependencyNeverSatisfied": "its dependency failed: it will never start",
    "BeginTime": "waiting for its start time",
    "JobHeldUser": "held by you (scontrol release)",
    "JobHeldAdmin": "held by an administrator",
    "ReqNodeNotAvail": "the nodes it needs are not available",
    "NodeDown": "a node it needs is down",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "PartitionTimeLimit": "its time limit is above the partition's",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows",
    "Reservation": "waiting for its reservation",
    "Licenses": "waiting for licenses",
    "QOSMaxJobsPerUserLimit": "your QOS allows no more running jobs now",
    "AssocMaxJobsLimit": "your account allows no more running jobs now",
    "AssocGrpCpuLimit": "your account's CPU limit is reached",
    "AssocGrpGRES": "your account's GPU limit is reached",
    "Prolog": "its prolog is running",
    "JobArrayTaskLimit": "waiting for a slot of its sweep (--max-parallel)",
    "None": None,
}
JOB_FIELDS = "%i|%j|%T|%r|%P|%N|%M|%l"  # id, name, state, reason, partition, nodes, elapsed, time limit

# $1 = the user. Every job of theirs Slurm still knows (--states=all), "--", per job
# folder given: folder, job id (the slurm_job file) and exit code, "--", then one
# stat for all their out.log, exit and started files: path, size, mtime. Shell
# builtins and two processes whatever the number of jobs (not a few per job).
STATUS = r"""
u=$1; shift
squeue -h -r --states=all -u "$u" -o '""" + JOB_FIELDS + r"""' || exit 1
echo --
for d do
    id= code=
    read id 2>/dev/null < "$d/slurm_job"
    read code 2>/dev/null < "$d/exit"
    printf '%s|%s|%s\n' "$d" "${id:--}" "${code:--}"
done
echo --
n=$#
for d do set -- "$@" "$d/out.log" "$d/exit" "$d/started"; done
shift "$n"
stat -c '%n|%s|%.9Y' "$@" 2>/dev/null
exit 0
"""

# $1 = the options, one per line; then PREPARE's arguments. Submits the wrapper as
# the batch script, from the workdir (its working directory there too), with the
# environment PREPARE set (--export=ALL). Prints what LAUNCH prints, the job id in
# the pid's place.
SBATCH = r"""
opts=$1; shift
""" + jobs.PREPARE + r"""
if [ "$opts" = - ]; then  # a point of a job array: what its task runs, kept in $d/argv (see ARRAY)
    : > "$d/out.log"
    {
        for v in SIMTUI_LABEL SIMTUI_HOST SIMTUI_RUN_DIR SIMTUI_PARAMS VIRTUAL_ENV PATH SIMTUI_CONTAINER SIMTUI_IMAGE \
                 SIMTUI_GPUS; do
            eval "isset=\${$v+x}"
            [ -n "$isset" ] && eval "printf '%s=%s\0' $v \"\$$v\""
        done
        printf '%s\0' sh -c 'cd "$1" || exit 91; shift; exec "$@"' simtui-cd "$PWD" \
            sh -c "$wrapper" simtui-job "$d" "$prov" "$job_umask" "$@"
    } > "$d/argv" || exit 90
    printf '%s\0' 0 - "$run" "$PWD" "$out" "${SIMTUI_PARAMS:-}"
    exit 0
fi
[ -e "$d/slurm_job" ] && { grep -q cancelled "$d/slurm_job" && { echo "cancelled before it started" >&2; exit 96; }
                           echo "job dir $d was submitted before" >&2; exit 92; }
: > "$d/out.log"
printf '#!/bin/sh\n%s' "$wrapper" > "$d/job.sh" || exit 90
nl='
'
set -f; IFS=$nl
set -- $opts "--output=$d/out.log" --open-mode=append "$d/job.sh" "$d" "$prov" "$job_umask" "$@"
unset IFS; set +f
id=$(sbatch --parsable "$@" 2> "$d/sbatch.err") || { tail -n 3 "$d/sbatch.err" >&2; exit 98; }
id=${id%%;*}
( set -C; echo "$id" > "$d/slurm_job" ) 2>/dev/null || { scancel "$id"; echo "cancelled before it started" >&2; exit 96; }
printf '%s\0' "$id" - "$run" "$PWD" "$out" "${SIMTUI_PARAMS:-}"
"""

# $1 = the options, one per line, $2 = "share" or "", then the job folders of the
# points (their argv written by SBATCH). One sbatch --array: task i runs the i-th
# folder's argv (env, then the wrapper) with its output into that folder's out.log;
# each folder's slurm_job gets its task's id (a point cancelled meanwhile: its task
# is scancelled). Prints the array's job id.
ARRAY = r"""
opts=$1; share=$2; shift 2
[ "$share" = share ] || umask 077
first=$1; case $first in /*) ;; *) first=$PWD/$first ;; esac
list=${first%/*}/array-${first##*/}
for d do case $d in /*) printf '%s\n' "$d" ;; *) printf '%s\n' "$PWD/$d" ;; esac; done > "$list.dirs" || exit 90
printf '%s\n' '#!/bin/sh' 'd=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$1")' \
    'exec xargs -0 -x -a "$d/argv" env >> "$d/out.log" 2>&1' > "$list.sh" || exit 90
nl='
'
set -f; IFS=$nl
set -- $opts --output=/dev/null "$list.sh" "$list.dirs"
unset IFS; set +f
id=$(sbatch --parsable "$@" 2> "$list.err") || { tail -n 3 "$list.err" >&2; exit 98; }
id=${id%%;*}
i=0
while IFS= read -r d; do
    ( set -C; echo "${id}_$i" > "$d/slurm_job" ) 2>/dev/null || scancel "${id}_$i"
    i=$((i + 1))
done < "$list.dirs"
echo "$id"
"""

# $1 = job dir: "cancelled" when this made sure it is never submitted, else its job id.
CLAIM = r"""
mkdir -p "$1" || exit 1
if ( set -C; echo cancelled > "$1/slurm_job" ) 2>/dev/null; then echo cancelled; else cat "$1/slurm_job"; fi
"""

# $1 = job dir, $2 = job id, $3 = how long to wait for its end, in tenths of a second.
# scancel, then wait until Slurm has ended it; "ended" when it had ended first.
KILL = r"""
d=$1; id=$2; wait=$3
read own 2>/dev/null < "$d/slurm_job" && case $own in [0-9]*) id=$own ;; esac  # an array's task: BASE_I
final='""" + " ".join(sorted(FINAL)) + r"""'
state() { squeue -h --states=all -j "$id" -o %T 2>/dev/null; }
over() { [ -z "$1" ] || case " $final " in *" $1 "*) true ;; *) false ;; esac; }
[ -f "$d/exit" ] && { echo ended; exit 0; }
s=$(state); over "$s" && { echo ended; exit 0; }
scancel "$id" || exit 1
i=0
while s=$(state); ! over "$s"; do
    i=$((i + 1)); [ "$i" -gt "$wait" ] && { echo "job $id is still $s after scancel" >&2; exit 1; }
    sleep 0.1
done
[ -f "$d/exit" ] || echo "${s:-CANCELLED}" > "$d/ended"
echo killed
"""

# Per job folder given as "dir|state": write ``ended`` unless the wrapper wrote ``exit``.
MARK_ENDED = r"""
for pair do
    d=${pair%|*}
    [ -f "$d/exit" ] || [ -f "$d/ended" ] || echo "${pair##*|}" > "$d/ended"
done
"""

# A look at the cluster every $1 seconds, for as long as the reader reads: sinfo per
# node and partition, "--", every pending or running job's partition, state and
# user, then "==". One command for the whole watch: no new channel per look.
CLUSTER = r"""
while :; do
    sinfo -h -N -O 'Partition:|,StateLong:|,CPUsState:|,Gres:|,GresUsed:|,Memory:|,AllocMem:|,Time:|,NodeHost:|,Available:|' || exit 1
    echo --
    squeue -h -t PENDING,RUNNING -o '%P|%T|%u' || exit 1
    echo ==
    sleep "$1"
done
"""
FACTS = 'hostname; id -un; sinfo --version; printf "%s\\n" "$(uname -sr)"'


class SlurmHost(Host):
    """A cluster through its login node (``login``: an SSH host, or this machine)."""

    settles_from_folder = False
    takes_arrays = True

    def __init__(self, spec: HostSpec, *, timeout: float = 10.0, keepalive: float = 15.0) -> None:
        super().__init__(spec)
        self.options = spec.slurm or SlurmOptions()
        self.login: Host
        if self.options.local:
            from simtui.hosts.local import LocalHost

            self.login = LocalHost(replace(spec, kind=HostKind.LOCAL))
        else:
            from simtui.hosts.ssh import SshHost

            self.login = SshHost(replace(spec, kind=HostKind.SSH), timeout=timeout, keepalive=keepalive)
        self.helper_python = self.login.helper_python

    # -- the login node carries every command ----------------------------------------------

    @property
    def connected(self) -> bool:
        return self.login.connected

    async def connect(self) -> None:
        await self.login.connect()
        self.known.clear()

    async def run(self, argv: Sequence[str], *, input: str | None = None,
                  timeout: float | None = None) -> CommandResult:
        return await self.login.run(argv, input=input, timeout=timeout)

    def stream(self, argv: Sequence[str]) -> AsyncIterator[bytes]:
        return self.login.stream(argv)

    async def run_with_input(self, argv: Sequence[str], chunks: AsyncIterable[bytes]) -> CommandResult:
        return await self.login.run_with_input(argv, chunks)

    async def forward_local_port(self, local_port: int, remote_host: str, remote_port: int) -> PortForward:
        return await self.login.forward_local_port(local_port, remote_host, remote_port)

    async def put(self, local: Path, remote: str) -> None:
        await self.login.put(local, remote)

    async def get(self, remote: str, local: Path) -> None:
        await self.login.get(remote, local)

    async def close(self) -> None:
        await self.login.close()

    async def user(self) -> str:
        """The login user's name (squeue's -u), asked once per connection."""
        if "user" not in self.known:
            self.known["user"] = (await self.check(["id", "-un"])).strip()
        return self.known["user"]

    # -- jobs ------------------------------------------------------------------------------

    async def launch_job(self, jobs_dir: str, label: str, argv: Sequence[str], workdir: str,
                         capture: jobs.Capture | None, venv: str | None, *, own_dir: bool = False,
                         params: jobs.Params | None = None, share: bool = False,
                         request: jobs.Request | None = None, environment: Sequence[str] = ()) -> jobs.Launched:
        request = request or jobs.Request()
        words = [] if request.array else self.sbatch_options(label, request)
        launched = await jobs.launch(self, jobs_dir, label, argv, workdir, capture, venv, own_dir=own_dir,
                                     params=params, share=share, script=SBATCH,
                                     lead=["-" if request.array else "\n".join(words)], environment=environment)
        if request.array:  # made ready: its array is submitted once every point is
            return replace(launched, scheduler={"state": "PREPARED"})
        return replace(launched, scheduler=self._submitted(str(launched.pid), request, words, "job.sh"))

    async def submit_array(self, jobs_dir: str, labels: Sequence[str], name: str, request: jobs.Request,
                           max_parallel: int | None = None, share: bool = False) -> dict[str, dict[str, Any]]:
        """One ``sbatch --array`` for the points ``labels`` made ready by launch_job
        (``request.array``), named ``simtui-<name>``; what each record keeps of it."""
        words = self.sbatch_options(name, request)
        words.append(f"--array=0-{len(labels) - 1}" + (f"%{max_parallel}" if max_parallel else ""))
        result = await self.run(["sh", "-c", ARRAY, "sh", "\n".join(words), "share" if share else "",
                                 *(jobs.job_dir(jobs_dir, label) for label in labels)])
        if not result.ok:
            raise jobs.LaunchRefused(f"{self.name}: {result.why}")
        base = result.stdout.split()[-1]
        return {label: {**self._submitted(f"{base}_{i}", request, words, "array.sh"), "array": base}
                for i, label in enumerate(labels)}

    def partition(self, request: jobs.Request) -> str | None:
        """The partition a job goes to: the one asked, else the config's first (None: Slurm's default)."""
        return request.partition or (self.options.partitions[0] if self.options.partitions else None)

    def _submitted(self, job_id: str, request: jobs.Request, words: Sequence[str], script: str) -> dict[str, Any]:
        """What a record keeps of a job just submitted with the sbatch options ``words``."""
        return {"job_id": job_id, "partition": self.partition(request), "state": "PENDING",
                "sbatch": shlex.join(["sbatch", *words, script])}

    def sbatch_options(self, label: str, request: jobs.Request) -> list[str]:
        """The sbatch options for a job: its name, what it needs, the host's config."""
        o, needs = self.options, request.needs
        words = [f"--job-name=simtui-{label}", "--export=ALL"]
        partition = self.partition(request)
        if partition:
            words.append(f"--partition={partition}")
        words += [f"--{key}={value}" for key, value in (("account", o.account), ("qos", o.qos)) if value]
        if request.time or o.time:
            words.append(f"--time={request.time or o.time}")
        if needs.cpus:
            words.append(f"--cpus-per-task={math.ceil(needs.cpus)}")
        if needs.mem:
            words.append(f"--mem={math.ceil(needs.mem / MIB)}M")
        if count := needs.gpu_count:
            words.append(f"--gres=gpu:{count}" if o.gpu_flag == "gres" else f"--gpus={count}")
        if needs.disk:
            words.append(f"--tmp={math.ceil(needs.disk / MIB)}M")
        if request.after is not None:
            words.append(f"--dependency=afterok:{request.after}")
        words += o.sbatch_args
        for word in words:
            if not word or "\n" in word:
                raise UsageError(f"{self.name}: sbatch option {word!r}: an option is one non-empty line")
        return words

    async def job_status(self, jobs_dir: str, labels: Sequence[str]) -> dict[str, jobs.RemoteJob]:
        if not labels:
            return {}
        dirs = {jobs.job_dir(jobs_dir, label): label for label in labels}
        out = await self.check(["sh", "-c", STATUS, "sh", await self.user(), *dirs])
        queue, _, rest = out.partition("--\n")
        folders, _, stats = rest.partition("--\n")
        listed = [job for job in map(_queue_line, queue.splitlines()) if job]
        by_name = {job.name: job for job in listed}
        by_id = {job.job_id: job for job in listed}
        files = {path: (size, mtime) for path, size, mtime in (line.rsplit("|", 2) for line in stats.splitlines())}
        found, unmarked = {}, []
        missing = self.known.setdefault("missing", {})  # label -> since when squeue has not listed it
        for line in folders.splitlines():
            d, job_id, code = line.rsplit("|", 2)
            label = dirs[d]
            job = by_id.get(job_id) or by_name.get(f"simtui-{label}")  # an array's tasks share one name
            if job is None and code == "-" and time.monotonic() - missing.setdefault(label, time.monotonic()) < FORGOTTEN:
                continue  # not listed, no exit code: nothing to say yet (slurmctld busy or restarting)
            missing.pop(label, None)
            size = files.get(f"{d}/out.log", ("0", "-"))[0]
            ended, started = (files.get(f"{d}/{name}", ("", "-"))[1] for name in ("exit", "started"))
            found[label] = _remote_job(label, job, job_id, code, size, ended, started)
            if job and job.state in FINAL and code == "-":
                unmarked.append(f"{d}|{job.state}")
        if unmarked:  # the follower waits for the exit file: tell it Slurm ended the job
            await self.check(["sh", "-c", MARK_ENDED, "sh", *unmarked])
        return found

    async def cancel_job(self, jobs_dir: str, label: str) -> tuple[int, int | None] | None:
        out = (await self.check(["sh", "-c", CLAIM, "sh", jobs.job_dir(jobs_dir, label)])).strip()
        base = out.split("_")[0]  # an array's task: BASE_I
        return (int(base), None) if base.isdigit() else None

    async def kill_job(self, jobs_dir: str, label: str, grace: float, pid: int | None = None,
                       pid_start: int | None = None) -> str:
        if pid is None:
            found = await self.cancel_job(jobs_dir, label)
            if found is None:
                return "gone"
            pid = found[0]
        wait = int((grace + 60) * 10)  # Slurm's own KillWait comes first (30 s by default)
        out = await self.check(["sh", "-c", KILL, "sh", jobs.job_dir(jobs_dir, label), str(pid), str(wait)])
        return out.split()[-1] if out.split() else "gone"

    def follow_job(self, jobs_dir: str, label: str, pid: int, offset: int = 0,
                   pid_start: int | None = None) -> jobs.Follower:
        """No process of the job runs here: the follower ends on ``exit`` or ``ended``."""
        return jobs.Follower(self, jobs_dir, label, 0, offset, None)

    @classmethod
    def chains_after(cls, host: str, record: Record) -> bool:
        return record.host == host and record.pid is not None

    # -- the cluster -----------------------------------------------------------------------

    async def queue(self) -> list[ClusterJob]:
        """The user's pending and running jobs here, simtui's or not (squeue)."""
        out = await self.check(["squeue", "-h", "-u", await self.user(), "-o", JOB_FIELDS])
        return [job for job in map(_queue_line, out.splitlines()) if job]

    async def cancel(self, job_id: str) -> None:
        """scancel one of the user's jobs (Slurm refuses anyone else's)."""
        if not job_id.replace("_", "").isdigit():
            raise UsageError(f"{self.name}: {job_id!r} is not a Slurm job id")
        await self.check(["scancel", job_id])

    async def readings(self, interval: float) -> AsyncIterator[HostFacts | Sample]:
        """The login node's facts, then the partitions every ``interval`` seconds."""
        hostname, user, version, kernel = (await self.check(["sh", "-c", FACTS])).splitlines()[:4]
        self.known["user"] = user
        yield HostFacts(hostname=hostname, os=version.replace("slurm-wlm", "Slurm").replace("slurm", "Slurm"),
                        kernel=kernel)
        look: list[str] = []
        async with contextlib.aclosing(self.lines(["sh", "-c", CLUSTER, "sh", f"{interval:g}"])) as lines:
            async for line in lines:
                if line != "==":
                    look.append(line)
                    continue
                yield cluster_sample(self.name, "\n".join(look) + "\n", user, self.options.partitions)
                look = []
        if not self.connected:
            raise HostDisconnected(self.name, "connection lost")
        raise ProbeFailed(self.name, "sinfo or squeue stopped: " + " ".join(look[-1:]))


def _queue_line(line: str) -> ClusterJob | None:
    parts = line.split("|")
    if len(parts) != 8:
        return None
    job_id, name, state, reason, partition, nodes, elapsed, limit = parts
    label = name.removeprefix("simtui-") if name.startswith("simtui-") else None
    return ClusterJob(job_id, name, state, reason_words(reason, state), partition, nodes, elapsed, limit, label)


def reason_words(reason: str, state: str) -> str | None:
    """Slurm's reason code in plain words (None when there is nothing to say)."""
    if state not in WAITING and reason in ("None", ""):
        return None
    if reason in REASONS:
        return REASONS[reason] or ("in the queue" if state in WAITING else None)
    return f"Slurm: {reason}"


def _remote_job(label: str, job: ClusterJob | None, job_id: str, code: str, size: str, ended: str,
                started: str) -> jobs.RemoteJob:
    """A job as squeue (``job``: None once Slurm has forgotten it) and its folder say."""
    exit_code = int(code) if code.lstrip("-").isdigit() else None
    own = (job.job_id if job else job_id).split("_")[0]  # an array's task: BASE_I
    handle = int(own) if own.isdigit() else None
    common = dict(log_size=int(size) if size.isdigit() else 0, ended=_float(ended), started=_float(started))
    if job is None:  # forgotten (or never submitted): the folder alone
        return jobs.RemoteJob(label, handle, False, exit_code, **common)
    scheduler = {"job_id": job.job_id, "state": job.state, "reason": job.reason, "partition": job.partition,
                 "nodes": job.nodes or None}
    alive = job.state not in FINAL
    if alive:
        return jobs.RemoteJob(label, handle, True, None, **common, queued=job.state in WAITING, scheduler=scheduler)
    return jobs.RemoteJob(label, handle, False, exit_code, **common, outcome=OUTCOMES.get(job.state),
                          scheduler=scheduler)


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def cluster_sample(host: str, out: str, user: str, wanted: Sequence[str] = ()) -> Sample:
    """sinfo's nodes and squeue's jobs (see CLUSTER) as one Sample with a Partition each."""
    listing, _, queue = out.partition("--\n")
    rows: dict[str, dict[str, Any]] = {}
    nodes_seen: dict[str, tuple[int, int]] = {}
    for line in listing.splitlines():
        parts = line.split("|")
        if len(parts) < 10:
            continue
        name, state, cpus, gres, gres_used, memory, alloc_mem, limit, node, avail = parts[:10]
        default = name.endswith("*")
        name = name.rstrip("*")
        if wanted and name not in wanted:
            continue
        row = rows.setdefault(name, {"name": name, "default": default, "up": avail == "up", "time_limit": limit,
                                     "free": [], "sizes": [], "nodes_idle": 0, "nodes_mixed": 0,
                                     "nodes_allocated": 0, "nodes_down": 0, "cpus_idle": 0, "cpus_total": 0,
                                     "gpus_free": 0, "gpus_total": 0})
        alloc, idle, _other, total = (int(n) if n.isdigit() else 0 for n in (cpus.split("/") + ["0"] * 4)[:4])
        nodes_seen[node] = (total, idle)  # a node in several partitions counts once for the cluster
        gpus, used = _gpus(gres), _gpus(gres_used)
        mem = int(memory) * MIB if memory.isdigit() else 0
        free_mem = max(mem - (int(alloc_mem) * MIB if alloc_mem.isdigit() else 0), 0)
        base = state.rstrip("*~#!%$@^-+").lower()
        bucket = ("nodes_idle" if base == "idle" else "nodes_mixed" if base == "mixed"
                  else "nodes_allocated" if base in ("allocated", "completing") else "nodes_down")
        row[bucket] += 1
        row["cpus_total"] += total
        row["gpus_total"] += gpus
        row["sizes"].append((total, mem, gpus))
        if bucket != "nodes_down":
            row["cpus_idle"] += idle
            row["gpus_free"] += max(gpus - used, 0)
            row["free"].append((idle, free_mem, max(gpus - used, 0)))
    for line in queue.splitlines():
        partition, state, owner = (line.split("|") + ["", "", ""])[:3]
        for name in partition.split(","):
            if name in rows:
                row = rows[name]
                if state == "PENDING":
                    row["pending"] = row.get("pending", 0) + 1
                if owner == user:
                    key = "mine_pending" if state == "PENDING" else "mine_running"
                    row[key] = row.get(key, 0) + 1
    partitions = tuple(Partition(**{**row, "free": tuple(row["free"]), "sizes": tuple(row["sizes"])})
                       for row in rows.values())
    cpus = sum(total for total, _ in nodes_seen.values())
    idle = sum(idle for _, idle in nodes_seen.values())
    return Sample(host=host, time=time.time(), cpu_count=cpus or None,
                  cpu_percent=100 * (1 - idle / cpus) if cpus else None, partitions=partitions, source="slurm")


def _gpus(gres: str) -> int:
    """GPUs in a gres string: ``gpu:2``, ``gpu:a100:4(S:0-1)``, ``gpu:1(IDX:0)``."""
    count = 0
    for item in gres.split(","):
        fields = item.split("(")[0].split(":")
        if fields[0] == "gpu" and len(fields) > 1 and fields[-1].isdigit():
            count += int(fields[-1])
    return count
