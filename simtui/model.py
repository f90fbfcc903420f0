"""The nouns of simtui as plain dataclasses and enums (stdlib only).

Every layer passes these around: config builds HostSpecs, hosts produce Samples,
the engine returns Placements and Records, the UI only renders them.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any

LOCAL = "local"
SWEEP_PREFIX = "sw"  # a sweep id: "sw" and 10 hex digits (never a label: those are hex alone)


class HostKind(str, enum.Enum):
    LOCAL = "local"
    SSH = "ssh"
    SLURM = "slurm"


class HostState(str, enum.Enum):
    CONNECTING = "connecting"
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


class JobState(str, enum.Enum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    KILLED = "killed"
    LOST = "lost"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.KILLED, JobState.LOST)


@dataclass(frozen=True)
class SlurmOptions:
    """What a ``kind = "slurm"`` host submits with (``[[hosts]]`` keys of that name)."""

    partitions: tuple[str, ...] = ()  # () = every partition the user may use
    account: str | None = None
    qos: str | None = None
    time: str | None = None  # the default time limit, as sbatch takes it ("1:00:00")
    sbatch_args: tuple[str, ...] = ()  # more sbatch options, word by word
    gpu_flag: str = "gres"  # how GPUs are asked for: "gres" (--gres=gpu:N) or "gpus" (--gpus=N)
    local: bool = False  # the login node is this machine: no SSH


@dataclass(frozen=True)
class HostSpec:
    """How to reach one host and what it offers; built from the config."""

    name: str
    kind: HostKind = HostKind.SSH
    address: str | None = None  # None with kind=ssh: resolve ssh_alias (or name) from ssh_config
    ssh_alias: str | None = None
    user: str | None = None
    port: int | None = None
    identity: str | None = None
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    ssh_config: str | None = None  # None: ~/.ssh/config when it exists
    jobs_dir: str = "~/.simtui/jobs"
    cache_dir: str = "~/.cache/simtui"
    projects_dir: str = "~/simtui/projects"  # synced projects: <projects_dir>/<project>
    tags: tuple[str, ...] = ()
    max_jobs: int | None = None
    reserve_mem: int = 0
    reserve_disk: int = 0
    share: bool = False  # True: its job and project folders keep the user's umask (others may read)
    slurm: SlurmOptions | None = None  # kind=slurm: how jobs are submitted there
    container: str | None = None  # podman, docker or apptainer for --image (None: the first it has)

    @property
    def target(self) -> str:
        """What we dial: the address, else the alias, else the name."""
        return self.address or self.ssh_alias or self.name

    @property
    def display_address(self) -> str:
        if self.kind is HostKind.LOCAL or (self.slurm and self.slurm.local):
            return "localhost"
        where = self.target
        if self.user:
            where = f"{self.user}@{where}"
        if self.port:
            where = f"{where}:{self.port}"
        return where


@dataclass(frozen=True)
class ProviderSpec:
    """``[[providers]]``: two commands that make and unmake a machine for one job
    (any cloud CLI). ``host`` is what each machine it makes is reached with and
    offers (its name, address, port and known_hosts come from the machine)."""

    name: str
    create: str  # a shell command; prints address=, host_key= (see simtui.engine.providers)
    destroy: str
    host: HostSpec
    host_key: str | None = None  # a command that prints the machine's host key over a trusted channel
    size: str | None = None  # the size when run gives no --size
    prices: dict[str, float] = field(default_factory=dict)  # per hour, by size
    os_image: str | None = None  # the machine's own image, passed to create
    create_timeout: float = 600.0
    boot_timeout: float = 300.0  # from create's end until SSH answers with the key it gave


@dataclass(frozen=True)
class Machine:
    """A machine made for one job (``label``), from its create until its destroy.

    States: creating -> booting (SSH not answering yet) -> up -> destroying -> gone;
    a destroy that fails leaves it as it was, ``error`` saying why (it is tried again)."""

    name: str
    provider: str
    size: str
    label: str
    created: float
    state: str = "creating"
    address: str | None = None
    port: int | None = None
    user: str | None = None
    host_keys: tuple[str, ...] = ()  # "keytype base64", as the provider gave them
    machine_id: str | None = None  # the provider's own id for it, when create printed one
    price: float | None = None  # per hour
    ready: float | None = None  # when SSH first answered
    destroyed: float | None = None
    error: str | None = None

    @property
    def live(self) -> bool:
        return self.state != "gone"

    def age(self, now: float) -> float:
        """Seconds from its create until it was destroyed (or until ``now``)."""
        return (self.destroyed or now) - self.created

    def cost(self, now: float) -> float | None:
        """What it cost until it was destroyed (or until ``now``), at its price per hour."""
        if self.price is None:
            return None
        return round(self.price * self.age(now) / 3600, 6)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Machine:
        values = _known_fields(cls, data)
        values["host_keys"] = tuple(values.get("host_keys") or ())
        return cls(**values)


@dataclass(frozen=True)
class HostStatus:
    """The answer to "is this host reachable?" (``simtui hosts``)."""

    name: str
    kind: HostKind
    address: str
    state: HostState
    reason: str | None = None
    latency_ms: float | None = None
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    user: str | None
    used_mem: int | None  # bytes
    name: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GpuProcess:
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    uuid: str | None = None
    util: float | None = None  # percent
    mem_used: int | None = None  # bytes
    mem_total: int | None = None  # bytes
    temperature: float | None = None  # Celsius
    power: float | None = None  # watts
    processes: tuple[GpuProcess, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GpuSample:
        values = _known_fields(cls, data)
        values["processes"] = tuple(GpuProcess.from_dict(p) for p in values.get("processes", ()))
        return cls(**values)

    @property
    def mem_free(self) -> int | None:
        if self.mem_total is None or self.mem_used is None:
            return None
        return max(self.mem_total - self.mem_used, 0)


@dataclass(frozen=True)
class HostFacts:
    """What does not change while connected: read once per connection."""

    hostname: str | None = None
    cpu_model: str | None = None
    cpu_count: int | None = None
    os: str | None = None
    kernel: str | None = None
    python: str | None = None
    gpu_driver: str | None = None
    cuda: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostFacts:
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class Partition:
    """One partition of a Slurm cluster as sinfo and squeue see it now. Memory in bytes."""

    name: str
    default: bool = False
    up: bool = True
    nodes_idle: int = 0
    nodes_mixed: int = 0
    nodes_allocated: int = 0
    nodes_down: int = 0  # down, drained, failing, not responding
    cpus_idle: int = 0
    cpus_total: int = 0
    gpus_free: int = 0
    gpus_total: int = 0
    # Per node that takes jobs: (idle CPUs, free memory, free GPUs) now, and its whole
    # (CPUs, memory, GPUs): a job fits now on the first, at all on the second.
    free: tuple[tuple[int, int, int], ...] = ()
    sizes: tuple[tuple[int, int, int], ...] = ()
    time_limit: str | None = None
    pending: int = 0  # jobs waiting there, everyone's
    mine_pending: int = 0  # the user's own
    mine_running: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Partition:
        values = _known_fields(cls, data)
        for name in ("free", "sizes"):
            values[name] = tuple(tuple(node) for node in values.get(name) or ())
        return cls(**values)


@dataclass(frozen=True)
class ClusterJob:
    """One of the user's jobs in a cluster's queue (squeue), simtui's or not."""

    job_id: str
    name: str
    state: str  # Slurm's: PENDING, RUNNING, ...
    reason: str | None  # why it waits, in plain words
    partition: str
    nodes: str
    elapsed: str
    time_limit: str
    label: str | None = None  # the simtui run it is, when it is one

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


@dataclass(frozen=True)
class Sample:
    """One reading of a host's resources. Sizes in bytes, percentages 0..100."""

    host: str
    time: float  # unix seconds
    cpu_percent: float | None = None
    cpu_per_core: tuple[float | None, ...] = ()  # None: no time passed on that core
    cpu_count: int | None = None
    load: tuple[float, float, float] | None = None
    mem_total: int | None = None
    mem_used: int | None = None
    mem_available: int | None = None
    swap_total: int | None = None
    swap_used: int | None = None
    disk_path: str | None = None
    disk_total: int | None = None
    disk_free: int | None = None
    uptime: float | None = None
    gpus: tuple[GpuSample, ...] = ()
    source: str = ""  # psutil, agent, shell, slurm
    partitions: tuple[Partition, ...] = ()  # a Slurm cluster's: one row each on the screen

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        """The inverse of to_dict; keys it does not know are ignored (a newer agent's)."""
        values = _known_fields(cls, data)
        values["cpu_per_core"] = tuple(values.get("cpu_per_core") or ())
        values["load"] = tuple(values["load"]) if values.get("load") else None
        values["gpus"] = tuple(GpuSample.from_dict(g) for g in values.get("gpus") or ())
        values["partitions"] = tuple(Partition.from_dict(p) for p in values.get("partitions") or ())
        return cls(**values)


@dataclass(frozen=True)
class Needs:
    """What a job asks of a host. Sizes in bytes; gpu_mem is per GPU."""

    cpus: float = 0
    mem: int = 0
    gpus: int = 0
    gpu_mem: int = 0
    disk: int = 0

    def is_empty(self) -> bool:
        return not (self.cpus or self.mem or self.gpus or self.gpu_mem or self.disk)

    @property
    def gpu_count(self) -> int:
        """GPUs asked for: ``gpu_mem`` alone means one."""
        return self.gpus or (1 if self.gpu_mem else 0)


@dataclass(frozen=True)
class ProbeResult:
    """One host's answer to a probe: its latest sample, or why there is none."""

    spec: HostSpec
    sample: Sample | None
    facts: HostFacts | None
    state: HostState
    reason: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], spec: HostSpec) -> ProbeResult:
        """The inverse of to_dict, given the host's spec."""
        return cls(spec, Sample.from_dict(data["sample"]) if data.get("sample") else None,
                   HostFacts.from_dict(data["facts"]) if data.get("facts") else None,
                   HostState(data["state"]), data.get("reason"))

    def to_dict(self) -> dict[str, Any]:
        """The host by name and address (not its whole spec), then what it said."""
        return {
            "host": self.spec.name,
            "address": self.spec.display_address,
            "state": self.state.value,
            "reason": self.reason,
            "facts": to_dict(self.facts) if self.facts else None,
            "sample": self.sample.to_dict() if self.sample else None,
        }


@dataclass(frozen=True)
class Placement:
    """Where a job with these needs goes, and why (see engine.placement).

    ``scores`` holds every host that fits (lower = tighter fit); ``reasons`` holds
    every host, chosen or not, in words; ``why`` is one line for the record.
    """

    needs: Needs
    host: str | None
    scores: dict[str, float]
    reasons: dict[str, str]
    why: str

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


@dataclass(frozen=True)
class JobSpec:
    """What to run and where; the launch content that the label hashes."""

    argv: tuple[str, ...]
    host: str | None = None
    needs: Needs = field(default_factory=Needs)
    workdir: str | None = None
    tags: tuple[str, ...] = ()
    reason: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    after: str | None = None
    inputs: tuple[str, ...] = ()  # files the job reads, relative to the workdir: hashed at start
    outputs_dir: str | None = None  # where its outputs are looked for (default: the workdir)
    require_clean: bool = False  # refuse to start from a git checkout with changes
    placement: str | None = None  # why ``host``, when the caller chose it (the form's picker)
    partition: str | None = None  # on a Slurm host: the partition (default: the host's first, else Slurm's)
    time: str | None = None  # a time limit, where the host's scheduler takes one ("1:00:00")
    sweep: str | None = None  # the sweep it is a point of (simtui sweep)
    max_parallel: int | None = None  # at most this many runs of its sweep active at once
    image: str | None = None  # a container image to run it in (a rerun: the one that ran, by its id)
    provider: str | None = None  # make a machine for it with this provider (then ``host`` is unused)
    size: str | None = None  # the provider's size of that machine
    project: str | None = None  # the synced project it runs in (simtui run --sync)
    git: dict[str, Any] | None = None  # where the code came from, when not the workdir's own git
    venv: str | None = None  # a virtual environment on the host, first on the job's PATH
    params_file: str | None = None  # the --params file as given: an argument naming it gets the merged file
    params_format: str | None = None  # json, toml or yaml: the merged file's format (json for -p alone)
    params_target: str | None = None  # the params file inside a synced tree (relative): the merged one replaces it
    sync: bool = False  # sync the project at ``project_root`` first; run in a copy of the synced tree
    project_root: str | None = None  # the local checkout a synced run came from
    tree: str | None = None  # sha256 of the exact tree to run (kept in $SIMTUI_HOME/trees)
    cwd: str | None = None  # where it was asked for (the client's directory): relative local paths start there

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        """The inverse of to_dict (a record's ``spec``); keys it does not know are ignored."""
        values = _known_fields(cls, data)
        for name in ("argv", "tags", "inputs"):
            values[name] = tuple(values.get(name) or ())
        values["needs"] = Needs(**_known_fields(Needs, values.get("needs") or {}))
        return cls(**values)


@dataclass
class Record:
    """One run's provenance as stored in the log (see simtui.store).

    Times are unix seconds. ``git``, ``environment``, ``inputs`` and ``outputs``
    hold what simtui.provenance captures (git_info, environment, file_info).
    """

    label: str
    host: str
    command: str  # the display string; ``argv`` is what ran
    state: JobState
    argv: list[str] = field(default_factory=list)
    workdir: str | None = None
    project: str | None = None
    exit_code: int | None = None
    created: float | None = None
    started: float | None = None
    ended: float | None = None
    duration: float | None = None
    tags: list[str] = field(default_factory=list)
    reason: str | None = None
    notes: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    git: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    placement: str | None = None
    repeat_of: str | None = None
    peak_rss: int | None = None  # bytes
    peak_gpu_mem: int | None = None  # bytes
    log_tail: str | None = None
    updated: float | None = None
    pid: int | None = None  # the job on its host: its process group (ssh, local) or its Slurm job id
    jobs_dir: str | None = None  # where its folder is on the host, as launched
    after: str | None = None  # label of the job it waits for
    needs: dict[str, Any] | None = None  # what it asked of a host (placement when queued)
    outputs_dir: str | None = None  # where the wrapper looks for outputs (default: the workdir)
    venv: str | None = None  # the virtual environment it ran in, on its host
    spec: dict[str, Any] | None = None  # the JobSpec it was launched from, whole: rerun starts from it
    run_dir: str | None = None  # the run's own folder on its host (absolute): $SIMTUI_RUN_DIR
    outputs_root: str | None = None  # where its outputs were looked for (absolute); output paths are under it
    params_file: dict[str, Any] | None = None  # the merged parameters file: path on the host, format, sha256
    pid_start: int | None = None  # the start time of ``pid`` (/proc/PID/stat field 22): kill checks both
    client: str | None = None  # the simtui process starting it ("pid:create_time"), while it is starting
    reproduction: dict[str, Any] | None = None  # reproduce: how this run's outputs compare with the original's
    # What the host's scheduler says of it (Slurm: job_id, partition, nodes, sbatch, state, reason).
    scheduler: dict[str, Any] | None = None
    sweep: str | None = None  # the sweep it is a point of
    metrics: dict[str, float] | None = None  # the last value of each metric its log printed
    container: dict[str, Any] | None = None  # the image it ran in: engine, version, image, id, digest, pinned
    # The machine made for it: provider, size, name, price, created, destroyed, cost, outputs (pulled here).
    machine: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @property
    def host_queued(self) -> bool:
        """Waiting in its host's own queue (a Slurm job pending), not in simtui's."""
        return self.state is JobState.QUEUED and self.pid is not None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """The inverse of to_dict; keys it does not know are ignored."""
        values = _known_fields(cls, data)
        values["state"] = JobState(values["state"])
        return cls(**values)


@dataclass(frozen=True)
class RecordEvent:
    """One timestamped change of a record: a state, a tag, a comment."""

    label: str
    time: float
    kind: str
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


@dataclass(frozen=True)
class ProcessInfo:
    """One process on a host, as a top-like view lists it."""

    pid: int
    user: str
    cpu: float  # percent of one core
    rss: int  # bytes
    elapsed: float  # seconds since it started
    command: str


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as JSON-ready data: enums become their values."""

    def clean(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(asdict(obj))


def _known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
