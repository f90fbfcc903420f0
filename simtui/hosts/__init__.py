"""Connections to hosts behind one interface (see base.Host)."""

from __future__ import annotations

from simtui.hosts.base import CommandResult, Host, LineSplitter, command_line
from simtui.model import HostKind, HostSpec

__all__ = ["CommandResult", "Host", "LineSplitter", "command_line", "host_class", "open_host"]


def host_class(spec: HostSpec) -> type[Host]:
    """The class of hosts of this kind. asyncssh is imported only for hosts reached over SSH."""
    if spec.kind is HostKind.LOCAL:
        from simtui.hosts.local import LocalHost

        return LocalHost
    if spec.kind is HostKind.SLURM:
        from simtui.hosts.slurm import SlurmHost

        return SlurmHost
    from simtui.hosts.ssh import SshHost

    return SshHost


def open_host(spec: HostSpec, *, timeout: float = 10.0, keepalive: float = 15.0) -> Host:
    """A not-yet-connected Host for the spec."""
    cls = host_class(spec)
    if spec.kind is HostKind.LOCAL:
        return cls(spec)
    return cls(spec, timeout=timeout, keepalive=keepalive)  # type: ignore[call-arg]
