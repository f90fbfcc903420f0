"""A real single-node Slurm cluster on this machine for tests (Debian 12, Slurm 22.05).

``SlurmCluster(root).up()`` writes /etc/slurm/slurm.conf and gres.conf (so that
``sbatch``, ``squeue``, ``scontrol`` and ``scancel`` work for every local user, also
over ssh, where no SLURM_CONF is passed), makes sure there is a munge key, and
starts munged (as user munge), ``slurmctld -i`` and ``slurmd -N localhost``; it
returns once ``sinfo`` shows the node idle. Whatever slurmctld, slurmd, slurmstepd
or munged was already running (an earlier cluster, the shared recipe's) is stopped
first: there is only one /etc/slurm and one set of ports per machine. ``down()``
stops them all again.

The cluster: node ``localhost`` with 2 CPUs and 20000 MB; partitions ``debug``
(the default) and ``gpu``; 2 GPUs declared as gres on stand-in files (scheduling
and accounting only, no device). No slurmdbd: ``sacct`` has no data; use
``scontrol show job`` (jobs stay there for MinJobAge = 600 s after they end) or
the jobcomp file ``root/jobcomp.log``. KillWait=2: a TIMEOUT or scancel goes from
TERM to KILL in 2 s. State, spool and logs live under ``root`` (a fresh state each
``up()``). Needs root; ``SlurmCluster.available()`` says why not otherwise.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from sshd import wait_for

SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_PID = Path("/run/munge/munged.pid")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
MUNGE_DIRS = (Path("/run/munge"), Path("/var/log/munge"), Path("/var/lib/munge"), Path("/etc/munge"))

# Exact process names (comm) of the daemons, in the order they are stopped.
DAEMONS = (("slurmstepd", "slurmd"), ("slurmctld", "slurmscriptd"), ("munged",))


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(p, os.X_OK)), None
    )


def _pid_file(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _conf_pid_files(conf: Path = SLURM_CONF) -> list[Path]:
    """The pid files an existing slurm.conf names (a cluster some other root wrote)."""
    try:
        text = conf.read_text()
    except OSError:
        return []
    return [Path(m) for m in re.findall(r"^\s*Slurm(?:ctld|d)PidFile\s*=\s*(\S+)", text, re.M | re.I)]


def stop_daemons(extra_pid_files: tuple[Path, ...] = (), timeout: float = 10.0) -> None:
    """Stop every slurmstepd/slurmd, then slurmctld, then munged on this machine: by the
    pid files (ours, the ones /etc/slurm/slurm.conf names, munged's) and then by exact
    process name; TERM, and KILL whatever is left after ``timeout``."""
    pid_files = {*extra_pid_files, *_conf_pid_files(), MUNGE_PID}
    by_file = {pid for pid in map(_pid_file, pid_files) if pid}
    for names in DAEMONS:
        victims = []
        for proc in psutil.process_iter(["name", "exe"]):
            exe = os.path.basename(proc.info["exe"] or "")
            if proc.info["name"] in names or (proc.pid in by_file and exe in names):
                victims.append(proc)
        for proc in victims:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                pass
        try:
            wait_for(lambda: not any(map(_running, victims)), timeout=timeout,
                     what=f"{'/'.join(names)} to stop", interval=0.01)
        except TimeoutError:
            for proc in filter(_running, victims):
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            wait_for(lambda: not any(map(_running, victims)), timeout=timeout,
                     what=f"{'/'.join(names)} to die")


def _traversable(path: Path) -> bool:
    """Whether every directory from / down to ``path`` lets other users through."""
    path = path.resolve()
    return all(os.stat(p).st_mode & 0o001 for p in (path, *path.parents) if p.exists())


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class SlurmCluster:
    """One node (``localhost``), partitions ``debug`` (default) and ``gpu``."""

    NODE = "localhost"
    CPUS = 2
    REAL_MEMORY = 20000  # MB
    GPUS = 2
    PARTITIONS = ("debug", "gpu")

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.state = self.root / "state"
        # slurmstepd execs the batch script from the spool as the job's user: every
        # directory above it must let others through (pytest's tmp dirs are 0700).
        self.spool = self.root / "spool"
        self._own_spool = not _traversable(self.root)
        self.jobcomp = self.root / "jobcomp.log"
        self.slurmctld_log = self.root / "slurmctld.log"
        self.slurmd_log = self.root / "slurmd.log"
        self.slurmctld_pid = self.root / "slurmctld.pid"
        self.slurmd_pid = self.root / "slurmd.pid"
        self.conf = SLURM_CONF
        self.env = {**os.environ, "SLURM_CONF": str(SLURM_CONF)}
        self.started_in: float | None = None  # seconds the last up() took

    # -- availability -------------------------------------------------------------

    @staticmethod
    def available() -> str | None:
        """None if a cluster can run here, else why not."""
        if os.geteuid() != 0:
            return "the Slurm tests need root (they run slurmctld, slurmd and munged)"
        missing = [n for n in ("slurmctld", "slurmd", "munged", "sbatch", "sinfo") if _which(n) is None]
        if missing:
            return (f"Slurm is not installed ({', '.join(missing)} missing; "
                    "apt-get install slurm-wlm munge, as scripts/test does)")
        try:
            pwd.getpwnam("munge")
        except KeyError:
            return "there is no munge user (apt-get install munge)"
        return None

    # -- bring-up -----------------------------------------------------------------

    def slurm_conf(self) -> str:
        return "\n".join([
            "ClusterName=lab",
            f"SlurmctldHost={self.NODE}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "GresTypes=gpu",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.jobcomp}",
            f"StateSaveLocation={self.state}",
            f"SlurmdSpoolDir={self.spool}",
            f"SlurmctldPidFile={self.slurmctld_pid}",
            f"SlurmdPidFile={self.slurmd_pid}",
            f"SlurmctldLogFile={self.slurmctld_log}",
            f"SlurmdLogFile={self.slurmd_log}",
            "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
            "MinJobAge=600",
            "ReturnToService=2",
            "KillWait=2",
            "OverTimeLimit=0",
            "InactiveLimit=0",
            f"NodeName={self.NODE} NodeAddr=127.0.0.1 CPUs={self.CPUS} RealMemory={self.REAL_MEMORY} "
            f"Gres=gpu:{self.GPUS} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.NODE} Default=YES MaxTime=INFINITE State=UP",
            f"PartitionName=gpu Nodes={self.NODE} MaxTime=INFINITE State=UP",
            "",
        ])

    def up(self, timeout: float = 60.0, warm: bool = True) -> None:
        """Start a fresh cluster (stopping any running one first). With ``warm``, run one
        job as root to its end before returning."""
        start = time.monotonic()
        stop_daemons((self.slurmctld_pid, self.slurmd_pid))
        shutil.rmtree(self.state, ignore_errors=True)  # a fresh cluster: no stale jobs or drained node
        for d in (self.root, self.state):
            d.mkdir(parents=True, exist_ok=True)
        self._remove_spool()
        if self._own_spool:
            self.spool = Path(tempfile.mkdtemp(prefix="simtui-slurmd-spool-"))
        self.spool.mkdir(exist_ok=True)
        self.spool.chmod(0o755)
        for name in ("slurmctld_log", "slurmd_log", "jobcomp"):
            getattr(self, name).unlink(missing_ok=True)
        self._munge_setup()
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(self.slurm_conf())
        SLURM_CONF.chmod(0o644)
        gpus = [self.root / f"gpu{i}" for i in range(self.GPUS)]
        for gpu in gpus:
            gpu.touch()
        GRES_CONF.write_text(f"NodeName={self.NODE} Name=gpu File={self.root}/gpu[0-{self.GPUS - 1}]\n")
        GRES_CONF.chmod(0o644)

        subprocess.run(["runuser", "-u", "munge", "--", _which("munged"), "--force"], check=True)
        wait_for(self._munge_works, timeout=timeout, what="munged to answer", interval=0.05)
        subprocess.run([_which("slurmctld"), "-i"], check=True, env=self.env)
        subprocess.run([_which("slurmd"), "-N", self.NODE], check=True, env=self.env)
        try:
            wait_for(self._node_idle, timeout=timeout, what="the Slurm node to be idle", interval=0.1)
            if warm:
                self._warm_up(timeout)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{self.logs()}") from None
        self.started_in = time.monotonic() - start

    def _warm_up(self, timeout: float) -> None:
        """Run one job as user nobody to the end: proves the node runs a user's jobs, and
        gets past the first seconds after slurmctld starts, when it does not schedule yet
        (a job submitted then waits ~3 s; later ones start within ~1 s)."""
        job = self.run("runuser", "-u", "nobody", "--", "sbatch", "--parsable", "--chdir=/", "--output=/dev/null",
                       "--job-name=simtui-warm-up", "--wrap=true").strip().split(";")[0]
        wait_for(lambda: job not in self.queue(), timeout=timeout, what="the warm-up job", interval=0.05)
        state = self.job(job).get("JobState")
        if state != "COMPLETED":
            raise RuntimeError(f"the warm-up job {job} ended {state}\n{self.logs()}")

    def _munge_setup(self) -> None:
        for d in MUNGE_DIRS:
            d.mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "munge", "munge")
        if not MUNGE_KEY.exists() or MUNGE_KEY.stat().st_size < 32:
            MUNGE_KEY.write_bytes(os.urandom(1024))
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o400)

    def _munge_works(self) -> bool:
        if not MUNGE_SOCKET.exists():
            return False
        cred = subprocess.run(["munge", "-n"], capture_output=True)
        if cred.returncode:
            return False
        return subprocess.run(["unmunge"], input=cred.stdout, capture_output=True).returncode == 0

    def _daemons_alive(self) -> bool:
        try:
            return all(
                (pid := _pid_file(f)) is not None and _running(psutil.Process(pid))
                for f in (self.slurmctld_pid, self.slurmd_pid)
            )
        except psutil.NoSuchProcess:
            return False

    def _node_idle(self) -> bool:
        states = self.node_states()
        if states and all(s == "idle" for s in states):
            return True
        if self.slurmctld_pid.exists() and self.slurmd_pid.exists() and not self._daemons_alive():
            raise RuntimeError(f"a Slurm daemon exited\n{self.logs()}")
        return False

    def down(self) -> None:
        """Cancel what is left (so no job's processes outlive slurmstepd), stop the daemons."""
        if self._daemons_alive():
            try:
                self.cancel_all(timeout=15)
            except (RuntimeError, TimeoutError, subprocess.TimeoutExpired):
                pass
        stop_daemons((self.slurmctld_pid, self.slurmd_pid))
        self._remove_spool()

    def _remove_spool(self) -> None:
        shutil.rmtree(self.spool, ignore_errors=True)

    # -- queries ------------------------------------------------------------------

    def run(self, *args: str, check: bool = True) -> str:
        """Run a Slurm command as root here; its stdout."""
        done = subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=30)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def node_states(self) -> list[str]:
        """``sinfo -h -o %T``: one state per partition line ([] when slurmctld does not answer)."""
        try:
            return self.run("sinfo", "-h", "-o", "%T", check=False).split()
        except subprocess.TimeoutExpired:
            return []

    def queue(self) -> list[str]:
        """The ids of the jobs squeue still lists (pending, running, completing)."""
        return self.run("squeue", "-h", "-o", "%i").split()

    def job(self, job_id: str | int) -> dict[str, str]:
        """``scontrol show job -o ID`` as a dict (JobState, ExitCode, StdOut, ...)."""
        line = self.run("scontrol", "show", "job", "-o", str(job_id)).strip()
        return dict(re.findall(r"(\w[\w:/]*)=(\S*)", line))

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until ``squeue`` lists no job at all."""
        wait_for(lambda: not self.queue(), timeout=timeout, what="the Slurm queue to empty", interval=0.1)

    def cancel_all(self, timeout: float = 30.0) -> None:
        """scancel every job of every user, then wait until the queue is empty."""
        jobs = self.queue()
        if jobs:
            self.run("scancel", *jobs, check=False)
        self.wait_idle(timeout)

    def logs(self, chars: int = 3000) -> str:
        out = []
        for path in (self.slurmctld_log, self.slurmd_log, Path("/var/log/munge/munged.log")):
            try:
                out.append(f"--- {path}\n{path.read_text(errors='replace')[-chars:]}")
            except OSError:
                pass
        return "\n".join(out)
