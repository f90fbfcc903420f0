"""One connection per host, opened on first use and dialled again after a drop."""

from __future__ import annotations

import asyncio

from collections.abc import Callable

from simtui.config import Config
from simtui.hosts import Host, open_host
from simtui.model import HostSpec


class HostPool:
    def __init__(self, config: Config, specs: Callable[[str], HostSpec] | None = None) -> None:
        self.config = config
        self.specs = specs or config.host  # a host's spec by name (the engine's also knows machines)
        self._hosts: dict[str, Host] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, name: str) -> Host:
        """A connected Host; raises a HostError when it cannot be reached."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            host = self._hosts.get(name)
            if host is None:
                host = open_host(self.specs(name), timeout=self.config.defaults.timeout)
                self._hosts[name] = host
            if not host.connected:
                await host.connect()
            return host

    def is_connected(self, name: str) -> bool:
        host = self._hosts.get(name)
        return host is not None and host.connected

    async def drop(self, name: str) -> None:
        """Forget a connection that failed; the next get() dials again."""
        host = self._hosts.pop(name, None)
        if host is not None:
            await host.close()

    async def close(self) -> None:
        for name in list(self._hosts):
            await self.drop(name)
