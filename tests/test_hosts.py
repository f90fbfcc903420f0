"""The Host interface against real sshd hosts and this machine, and its typed errors."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from simtui.errors import (
    AuthRefused,
    ChangedHostKey,
    ConnectionRefused,
    HostTimeout,
    UnknownHostKey,
)
from simtui.hosts import LineSplitter, open_host
from simtui.model import LOCAL, HostKind, HostSpec
from clirun import simtui
from sshd import keygen

TRICKY = ["a b", "it's", '"q"', "$(echo no)", "; echo no", "*", "\\", "ünï", "", "--x"]


@pytest.fixture(params=["local", "ssh"])
def spec(request, lab):
    if request.param == "local":
        return HostSpec(name=LOCAL, kind=HostKind.LOCAL)
    return lab.hosts[0].spec


async def test_run_passes_argv_exactly(spec):
    script = 'import json, sys; print(json.dumps(sys.argv[1:]))'
    async with open_host(spec) as host:
        result = await host.run(["python3", "-c", script, *TRICKY])
    assert result.ok, result.stderr
    assert json.loads(result.stdout) == TRICKY


async def test_run_reports_exit_status_stderr_and_input(spec):
    async with open_host(spec) as host:
        result = await host.run(["sh", "-c", "cat; echo oops >&2; exit 3"], input="hello")
    assert result.exit_status == 3 and result.stdout == "hello" and result.stderr == "oops\n"


async def test_lines_stream_as_they_come(spec):
    async with open_host(spec) as host:
        lines = [line async for line in host.lines(["sh", "-c", "printf 'a\\nb\\nünï\\nlast'"])]
    assert lines == ["a", "b", "ünï", "last"]


async def test_put_and_get_round_trip(spec, tmp_path):
    payload = os.urandom(300_000)
    (tmp_path / "up.bin").write_bytes(payload)
    remote = f"simtui-put-test-{os.getpid()}.bin"
    async with open_host(spec) as host:
        await host.put(tmp_path / "up.bin", remote)
        await host.get(remote, tmp_path / "down.bin")
        await host.check(["rm", "-f", remote])
    assert (tmp_path / "down.bin").read_bytes() == payload


def test_line_splitter_keeps_multibyte_characters_across_reads():
    data = "α line\nβ second\n".encode()
    splitter = LineSplitter()
    out = []
    for i in range(len(data)):  # one byte per read: every character gets cut
        out += splitter.feed(data[i : i + 1])
    assert out == ["α line", "β second"] and splitter.flush() == []


async def test_a_command_must_be_argv_not_a_shell_string():
    host = open_host(HostSpec(name=LOCAL, kind=HostKind.LOCAL))
    with pytest.raises(TypeError):
        await host.run("echo hi")


async def test_ssh_alias_from_an_openssh_config(lab, tmp_path):
    h = lab.hosts[1]
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host buildbox\n  HostName {h.address}\n  Port {h.port}\n  User {h.user}\n"
        f"  IdentityFile {lab.client_key}\n"
    )
    spec = HostSpec(name="bb", ssh_alias="buildbox", ssh_config=str(config), known_hosts=str(lab.known_hosts))
    async with open_host(spec) as host:
        assert (await host.check(["whoami"])).strip() == h.user


@pytest.mark.parametrize("config_text,cipher", [
    ("", "aes128-gcm@openssh.com"),  # AES-GCM first: cheaper a packet for asyncssh than chacha20
    ("Host *\n  Ciphers aes256-ctr\n", "aes256-ctr"),  # the user's choice stands
    ("Include {include}\n", "aes192-ctr"),  # ... wherever the config says it
], ids=["none-set", "set", "included"])
async def test_ciphers_are_the_users_where_the_ssh_config_chooses(lab, tmp_path, config_text, cipher):
    (tmp_path / "included").write_text("Ciphers aes192-ctr\n")
    (tmp_path / "ssh_config").write_text(config_text.format(include=tmp_path / "included"))
    spec = dataclasses.replace(lab.hosts[0].spec, ssh_config=str(tmp_path / "ssh_config"))
    async with open_host(spec) as host:
        assert host._conn.get_extra_info("send_cipher") == cipher


# -- errors, each against a real sshd --------------------------------------


async def connect_error(spec: HostSpec, timeout: float = 10.0):
    host = open_host(spec, timeout=timeout)
    try:
        await host.connect()
    except Exception as err:  # noqa: BLE001 - the test inspects it
        return err
    finally:
        await host.close()
    raise AssertionError("connect unexpectedly succeeded")


async def test_unknown_host_key(lab, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    err = await connect_error(dataclasses.replace(lab.hosts[0].spec, known_hosts=str(empty)))
    assert isinstance(err, UnknownHostKey)
    assert "not in" in str(err) and "ssh-keyscan" in str(err) and "\n" not in str(err)


async def test_missing_known_hosts_file_trusts_nothing(lab, tmp_path):
    err = await connect_error(dataclasses.replace(lab.hosts[0].spec, known_hosts=str(tmp_path / "none")))
    assert isinstance(err, UnknownHostKey)


async def test_changed_host_key(lab, tmp_path):
    h = lab.hosts[0]
    other = keygen(tmp_path / "other_key")
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{h.address}]:{h.port} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n")
    err = await connect_error(dataclasses.replace(h.spec, known_hosts=str(wrong)))
    assert isinstance(err, ChangedHostKey)
    assert "CHANGED" in str(err) and "ssh-keygen -R" in str(err)


async def test_auth_refused(lab, tmp_path):
    stranger = keygen(tmp_path / "stranger")
    err = await connect_error(dataclasses.replace(lab.hosts[0].spec, identity=str(stranger)))
    assert isinstance(err, AuthRefused) and "authentication refused" in str(err)


async def test_connection_refused(make_lab):
    lab = make_lab(1)
    host = lab.hosts[0]
    host.stop()
    err = await connect_error(host.spec)
    assert isinstance(err, ConnectionRefused) and "connection refused" in str(err)


async def test_timeout_when_sshd_does_not_answer(make_lab):
    lab = make_lab(1)
    host = lab.hosts[0]
    host.pause()  # the kernel accepts the TCP connection; sshd never says hello
    err = await connect_error(host.spec, timeout=1.0)
    host.resume()
    assert isinstance(err, HostTimeout) and "within 1s" in str(err)


# -- `simtui hosts` ---------------------------------------------------------


def test_hosts_json_shows_local_and_sshd_hosts_up(lab, tmp_path):
    config = tmp_path / "two.toml"
    config.write_text(lab.config_toml(hosts=lab.hosts[:2]))
    proc = simtui("hosts", "--json", config=config)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["name"], r["state"]) for r in rows] == [("local", "up"), ("h0", "up"), ("h1", "up")]
    assert rows[1]["address"] == f"{lab.hosts[0].user}@{lab.hosts[0].address}:{lab.hosts[0].port}"


def test_hosts_table_reports_a_down_host_with_its_reason(make_lab):
    lab = make_lab(2)
    lab.hosts[1].pause()
    try:
        proc = simtui("hosts", "--timeout", "1", config=lab.config)
        named = simtui("hosts", "x1", "--timeout", "1", config=lab.config)
    finally:
        lab.hosts[1].resume()
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert " up " in rows["local"] and " up " in rows["x0"]
    assert " down " in rows["x1"] and "no answer" in rows["x1"]
    assert named.returncode == 3  # a named host that is down


def test_hosts_unknown_name_is_a_usage_error(lab):
    proc = simtui("hosts", "nope", config=lab.config)
    assert proc.returncode == 2 and "no host named 'nope'" in proc.stderr


def test_version_and_help():
    assert simtui("--version").stdout.startswith("simtui, version ")
    out = simtui("--help").stdout
    assert "hosts" in out and "--config" in out
