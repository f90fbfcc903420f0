"""Secrets: a URL's password or token never reaches a message, a record, an event or
a log line simtui writes (simtui.secret.mask, the one function).

A table of cases for ``mask``; then the real command line: a config type error in
``[notify] urls``, ``notify test`` on URLs apprise can and cannot read, and a job
whose notification fails: its record's events, ``notify list`` and the server's log.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import sys
import uuid

import pytest
from clirun import simtui
from sshd import wait_for

from simtui.secret import MaskingFormatter, mask

CASES = [
    # userinfo passwords, any scheme
    ("ntfy://me:hunter2@ntfy.sh/topic", "ntfy://me:***@ntfy.sh/topic"),
    ("https://alice:s3cr%40t@example.org/x", "https://alice:***@example.org/x"),
    ("postgres://app:pw@db.internal:5432/runs", "postgres://app:***@db.internal:5432/runs"),
    ("json://u:p@127.0.0.1:99/down", "json://u:***@127.0.0.1:99/down"),
    ("ntfy://user:p@ss@host/t", "ntfy://user:***@host/t"),  # an @ in the password
    ("mailto://user:****@gmail.com", "mailto://user:***@gmail.com"),  # apprise's own mask, unified
    # tokens in query strings and fragments
    ("https://h/x?token=abc&page=2", "https://h/x?token=***&page=2"),
    ("https://h/x?a=1&access_token=abc", "https://h/x?a=1&access_token=***"),
    ("https://api.example.org/v1?apikey=K1&key=K2&secret=S&password=P&limit=5",
     "https://api.example.org/v1?apikey=***&key=***&secret=***&password=***&limit=5"),
    ("https://s3.amazonaws.com/b/k?X-Amz-Credential=AKIAX&X-Amz-Signature=ab&versionId=3",
     "https://s3.amazonaws.com/b/k?X-Amz-Credential=***&X-Amz-Signature=***&versionId=3"),
    ("http://127.0.0.1:8888/?token=0f3a9b", "http://127.0.0.1:8888/?token=***"),  # a notebook's URL
    ("http://h/cb#access_token=abc&state=1", "http://h/cb#access_token=***&state=1"),
    ("http://[::1]:8080/x?apikey=1", "http://[::1]:8080/x?apikey=***"),
    # apprise-style service URLs: token segments, a token as user, a bot token as "port"
    ("tgram://123456789:ABCdefGHIjklMNOpqrSTUvwxYZ/12345", "tgram://123456789:***/12345"),
    ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", "discord://4174216298/***"),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general", "slack://***/***/***/#general"),
    ("pover://uQiRzpo4DXghDmr9QzzfQu27cmVRsG@aqDtvvQ4nfkx5X7RJ4qJtJYRfKqaJv", "pover://***@***"),
    ("gotify://push.example.org/AbcDefGhiJkl123", "gotify://push.example.org/***"),
    ("nosuchservice://secret-token@x", "nosuchservice://***@x"),
    ("ntfys://tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2@ntfy.sh/runs", "ntfys://***@ntfy.sh/runs"),
    # web URLs with a token in the user or the path
    ("https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/me/repo.git", "https://***@github.com/me/repo.git"),
    ("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXxxxxxxxx1234XXXX",
     "https://hooks.slack.com/services/T00000000/B00000000/***"),
    # in running text, and more than one
    ("expected a list of strings; got list ['ntfy://me:pw@h/t', 'json://a:b@c/d']",
     "expected a list of strings; got list ['ntfy://me:***@h/t', 'json://a:***@c/d']"),
    ("GITHUB_TOKEN=abc123 python x.py --password=hunter2 api_key='k'",
     "GITHUB_TOKEN=*** python x.py --password=*** api_key='***'"),
    ("curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9'", "curl -H 'Authorization: Bearer ***'"),
    ("pushed with glpat-abcdefghij0123456789 and xoxb-1234-5678-abcdefgh",
     "pushed with *** and ***"),
]

KEPT = [
    # nothing secret: left as it was
    "json://127.0.0.1:5555/down",
    "ntfy://ntfy.sh/my-runs",
    "ssh://me@host:22/srv/x",
    "https://github.com/a/b/commit/0123456789abcdef0123456789abcdef01234567",
    "https://example.org/search?q=token&page=2",
    "discord://4...8/J...s/",  # apprise's privacy form
    "simtui: c.toml: hosts[0].port: expected a port number from 1 to 65535, got string '22'",
    "the key=value pairs and monkey=business stay",
    "",
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0][:40] for c in CASES])
def test_mask_hides_every_password_and_token(text, expected):
    assert mask(text) == expected
    assert mask(expected) == expected  # masked stays masked


@pytest.mark.parametrize("text", KEPT, ids=[k[:40] or "empty" for k in KEPT])
def test_mask_leaves_the_rest_alone(text):
    assert mask(text) == text


def test_a_log_line_and_its_traceback_are_masked():
    formatter = MaskingFormatter("%(levelname)s %(message)s")
    try:
        raise RuntimeError("cannot reach https://u:hunter2@h/x?token=abc")
    except RuntimeError:
        record = logging.LogRecord("simtui", logging.ERROR, __file__, 1, "sending to %s", ("ntfy://a:pw@h/t",),
                                   exc_info=sys.exc_info())
    line = formatter.format(record)
    assert "hunter2" not in line and "abc" not in line and ":pw@" not in line
    assert "ntfy://a:***@h/t" in line and "Traceback" in line


# -- the command line -----------------------------------------------------------------


def write_config(tmp_path, text: str):
    path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(f'[defaults]\ninterval = 0.2\n[local]\njobs_dir = "{tmp_path}/jobs"\n' + text)
    return path


@pytest.mark.parametrize("notify", [
    '[notify]\nurls = ["ntfy://me:hunter2@ntfy.sh/topic", 3]\n',
    '[notify]\nurls = "ntfy://me:hunter2@ntfy.sh/topic"\n',
    '[notify]\n[[notify.route]]\nurl = ["ntfy://me:hunter2@ntfy.sh/topic"]\n',
], ids=["item-type", "not-a-list", "route-url-type"])
def test_a_config_type_error_in_notify_urls_does_not_print_the_password(tmp_path, notify):
    config = write_config(tmp_path, notify)
    proc = simtui("hosts", config=config)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "notify" in lines[0], proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout
    assert "ntfy://me:***@ntfy.sh/topic" in lines[0] or "item 2 is integer 3" in lines[0], lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_notify_test_masks_the_urls_it_reports(tmp_path):
    port = closed_port()
    urls = [f"json://alice:hunter2@127.0.0.1:{port}/hook?token=tok-abc123", "nosuchservice://me:hunter2@x/y"]
    config = write_config(tmp_path, f"[notify]\nurls = {json.dumps(urls)}\n")
    proc = simtui("notify", "test", "--json", config=config)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    shown = {d["url"]: d for d in json.loads(proc.stdout)}
    assert f"json://alice:***@127.0.0.1:{port}/hook" in shown
    assert "nosuchservice://me:***@x/y" in shown
    assert "hunter2" not in proc.stdout + proc.stderr and "tok-abc123" not in proc.stdout + proc.stderr


def test_a_failed_notification_keeps_no_secret_in_events_list_or_server_log(tmp_path, simtui_env):
    port = closed_port()
    url = f"json://alice:hunter2@127.0.0.1:{port}/hook?token=tok-abc123"
    config = write_config(tmp_path, f'[notify]\nurls = ["{url}"]\non = ["succeeded"]\nretries = 1\nbackoff = 0.05\n')
    proc = simtui("run", "--host", "local", "--follow", "--", "echo", "hi", config=config)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    label = proc.stdout.splitlines()[0]

    def events():
        record = json.loads(simtui("show", label, "--json", config=config).stdout)
        return [e["detail"] for e in record["events"] if e["kind"] == "notify"]

    found = wait_for(events, timeout=60, what="the failed notification in the record's events")
    assert any(f"json://alice:***@127.0.0.1:{port}/hook: not sent" in e for e in found), found
    listed = simtui("notify", "list", "--json", config=config)
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["status"] == "failed"
    home = simtui_env / "home"
    with sqlite3.connect(home / "records.db") as db:
        stored = "\n".join(str(row) for table in ("events", "notifications")
                           for row in db.execute(f"select * from {table}"))  # noqa: S608
    log = home / "server.log"
    server_log = wait_for(lambda: log.exists() and "not sent" in (text := log.read_text()) and text,
                          timeout=30, what="the server's log line about the failure")
    assert f"json://alice:***@127.0.0.1:{port}/hook" in server_log
    for text in (proc.stdout, proc.stderr, listed.stdout, stored, server_log):
        assert "hunter2" not in text and "tok-abc123" not in text
