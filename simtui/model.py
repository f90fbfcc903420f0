"""The nouns of simtui as plain dataclasses and enums (stdlib only).

Every layer passes these around: config builds HostSpecs, hosts produce Samples,
the engine returns Placements and Records, the UI only renders them.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

LOCAL = "local"


class HostKind(str, enum.Enum):
    LOCAL = "local"
    SSH = "ssh"


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
    tags: tuple[str, ...] = ()
    max_jobs: int | None = None
    reserve_mem: int = 0
    reserve_disk: int = 0

    @property
    def target(self) -> str:
        """What we dial: the address, else the alias, else the name."""
        return self.address or self.ssh_alias or self.name

    @property
    def display_address(self) -> str:
        if self.kind is HostKind.LOCAL:
            return "localhost"
        where = self.target
        if self.user:
            where = f"{self.user}@{where}"
        if self.port:
            where = f"{where}:{self.port}"
        return where


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


@dataclass(frozen=True)
class Sample:
    """One reading of a host's resources. Sizes in bytes, percentages 0..100."""

    host: str
    time: float  # unix seconds
    cpu_percent: float | None = None
    cpu_per_core: tuple[float, ...] = ()
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
    source: str = ""  # psutil, agent, shell

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


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


@dataclass
class Record:
    """One run's provenance as stored in the log (grows with the store's schema)."""

    label: str
    host: str
    command: str
    state: JobState
    workdir: str | None = None
    project: str | None = None
    exit_code: int | None = None
    created: float | None = None
    started: float | None = None
    ended: float | None = None
    tags: list[str] = field(default_factory=list)
    reason: str | None = None
    notes: str | None = None
    repeat_of: str | None = None
    placement: str | None = None


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
