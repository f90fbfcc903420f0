"""Config errors: one line naming file, key and problem; exit 2; no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from simtui.config import config_path, load_config, simtui_home
from simtui.errors import ConfigError
from simtui.model import LOCAL, HostKind

GOOD = """
[defaults]
interval = 1.5
reserve_mem = "1G"

[[hosts]]
name = "zero"
address = "zero.lab.example"
user = "alice"
port = 2222
tags = ["gpu"]

[[hosts]]
name = "one"
ssh_alias = "one"
reserve_disk = "10G"

[notify]
urls = ["json://localhost:9/"]
on = ["failed", "host_down"]
"""


def write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_good_config_builds_host_specs(tmp_path):
    config = load_config(str(write(tmp_path, GOOD)))
    assert [h.name for h in config.hosts] == [LOCAL, "zero", "one"]
    local, zero, one = config.hosts
    assert local.kind is HostKind.LOCAL and zero.kind is HostKind.SSH
    assert zero.port == 2222 and zero.user == "alice" and zero.tags == ("gpu",)
    assert zero.reserve_mem == 1024**3  # inherited from [defaults]
    assert one.ssh_alias == "one" and one.reserve_disk == 10 * 1024**3
    assert config.defaults.interval == 1.5
    assert config.notify.on == ("failed", "host_down")


def test_no_config_is_this_machine_alone():
    config = load_config(None)
    assert [h.name for h in config.hosts] == [LOCAL]


def test_local_can_be_disabled(tmp_path):
    config = load_config(str(write(tmp_path, '[local]\nenabled = false\n[[hosts]]\nname = "a"\n')))
    assert [h.name for h in config.hosts] == ["a"]


def test_env_and_home(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("SIMTUI_CONFIG", str(path))
    assert config_path(None) == path
    assert config_path("other.toml").name == "other.toml"  # --config wins
    monkeypatch.setenv("SIMTUI_HOME", str(tmp_path / "h"))
    assert simtui_home() == tmp_path / "h"


BAD = [
    pytest.param(None, "no such file", id="missing-file"),
    pytest.param('[defaults]\ninterval = 2\n[[hosts]\nname = "x"\n', "TOML syntax error", id="syntax"),
    pytest.param('[[hosts]]\nname = "x"\nadress = "y"\n', "hosts[0].adress: unknown key (did you mean 'address'?)", id="unknown-key"),
    pytest.param('[defualts]\n', "defualts: unknown section (did you mean 'defaults'?)", id="unknown-section"),
    pytest.param('[[hosts]]\nname = "x"\nport = "22"\n', "hosts[0].port: expected a port number", id="wrong-type"),
    pytest.param('[defaults]\ninterval = "fast"\n', "defaults.interval: expected a number of seconds", id="wrong-type-defaults"),
    pytest.param('[[hosts]]\naddress = "y"\n', 'hosts[0]: host has no name', id="no-name"),
    pytest.param('[[hosts]]\nname = "x"\n[[hosts]]\nname = "x"\n', "hosts[1] (x).name: duplicate host name 'x'", id="duplicate"),
    pytest.param('[[hosts]]\nname = "local"\n', "'local' is this machine", id="reserved-local"),
    pytest.param('[[hosts]]\nname = "x"\nreserve_mem = "4X"\n', "hosts[0].reserve_mem: expected a size like 4G", id="bad-size"),
    pytest.param('[notify]\non = ["exploded"]\n', "notify.on: unknown event 'exploded'", id="bad-event"),
    pytest.param('[[hosts]]\nname = "x"\naddress = "a"\nssh_alias = "b"\n', "give address or ssh_alias, not both", id="address-and-alias"),
]


@pytest.mark.parametrize("text,expected", BAD)
def test_bad_config_is_one_clear_line(tmp_path, text, expected):
    path = tmp_path / "config.toml" if text is None else write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert expected in str(info.value)
    assert str(info.value).startswith(str(path))

    # The same through the real command: exit 2, one line on stderr, no traceback.
    proc = subprocess.run(
        [sys.executable, "-m", "simtui", "--config", str(path), "hosts"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, '[defaults]\ninterval = 2\n\n[[hosts]\nname = "x"\n')
    with pytest.raises(ConfigError, match="line 4"):
        load_config(str(path))


def test_simtui_config_env_is_read_by_the_cli(tmp_path):
    path = write(tmp_path, '[[hosts]]\nname = "x"\nport = 0\n')
    proc = subprocess.run(
        [sys.executable, "-m", "simtui", "hosts"], capture_output=True, text=True, timeout=60,
        env={**__import__("os").environ, "SIMTUI_CONFIG": str(path)},
    )
    assert proc.returncode == 2 and "hosts[0].port" in proc.stderr
