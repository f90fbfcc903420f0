"""`simtui place` against the real sshd lab (placement rules: test_placement.py)."""

from __future__ import annotations

import json
import socket

from clirun import simtui


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_place_picks_a_host_that_fits(lab):
    proc = simtui("place", "--mem", "1G", "--json", config=lab.config)
    assert proc.returncode == 0, proc.stderr
    placement = json.loads(proc.stdout)
    names = {"local", "h0", "h1", "h2"}
    assert placement["host"] in names
    assert set(placement["reasons"]) == set(placement["scores"]) == names
    assert placement["why"].startswith(f"{placement['host']}: best fit of 4 hosts")
    assert placement["needs"]["mem"] == 1024**3


def test_place_table_names_the_choice_and_every_host(lab):
    proc = simtui("place", "--mem", "1G", config=lab.config)
    assert proc.returncode == 0, proc.stderr
    why, header, *rows = proc.stdout.splitlines()
    chosen = why.split(":")[0]
    assert header.split() == ["HOST", "STATE", "REASON"]
    by_host = {row.split()[0]: row for row in rows}
    assert set(by_host) == {"local", "h0", "h1", "h2"}
    assert "best fit" in by_host[chosen]
    assert all("is tighter" in row for name, row in by_host.items() if name != chosen)


def test_nothing_fits_exits_1_with_a_reason_per_host(lab):
    proc = simtui("place", "--mem", "100000G", config=lab.config)
    assert proc.returncode == 1, proc.stderr
    why, _, *rows = proc.stdout.splitlines()
    assert why == "none of 4 hosts fits 100000.0 GiB memory"
    assert len(rows) == 4
    assert all("needs 100000.0 GiB memory, " in row and " available" in row for row in rows)


def test_a_down_host_is_passed_over_with_its_reason(lab, tmp_path):
    config = tmp_path / "gone.toml"
    config.write_text(
        lab.config_toml(local=False, hosts=lab.hosts[:1])
        + f'\n[[hosts]]\nname = "gone"\naddress = "127.0.0.1"\nport = {closed_port()}\n'
        + f'known_hosts = "{lab.known_hosts}"\n'
    )
    proc = simtui("place", "--json", config=config)
    assert proc.returncode == 0, proc.stderr
    placement = json.loads(proc.stdout)
    assert placement["host"] == "h0"
    assert placement["reasons"]["gone"].startswith("down (")
    assert "refused" in placement["reasons"]["gone"]
    assert placement["why"] == "h0: the only host of 2 that fits (left over: nothing asked)"


def test_bad_needs_are_one_line_and_exit_2(lab):
    proc = simtui("place", "--mem", "4X", config=lab.config)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == "simtui: --mem: expected a size like 4G, 500M or 1.5GiB, got '4X'\n"
