"""The TOML config file -> model objects, with one-line errors.

Where the file comes from: ``--config FILE``, else ``$SIMTUI_CONFIG``, else
``<user config dir>/simtui/config.toml`` when it exists, else the embedded
default (this machine alone). Every problem is a ConfigError naming the file,
the key and what is wrong.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from simtui.errors import ConfigError, UsageError
from simtui.model import LOCAL, HostKind, HostSpec, ProviderSpec, SlurmOptions
from simtui.secret import mask
from simtui.units import parse_size

NOTIFY_EVENTS = ("started", "succeeded", "failed", "killed", "lost", "host_down", "host_up", "machine_stuck")
EMBEDDED = "<embedded default>"


@dataclass(frozen=True)
class Defaults:
    interval: float = 2.0
    timeout: float = 10.0
    kill_grace: float = 10.0
    jobs_dir: str = "~/.simtui/jobs"
    cache_dir: str = "~/.cache/simtui"
    projects_dir: str = "~/simtui/projects"
    reserve_mem: int = 0
    reserve_disk: int = 0
    max_jobs: int | None = None
    share: bool = False  # job and project folders on hosts readable by others (else 0700, files 0600)


@dataclass(frozen=True)
class Route:
    """``[[notify.route]]``: an apprise URL for the events of jobs (or hosts) with
    one of ``tags`` (no tags: every job and host), on ``on`` (default: notify.on)."""

    url: str
    tags: tuple[str, ...] = ()
    on: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Notify:
    urls: tuple[str, ...] = ()
    on: tuple[str, ...] = ("failed", "succeeded", "host_down", "machine_stuck")  # stuck: its destroy failed
    routes: tuple[Route, ...] = ()
    retries: int = 2  # attempts after the first, each after a doubled wait
    backoff: float = 1.0  # seconds before the first retry
    attach: bool = True  # attach the job's output images where the service takes files


@dataclass(frozen=True)
class Server:
    idle: float = 600.0  # seconds with no job active and no client attached before the server exits


@dataclass(frozen=True)
class Config:
    path: str
    defaults: Defaults = field(default_factory=Defaults)
    hosts: tuple[HostSpec, ...] = ()
    notify: Notify = field(default_factory=Notify)
    keys: dict[str, str] = field(default_factory=dict)
    server: Server = field(default_factory=Server)
    providers: tuple[ProviderSpec, ...] = ()

    def provider(self, name: str) -> ProviderSpec:
        for spec in self.providers:
            if spec.name == name:
                return spec
        known = ", ".join(p.name for p in self.providers) or "none; add a [[providers]] entry"
        raise ConfigError(self.path, None, f"no provider named {name!r} (configured: {known})")

    def project_host(self, host: str | None) -> str:
        """The host a project command works on: the one named (it must be
        configured), else the only remote host configured."""
        if host is None:
            remote = [h.name for h in self.hosts if h.kind is not HostKind.LOCAL]
            if len(remote) != 1:
                raise UsageError("give --host HOST" + (f" (one of {', '.join(remote)})" if remote else ""))
            return remote[0]
        self.host(host)  # a clear error for an unknown name
        return host

    def host(self, name: str) -> HostSpec:
        for spec in self.hosts:
            if spec.name == name:
                return spec
        known = ", ".join(h.name for h in self.hosts)
        raise ConfigError(self.path, None, f"no host named {name!r} (configured: {known})")


def simtui_home() -> Path:
    """Where records and logs live: ``$SIMTUI_HOME`` or the platform's user data dir."""
    return Path(os.environ.get("SIMTUI_HOME") or platformdirs.user_data_dir("simtui"))


def config_path(explicit: str | None = None) -> Path | None:
    """The config file to read, or None for the embedded default."""
    chosen = explicit or os.environ.get("SIMTUI_CONFIG")
    if chosen:
        return Path(chosen).expanduser()
    default = Path(platformdirs.user_config_dir("simtui")) / "config.toml"
    return default if default.is_file() else None


def config_identity(explicit: str | None = None) -> str:
    """Which config a process runs with: its path and a hash of its content (a
    server serves the clients of one config only)."""
    path = config_path(explicit)
    if path is None:
        return EMBEDDED
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        digest = "unreadable"
    return f"{path.resolve()}#{digest}"


def load_config(explicit: str | None = None) -> Config:
    path = config_path(explicit)
    if path is None:
        return parse_config({}, EMBEDDED)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), None, "no such file (check --config / SIMTUI_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), None, f"cannot read: {err}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(path), None, f"TOML syntax error: {err}") from None
    return parse_config(data, str(path))


# -- validation ------------------------------------------------------------


Check = Callable[[Any], Any]


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {_show(value)}")
    return value


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, got {_show(value)}")
    for i, item in enumerate(value):
        if not (isinstance(item, str) and item):
            raise ValueError(f"expected a list of strings; item {i + 1} is {_show(item)}")
    return tuple(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_show(value)}")
    return value


def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"expected a number of seconds above 0, got {_show(value)}")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a whole number of at least 1, got {_show(value)}")
    return value


def _retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        raise ValueError(f"expected a whole number from 0 to 10, got {_show(value)}")
    return value


def _entries(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("expected [[notify.route]] entries (an array of tables)")
    return value


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"expected a port number from 1 to 65535, got {_show(value)}")
    return value


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"expected a size like 4G, 500M or 1.5GiB, got {_show(value)}")
    return parse_size(value)


def _events(value: Any) -> tuple[str, ...]:
    events = _strings(value)
    for event in events:
        if event not in NOTIFY_EVENTS:
            raise ValueError(f"unknown event {event!r}; choose from {', '.join(NOTIFY_EVENTS)}")
    return events


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def _duration(value: Any) -> float:
    """Seconds, from a number or a string like "90s", "10m", "1h"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    found = _DURATION.match(value) if isinstance(value, str) else None
    if not found or float(found[1]) <= 0:
        raise ValueError(f'expected a duration like "10m", "90s" or a number of seconds, got {_show(value)}')
    return float(found[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[found[2]]


def _show(value: Any) -> str:
    """A value as an error names it, with any URL password or token masked."""
    kind = {str: "string", bool: "boolean", int: "integer", float: "number", list: "list", dict: "table"}
    return mask(f"{kind.get(type(value), type(value).__name__)} {value!r}")


def _kind(value: Any) -> HostKind:
    if value not in ("ssh", "slurm"):
        raise ValueError(f'expected "ssh" or "slurm", got {_show(value)}')
    return HostKind(value)


def _container(value: Any) -> str:
    if value not in ("podman", "docker", "apptainer"):
        raise ValueError(f'expected "podman", "docker" or "apptainer", got {_show(value)}')
    return value


def _prices(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError(f'expected a table of prices per hour by size, like {{ small = 0.02 }}, got {_show(value)}')
    for size, price in value.items():
        if isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0:
            raise ValueError(f"expected a price per hour (a number, 0 or more) for size {size!r}, got {_show(price)}")
    return {size: float(price) for size, price in value.items()}


_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


def _provider_name(value: Any) -> str:
    if not isinstance(value, str) or not _PROVIDER_NAME.match(value):
        raise ValueError(f"expected lowercase letters, digits and '-', starting with a letter (it starts the "
                         f"names of the machines it makes), got {_show(value)}")
    return value


def _gpu_flag(value: Any) -> str:
    if value not in ("gres", "gpus"):
        raise ValueError(f'expected "gres" (--gres=gpu:N) or "gpus" (--gpus=N), got {_show(value)}')
    return value


DEFAULTS_KEYS: dict[str, Check] = {
    "interval": _positive,
    "timeout": _positive,
    "kill_grace": _positive,
    "jobs_dir": _string,
    "cache_dir": _string,
    "projects_dir": _string,
    "reserve_mem": _size,
    "reserve_disk": _size,
    "max_jobs": _count,
    "share": _boolean,
}
HOST_KEYS: dict[str, Check] = {
    "name": _string,
    "address": _string,
    "ssh_alias": _string,
    "user": _string,
    "port": _port,
    "identity": _string,
    "known_hosts": _string,
    "ssh_config": _string,
    "jobs_dir": _string,
    "cache_dir": _string,
    "projects_dir": _string,
    "tags": _strings,
    "max_jobs": _count,
    "reserve_mem": _size,
    "reserve_disk": _size,
    "share": _boolean,
    "kind": _kind,
    "container": _container,
}
SLURM_KEYS: dict[str, Check] = {  # kind = "slurm" only
    "partitions": _strings,
    "account": _string,
    "qos": _string,
    "time": _string,
    "sbatch_args": _strings,
    "gpu_flag": _gpu_flag,
    "local": _boolean,
}
LOCAL_KEYS: dict[str, Check] = {
    "enabled": _boolean,
    "container": _container,
    "jobs_dir": _string,
    "projects_dir": _string,
    "tags": _strings,
    "max_jobs": _count,
    "reserve_mem": _size,
    "reserve_disk": _size,
    "share": _boolean,
}
NOTIFY_KEYS: dict[str, Check] = {
    "urls": _strings, "on": _events, "route": _entries, "retries": _retries, "backoff": _positive,
    "attach": _boolean,
}
PROVIDER_KEYS: dict[str, Check] = {
    "name": _provider_name,
    "create": _string,
    "destroy": _string,
    "host_key": _string,
    "size": _string,
    "prices": _prices,
    "os_image": _string,
    "create_timeout": _duration,
    "boot_timeout": _duration,
    # how its machines are reached, and what they offer (as for [[hosts]])
    "user": _string,
    "port": _port,
    "identity": _string,
    "ssh_config": _string,
    "jobs_dir": _string,
    "cache_dir": _string,
    "projects_dir": _string,
    "tags": _strings,
    "container": _container,
    "share": _boolean,
}
ROUTE_KEYS: dict[str, Check] = {"url": _string, "tags": _strings, "on": _events}
SERVER_KEYS: dict[str, Check] = {"idle": _duration}
TOP_KEYS = ("defaults", "hosts", "local", "notify", "keys", "server", "providers")


def _table(file: str, where: str, data: Any, schema: dict[str, Check]) -> dict[str, Any]:
    """Validate one TOML table against a schema; return the converted values."""
    if not isinstance(data, dict):
        raise ConfigError(file, where, f"expected a table, got {_show(data)}")
    out = {}
    for key, value in data.items():
        key_path = f"{where}.{key}" if where else key
        if key not in schema:
            hint = difflib.get_close_matches(key, schema, n=1)
            fix = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(schema)})"
            raise ConfigError(file, mask(key_path), f"unknown key{fix}")
        try:
            out[key] = schema[key](value)
        except ValueError as err:
            raise ConfigError(file, key_path, mask(str(err))) from None
    return out


def parse_config(data: dict[str, Any], file: str) -> Config:
    """Build a Config from parsed TOML; ``file`` names the source in errors."""
    for key in data:
        if key not in TOP_KEYS:
            hint = difflib.get_close_matches(key, TOP_KEYS, n=1)
            fix = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(TOP_KEYS)})"
            raise ConfigError(file, key, f"unknown section{fix}")
    defaults = Defaults(**_table(file, "defaults", data.get("defaults", {}), DEFAULTS_KEYS))
    inherited = {
        "jobs_dir": defaults.jobs_dir,
        "cache_dir": defaults.cache_dir,
        "projects_dir": defaults.projects_dir,
        "max_jobs": defaults.max_jobs,
        "reserve_mem": defaults.reserve_mem,
        "reserve_disk": defaults.reserve_disk,
        "share": defaults.share,
    }

    hosts: list[HostSpec] = []
    local = _table(file, "local", data.get("local", {}), LOCAL_KEYS)
    if local.pop("enabled", True):
        local_fields = {**inherited, **local}
        hosts.append(HostSpec(name=LOCAL, kind=HostKind.LOCAL, **local_fields))

    raw_hosts = data.get("hosts", [])
    if not isinstance(raw_hosts, list):
        raise ConfigError(file, "hosts", "expected [[hosts]] entries (an array of tables)")
    seen = {h.name for h in hosts}
    for i, raw in enumerate(raw_hosts):
        where = f"hosts[{i}]"
        kind = raw.get("kind") if isinstance(raw, dict) else None
        for key in SLURM_KEYS.keys() & set(raw if kind != "slurm" and isinstance(raw, dict) else ()):
            raise ConfigError(file, f"{where}.{key}", 'only a kind = "slurm" host takes it (add kind = "slurm")')
        values = _table(file, where, raw, {**HOST_KEYS, **SLURM_KEYS} if kind == "slurm" else HOST_KEYS)
        name = values.get("name")
        if name is None:
            raise ConfigError(file, where, 'host has no name; add name = "..."')
        where = f"hosts[{i}] ({name})"
        if name == LOCAL:
            raise ConfigError(file, f"{where}.name", "'local' is this machine; choose another name")
        if name in seen:
            raise ConfigError(file, f"{where}.name", f"duplicate host name {name!r}")
        if "/" in name or name != name.strip():
            raise ConfigError(file, f"{where}.name", f"{name!r}: a host name has no '/' (it names a "
                              "cluster's partition: CLUSTER/PARTITION) and no surrounding spaces")
        if "address" in values and "ssh_alias" in values:
            raise ConfigError(file, where, "give address or ssh_alias, not both")
        seen.add(name)
        tags = values.pop("tags", ())
        slurm = {key: values.pop(key) for key in SLURM_KEYS if key in values}
        kind = values.pop("kind", HostKind.SSH)
        if kind is HostKind.SLURM:
            if slurm.get("local") and ({"address", "ssh_alias"} & set(values)):
                raise ConfigError(file, where, "local = true submits from this machine: drop address/ssh_alias")
            values["slurm"] = SlurmOptions(**slurm)
        hosts.append(HostSpec(kind=kind, **{**inherited, **values, "tags": tags}))

    notify = _notify(file, data.get("notify", {}))
    keys_table = data.get("keys", {})
    keys = _table(file, "keys", keys_table, {k: _string for k in keys_table} if isinstance(keys_table, dict) else {})
    server = Server(**_table(file, "server", data.get("server", {}), SERVER_KEYS))
    providers = _providers(file, data.get("providers", []), inherited, seen)
    return Config(path=file, defaults=defaults, hosts=tuple(hosts), notify=notify, keys=keys, server=server,
                  providers=providers)


PROVIDER_ONLY = ("name", "create", "destroy", "host_key", "size", "prices", "os_image", "create_timeout",
                 "boot_timeout")


def _providers(file: str, raw: Any, inherited: dict[str, Any], hosts: set[str]) -> tuple[ProviderSpec, ...]:
    """``[[providers]]``: each a create and a destroy command, and how its machines are reached."""
    if not isinstance(raw, list):
        raise ConfigError(file, "providers", "expected [[providers]] entries (an array of tables)")
    providers: list[ProviderSpec] = []
    for i, entry in enumerate(raw):
        values = _table(file, f"providers[{i}]", entry, PROVIDER_KEYS)
        where = f"providers[{i}]" + (f" ({values['name']})" if "name" in values else "")
        for key in ("name", "create", "destroy"):
            if key not in values:
                raise ConfigError(file, where, f'provider has no {key}; add {key} = "..."')
        name = values["name"]
        if name in hosts or any(p.name == name for p in providers):
            raise ConfigError(file, f"{where}.name", f"{name!r} is taken by another host or provider")
        prices = values.get("prices", {})
        if prices and "size" in values and values["size"] not in prices:
            raise ConfigError(file, f"{where}.size", f"{values['size']!r} has no price (prices: {', '.join(prices)})")
        own = {key: values.pop(key) for key in PROVIDER_ONLY if key in values}
        host = HostSpec(name=name, kind=HostKind.SSH, **{**inherited, "max_jobs": 1, **values,
                                                           "tags": (*values.get("tags", ()), "machine")})
        providers.append(ProviderSpec(host=host, **own))
    return tuple(providers)


def _notify(file: str, data: Any) -> Notify:
    """``[notify]`` with its ``[[notify.route]]`` entries."""
    values = _table(file, "notify", data, NOTIFY_KEYS)
    routes = []
    for i, entry in enumerate(values.pop("route", [])):
        route = _table(file, f"notify.route[{i}]", entry, ROUTE_KEYS)
        if "url" not in route:
            raise ConfigError(file, f"notify.route[{i}]", 'route has no url; add url = "..."')
        routes.append(Route(**route))
    return Notify(**values, routes=tuple(routes))
