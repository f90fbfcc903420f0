"""A provider's commands, run on this machine through ``/bin/sh -c``.

What they get is in the environment, never pasted into the command text:
``SIMTUI_MACHINE`` (the machine's name), ``SIMTUI_SIZE``, ``SIMTUI_OS_IMAGE``
(the provider's ``os_image``), ``SIMTUI_IMAGE`` (the job's container image, if
any), ``SIMTUI_LABEL`` (the job's record); once the machine exists also
``SIMTUI_ADDRESS`` and ``SIMTUI_MACHINE_ID``.

``create`` prints the new machine on stdout, one ``key=value`` a line (other
lines are passed over, so a CLI's chatter may stay): ``address=`` (required),
``port=``, ``user=``, ``id=`` (the provider's own id, handed to destroy), and
``host_key=TYPE BASE64`` once per host key. Without a host key the provider's
``host_key`` command must print it (``TYPE BASE64`` lines, or known_hosts or
ssh-keyscan lines): it is run again until it does. A key is never taken from the
machine itself: that would trust whoever answers first.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass

from simtui.errors import SimtuiError
from simtui.model import Machine, ProviderSpec
from simtui.secret import mask
from simtui.textsafe import one_line

KEY_RETRY = 2.0  # seconds between runs of a host_key command that printed no key yet
_ADDRESS = re.compile(r"^[A-Za-z0-9.:_-]+$")  # a host name, IPv4 or IPv6 address
_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*$")
_KEY = re.compile(r"(?:^|\s)((?:ssh|ecdsa|sk)-[A-Za-z0-9@._-]+)\s+([A-Za-z0-9+/]+={0,2})(?:\s|$)")


class ProviderError(SimtuiError):
    """A provider's command failed, printed what cannot be used, or did not end."""


@dataclass(frozen=True)
class Created:
    """What create said of the new machine."""

    address: str
    port: int | None = None
    user: str | None = None
    machine_id: str | None = None
    host_keys: tuple[str, ...] = ()


def environment(provider: ProviderSpec, machine: Machine, image: str | None = None) -> dict[str, str]:
    env = {"SIMTUI_MACHINE": machine.name, "SIMTUI_SIZE": machine.size, "SIMTUI_LABEL": machine.label,
           "SIMTUI_OS_IMAGE": provider.os_image or "", "SIMTUI_IMAGE": image or ""}
    if machine.address:
        env["SIMTUI_ADDRESS"] = machine.address
    if machine.machine_id:
        env["SIMTUI_MACHINE_ID"] = machine.machine_id
    return env


async def run(provider: ProviderSpec, which: str, env: dict[str, str], timeout: float) -> str:
    """Run the provider's ``which`` command; its stdout. ProviderError (one line: the
    exit code and the last line it wrote) when it fails or runs past ``timeout``;
    it is killed, with whatever it started, then and when the caller is cancelled."""
    command = getattr(provider, which)
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **env}, start_new_session=True)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError) as stop:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(stop, asyncio.CancelledError):
            raise
        raise ProviderError(f"provider {provider.name}: {which} did not end within {timeout:g}s") from None
    if proc.returncode != 0:
        said = (err.decode(errors="replace").strip() or out.decode(errors="replace").strip()).splitlines()
        last = mask(one_line(said[-1]))[:300] if said else "nothing on stderr"
        raise ProviderError(f"provider {provider.name}: {which} failed (exit {proc.returncode}): {last}")
    return out.decode(errors="replace")


def host_keys(text: str) -> tuple[str, ...]:
    """``TYPE BASE64`` of every key in ``text`` (bare keys, known_hosts or
    ssh-keyscan lines); a key whose base64 does not decode is left out."""
    keys = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for kind, blob in _KEY.findall(line):
            with contextlib.suppress(binascii.Error, ValueError):
                if base64.b64decode(blob, validate=True):
                    keys.append(f"{kind} {blob}")
    return tuple(dict.fromkeys(keys))


def parse_created(provider: ProviderSpec, text: str) -> Created:
    """The machine create printed (see the module's docstring)."""
    values: dict[str, str] = {}
    keys: list[str] = []
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep:
            continue
        if key == "host_key":
            found = host_keys(value)
            if not found:
                raise ProviderError(f"provider {provider.name}: create printed a host_key that is not "
                                    f"'TYPE BASE64': {one_line(value)[:80]}")
            keys.extend(found)
        elif key in ("address", "port", "user", "id"):
            values[key] = value.strip()
    if not values.get("address"):
        raise ProviderError(f"provider {provider.name}: create printed no address= line (its stdout must "
                            "say address=HOST and host_key=TYPE BASE64)")
    for key, pattern, what in (("address", _ADDRESS, "a host name or IP address"), ("user", _USER, "a user name")):
        if values.get(key) and not pattern.match(values[key]):
            raise ProviderError(f"provider {provider.name}: create printed {key}={one_line(values[key])[:80]!r}, "
                                f"not {what}")
    port = values.get("port")
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ProviderError(f"provider {provider.name}: create printed port={port!r}, not a port number")
    return Created(values["address"], int(port) if port else None, values.get("user") or None,
                   values.get("id") or None, tuple(dict.fromkeys(keys)))


async def wait_for_keys(provider: ProviderSpec, env: dict[str, str]) -> tuple[str, ...]:
    """The machine's host keys from the provider's ``host_key`` command, run every
    KEY_RETRY seconds until it prints one (its console may not show them yet),
    for at most the provider's boot_timeout."""
    if not provider.host_key:
        raise ProviderError(f"provider {provider.name}: create printed no host_key= line and the provider has "
                            "no host_key command: simtui never accepts a machine's key unseen (print "
                            "host_key=TYPE BASE64 from create, or set host_key = \"a command that prints it\")")
    deadline = time.monotonic() + provider.boot_timeout
    while True:
        left = deadline - time.monotonic()
        keys = host_keys(await run(provider, "host_key", env, max(left, 1.0)))
        if keys:
            return keys
        if time.monotonic() + KEY_RETRY > deadline:
            raise ProviderError(f"provider {provider.name}: host_key printed no key within "
                                f"{provider.boot_timeout:g}s")
        await asyncio.sleep(KEY_RETRY)


def known_hosts(machine: Machine) -> str:
    """The machine's host keys as known_hosts lines for its address and port."""
    where = machine.address if machine.port in (None, 22) else f"[{machine.address}]:{machine.port}"
    return "".join(f"{where} {key}\n" for key in machine.host_keys)
