"""A provider's contract without a machine: what create prints, host keys in the
forms CLIs print them, the commands run with their environment, and the config."""

from __future__ import annotations

import asyncio
import sys

import pytest

from simtui.config import parse_config
from simtui.engine import providers
from simtui.engine.providers import ProviderError
from simtui.errors import ConfigError
from simtui.model import Machine

KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIH+aAmAqi2L/HVq3+4c/U5OrhBusIwEKlJVmRLcYg4jd"


def provider(**keys):
    return parse_config({"providers": [{"name": "do", "create": "true", "destroy": "true", **keys}]}, "f").providers[0]


def test_create_output_chatter_passed_over_keys_kept():
    made = providers.parse_created(provider(), "\n".join([
        "Creating droplet... done", "ID  Name  Public IPv4",  # a CLI's own lines
        "address=203.0.113.7", "port=2222", "user=root", "id=4242",
        f"host_key=ssh-ed25519 {KEY} root@droplet", f"host_key=ssh-ed25519 {KEY}",
    ]))
    assert (made.address, made.port, made.user, made.machine_id) == ("203.0.113.7", 2222, "root", "4242")
    assert made.host_keys == (f"ssh-ed25519 {KEY}",)  # each key once, the comment dropped


@pytest.mark.parametrize("text, said", [
    ("id=1\n", "create printed no address= line"),
    ("address=h\nport=ssh\n", "port='ssh', not a port number"),
    ("address=1.2.3.4 ssh-rsa AAAA\n", "address='1.2.3.4 ssh-rsa AAAA', not a host name or IP address"),
    ("address=h\nuser=root;id\n", "user='root;id', not a user name"),
    ("address=h\nhost_key=nonsense\n", "a host_key that is not 'TYPE BASE64'"),
    ("address=h\nhost_key=ssh-ed25519 !!!!\n", "a host_key that is not 'TYPE BASE64'"),
])
def test_create_output_that_cannot_be_used_is_one_line(text, said):
    with pytest.raises(ProviderError, match="provider do: ") as err:
        providers.parse_created(provider(), text)
    assert said in str(err.value) and "\n" not in str(err.value)


def test_host_keys_from_bare_known_hosts_and_keyscan_lines():
    text = "\n".join([
        "# 203.0.113.7:22 SSH-2.0-OpenSSH_9.6",  # ssh-keyscan's comment
        f"203.0.113.7 ssh-ed25519 {KEY}",  # keyscan / known_hosts
        f"[203.0.113.7]:2222 ecdsa-sha2-nistp256 {KEY[:-4]}AAAA",
        f"ssh-rsa {KEY} comment",  # bare, with a comment
        "-----BEGIN SSH HOST KEY KEYS-----",  # console noise
    ])
    assert providers.host_keys(text) == (f"ssh-ed25519 {KEY}", f"ecdsa-sha2-nistp256 {KEY[:-4]}AAAA",
                                         f"ssh-rsa {KEY}")


def test_known_hosts_lines_name_the_port_only_when_not_22():
    machine = Machine("do-1", "do", "s", "1", 0.0, address="h", port=22, host_keys=(f"ssh-ed25519 {KEY}",))
    assert providers.known_hosts(machine) == f"h ssh-ed25519 {KEY}\n"
    other = Machine("do-1", "do", "s", "1", 0.0, address="h", port=2222, host_keys=(f"ssh-ed25519 {KEY}",))
    assert providers.known_hosts(other) == f"[h]:2222 ssh-ed25519 {KEY}\n"


def test_commands_get_the_machine_in_their_environment_never_in_their_text():
    spec = provider(create=f'{sys.executable} -c "import os; print(os.environ[\'SIMTUI_MACHINE\'], '
                           f'os.environ[\'SIMTUI_SIZE\'], os.environ[\'SIMTUI_IMAGE\'])"')
    machine = Machine("do-1; rm -rf ~", "do", "s-1", "abc", 0.0)
    out = asyncio.run(providers.run(spec, "create", providers.environment(spec, machine, "img:1"), 10))
    assert out == "do-1; rm -rf ~ s-1 img:1\n"


def test_a_failing_or_hung_command_is_one_line_and_is_killed():
    failing = provider(destroy="echo working; echo 'token expired' >&2; exit 4")
    with pytest.raises(ProviderError, match=r"provider do: destroy failed \(exit 4\): token expired$"):
        asyncio.run(providers.run(failing, "destroy", {}, 10))
    hung = provider(create="sleep 60 & wait")
    with pytest.raises(ProviderError, match="create did not end within 0.3s"):
        asyncio.run(providers.run(hung, "create", {}, 0.3))


def test_no_key_and_no_host_key_command_is_refused():
    with pytest.raises(ProviderError, match="never accepts a machine's key unseen"):
        asyncio.run(providers.wait_for_keys(provider(), {}))


@pytest.mark.parametrize("keys, where, said", [
    ({"name": "DO"}, "providers[0].name", "lowercase letters"),
    ({"create": None}, "providers[0] (do)", "provider has no create"),
    ({"prices": {"a": -1}}, "providers[0].prices", "a price per hour"),
    ({"prices": {"a": 1}, "size": "b"}, "providers[0] (do).size", "'b' has no price (prices: a)"),
    ({"boot_timout": "1m"}, "providers[0].boot_timout", "did you mean 'boot_timeout'"),
])
def test_provider_config_errors_name_the_key(keys, where, said):
    entry = {"name": "do", "create": "true", "destroy": "true", **keys}
    entry = {k: v for k, v in entry.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        parse_config({"providers": [entry]}, "f")
    assert f"f: {where}: " in str(err.value) and said in str(err.value)


def test_a_provider_name_may_not_be_a_hosts():
    with pytest.raises(ConfigError, match="'x' is taken by another host or provider"):
        parse_config({"hosts": [{"name": "x", "address": "h"}],
                      "providers": [{"name": "x", "create": "true", "destroy": "true"}]}, "f")


def test_its_machines_are_reached_as_configured_and_tagged():
    spec = provider(user="root", identity="~/.ssh/id", container="docker", jobs_dir="/scratch/jobs", boot_timeout="2m")
    assert spec.boot_timeout == 120.0 and spec.create_timeout == 600.0
    assert (spec.host.user, spec.host.identity, spec.host.container, spec.host.jobs_dir) == (
        "root", "~/.ssh/id", "docker", "/scratch/jobs")
    assert "machine" in spec.host.tags and spec.host.max_jobs == 1
