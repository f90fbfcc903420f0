"""Connections to hosts behind one interface (see base.Host)."""

from __future__ import annotations

from simtui.hosts.base import CommandResult, Host, LineSplitter, command_line
from simtui.model import HostKind, HostSpec

__all__ = ["CommandResult", "Host", "LineSplitter", "command_line", "open_host"]


def open_host(spec: HostSpec, *, timeout: float = 10.0, keepalive: float = 15.0) -> Host:
    """A not-yet-connected Host for the spec. asyncssh is imported only for SSH hosts."""
    if spec.kind is HostKind.LOCAL:
        from simtui.hosts.local import LocalHost

        return LocalHost(spec)
    from simtui.hosts.ssh import SshHost

    return SshHost(spec, timeout=timeout, keepalive=keepalive)
