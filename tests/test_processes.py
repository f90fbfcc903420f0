"""A host's process list, as `p` in the dashboard shows it: parsing `ps` output."""

from __future__ import annotations

import pytest

from simtui.hosts.processes import parse_etime, parse_ps
from simtui.model import ProcessInfo


@pytest.mark.parametrize("text,seconds", [("00:07", 7), ("01:02", 62), ("03:01:02", 10862),
                                          ("2-03:01:02", 2 * 86400 + 10862)])
def test_elapsed_time_forms(text, seconds):
    assert parse_etime(text) == seconds


def test_ps_rows_keep_whole_commands_and_skip_what_they_cannot_read():
    out = (
        "    1 root       0.0  10632 1-02:03:04 /sbin/init splash\n"
        " 4242 alice    187.5 2097152    12:34 python train.py --lr 0.1  --name 'a b'\n"
        "  977 simtui-t0  0.3   4096    00:01 [kworker/0:1]\n"
        "garbage line\n"
        "   12 bob        x.y    100    00:01 sleep 1\n"
    )
    assert parse_ps(out) == [
        ProcessInfo(1, "root", 0.0, 10632 * 1024, 93784.0, "/sbin/init splash"),
        ProcessInfo(4242, "alice", 187.5, 2097152 * 1024, 754.0, "python train.py --lr 0.1  --name 'a b'"),
        ProcessInfo(977, "simtui-t0", 0.3, 4096 * 1024, 1.0, "[kworker/0:1]"),
    ]
