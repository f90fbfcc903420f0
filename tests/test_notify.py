"""Notifications end to end: a local HTTP receiver behind apprise's ``json://`` URL.

Exactly one POST per event with label, host, state, duration, command, #tags and,
on failure, the last lines; output images attached; one POST per event though two
`simtui watch` processes see it; a receiver that is down never breaks a job or the
command line, and its failure is kept in the record's events.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clirun import popen, simtui, simtui_json
from simtui.config import load_config, parse_config
from simtui.errors import ConfigError
from simtui.model import JobState, Record
from simtui.hosts import open_host
from simtui.store import Store
from simtui.store import notifications as claims
from simtui.engine.notify import Notifier, hashtags
from conftest import stop_server
from sshd import wait_for

MAX_BODY = 64 * 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps every JSON POST it gets."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.lock = threading.Lock()
        self.hang = False  # hold each request until release is set: a slow receiver
        self.arrived = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.send_error(413)
                    return
                body = json.loads(self.rfile.read(length))
                receiver.arrived.set()
                if receiver.hang:
                    receiver.release.wait(timeout=60)
                with receiver.lock:
                    receiver.posts.append({"path": self.path, **body})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/{path}"

    def got(self, words: str = "", path: str | None = None) -> list[dict]:
        """POSTs whose title holds ``words`` (and sent to ``path``)."""
        with self.lock:
            return [p for p in self.posts if words in p["title"] and (path is None or p["path"] == f"/{path}")]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def closed_url() -> str:
    """A json:// URL to a port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"json://127.0.0.1:{port}/down"


def notify_toml(urls, on, extra: str = "") -> str:
    return f"[notify]\nurls = {json.dumps(urls)}\non = {json.dumps(on)}\nretries = 1\nbackoff = 0.05\n{extra}"


def write_config(tmp_path, text: str):
    """An absolute jobs dir for local jobs: with --workdir a relative one is not found."""
    path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(f'[defaults]\ninterval = 0.2\n[local]\njobs_dir = "{tmp_path}/jobs"\n' + text)
    return path


def show(label, config):
    return simtui_json("show", label, config=config)


def notify_events(label, config) -> list[str]:
    return [e["detail"] for e in show(label, config)["events"] if e["kind"] == "notify"]


# -- config and routing ------------------------------------------------------------------


def test_routes_parse_and_pick_urls_by_tag():
    config = parse_config({"notify": {
        "urls": ["json://a/"], "on": ["failed"], "retries": 0, "attach": False,
        "route": [{"url": "json://gpu/", "tags": ["gpu"]},
                  {"url": "json://all/", "on": ["started", "host_up"]}],
    }}, "c.toml")
    notify = config.notify
    assert notify.retries == 0 and notify.attach is False and notify.routes[0].tags == ("gpu",)
    notifier = Notifier(config)
    assert notifier.destinations("failed", ["gpu", "x"]) == ["json://a/", "json://gpu/"]
    assert notifier.destinations("failed", ["cpu"]) == ["json://a/"]
    assert notifier.destinations("started", ["gpu"]) == ["json://all/"]
    assert notifier.destinations("succeeded", ["gpu"]) == []
    assert notifier.urls() == ["json://a/", "json://gpu/", "json://all/"]


@pytest.mark.parametrize("notify,expected", [
    ({"route": [{"tags": ["x"]}]}, "notify.route[0]: route has no url"),
    ({"route": [{"url": "json://a/", "tag": ["x"]}]}, "notify.route[0].tag: unknown key (did you mean 'tags'?)"),
    ({"route": [{"url": "json://a/", "on": ["done"]}]}, "notify.route[0].on: unknown event 'done'"),
    ({"route": {"url": "json://a/"}}, "notify.route: expected [[notify.route]] entries"),
    ({"retries": -1}, "notify.retries: expected a whole number from 0 to 10"),
])
def test_bad_notify_config_is_one_clear_line(notify, expected):
    with pytest.raises(ConfigError) as err:
        parse_config({"notify": notify}, "c.toml")
    assert expected in str(err.value)


def test_hashtags_are_words():
    assert hashtags(["sweep", "lr=0.1", "gpu", "sweep", "--"]) == "#sweep #lr_0_1 #gpu"


def test_a_claim_goes_to_exactly_one_of_many_processes(tmp_path):
    path = tmp_path / "r.db"
    Store.open(path).close()
    won: list[str | None] = []

    def claim() -> None:
        store = Store.open(path)
        try:
            won.append(claims.claim_job(store.db, "abc", "h0", "succeeded"))
        finally:
            store.close()

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 8 and [k for k in won if k] == ["job:abc:succeeded"]


def test_every_host_episode_is_told_once(tmp_path):
    """Down, down again (someone else saw it too), up, up, down: three claims."""
    path = tmp_path / "r.db"
    a, b = Store.open(path), Store.open(path)
    seen = [
        claims.claim_host(a.db, "h0", "host_up", True),  # nothing to recover from
        claims.claim_host(a.db, "h0", "host_down", True),
        claims.claim_host(b.db, "h0", "host_down", True),
        claims.claim_host(b.db, "h0", "host_up", True),
        claims.claim_host(a.db, "h0", "host_up", True),
        claims.claim_host(a.db, "h0", "host_down", False),  # recorded, not told
        claims.claim_host(b.db, "h0", "host_up", True),
    ]
    assert [bool(k) for k in seen] == [False, True, False, True, False, False, True]
    assert len({k for k in seen if k}) == 3
    assert [r["status"] for r in claims.recent(a.db)] == ["pending", "off", "pending", "pending"]


# -- end to end through the command line ------------------------------------------------


def test_a_failure_is_posted_once_with_its_fields_and_last_lines(receiver, tmp_path):
    routes = (
        f'[[notify.route]]\nurl = "{receiver.url("sweeps")}"\ntags = ["sweep"]\non = ["failed"]\n'
        f'[[notify.route]]\nurl = "{receiver.url("others")}"\ntags = ["other"]\n'
    )
    config = write_config(tmp_path, notify_toml([receiver.url()], ["started", "failed"], routes))
    script = "echo first; for i in $(seq 1 30); do echo line $i; done; echo boom >&2; exit 3"
    proc = simtui("run", "--host", "local", "--tag", "sweep", "--tag", "lr=0.1", "--follow", "--",
                  "sh", "-c", script, config=config)
    assert proc.returncode == 1, proc.stderr
    label = proc.stdout.splitlines()[0]
    # the simtui server sends them, in the background: wait for all three
    wait_for(lambda: len(receiver.posts) >= 3 and len(notify_events(label, config)) == 3, timeout=60,
             what="the three posts")
    started, failed = receiver.got(f"{label} started", "hook"), receiver.got(f"{label} failed", "hook")
    assert len(started) == 1 and len(failed) == 1 and len(receiver.posts) == 3
    message = failed[0]["message"]
    assert failed[0]["type"] == "failure" and failed[0]["title"] == f"simtui: {label} failed on local"
    for field in (f"label: {label}", "host: local", "state: failed (exit code 3)", "duration: ",
                  "command: sh -c 'echo first;", "tags: #sweep #lr_0_1"):
        assert field in message
    assert message.endswith("\n".join(["last lines of output:", *(f"line {i}" for i in range(22, 31)), "boom"]))
    assert "state: running" in started[0]["message"] and started[0]["type"] == "info"
    assert [p["title"] for p in receiver.got(path="sweeps")] == [f"simtui: {label} failed on local"]
    assert receiver.got(path="others") == []
    events = notify_events(label, config)
    assert sorted(events) == sorted([
        f"started: {receiver.url()}: sent", f"failed: {receiver.url()}: sent", f"failed: {receiver.url('sweeps')}: sent",
    ])


@pytest.mark.parametrize("where", ["local", "h1"])
def test_output_images_are_attached(receiver, tmp_path, lab, where):
    config = write_config(tmp_path, notify_toml([receiver.url()], ["succeeded"]) + lab.config_toml())
    name = f"plot-{uuid.uuid4().hex[:8]}"
    writer = (
        "import sys; d = sys.argv[1]; "
        f"open(d + '/{name}.png', 'wb').write({PNG!r}); "
        f"open(d + '/{name}.svg', 'w').write('<svg xmlns=\"http://www.w3.org/2000/svg\"/>'); "
        f"open(d + '/{name}-big.png', 'wb').write(b'x' * (5 * 1024 * 1024 + 1)); "
        f"open(d + '/{name}.txt', 'w').write('not an image')"
    )
    if where == "local":
        work = tmp_path / "work"
        work.mkdir()
        (work / "old.png").write_bytes(PNG)  # written before the job: not its figure
        args, target = ["--workdir", str(work)], str(work)
    else:
        args, target = [], "."  # the host user's home
    proc = simtui("run", "--host", where, *args, "--follow", "--", "python3", "-c", writer, target, config=config)
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.splitlines()[0]
    [post] = wait_for(lambda: receiver.got(f"{label} succeeded"), timeout=60, what="the post")
    attached = {a["filename"]: a for a in post["attachments"]}
    assert sorted(attached) == [f"{name}.png", f"{name}.svg"]
    assert base64.b64decode(attached[f"{name}.png"]["base64"]) == PNG
    assert attached[f"{name}.png"]["mimetype"] == "image/png"
    assert "svg" in attached[f"{name}.svg"]["mimetype"]
    assert "last lines" not in post["message"] and post["type"] == "success"


def test_two_watchers_and_the_server_post_each_event_once(receiver, tmp_path):
    config = write_config(tmp_path, notify_toml([receiver.url()], ["started", "succeeded"]))
    work = tmp_path / "work"
    work.mkdir()
    watchers = [popen("watch", config=config) for _ in range(2)]
    try:
        for watcher in watchers:
            assert "watching" in watcher.stderr.readline()
        proc = simtui("run", "--host", "local", "--workdir", str(work), "--", "sh", "-c",
                      "until [ -e go ]; do sleep 0.05; done; echo done", config=config)
        label = proc.stdout.strip()
        (work / "go").touch()
        wait_for(lambda: receiver.got(f"{label} succeeded"), timeout=60, what="the succeeded POST")
    finally:
        for watcher in watchers:
            watcher.terminate()
        for watcher in watchers:
            assert watcher.wait(timeout=60) == 0, watcher.stderr.read()
    stop_server(tmp_path / "home")  # the server, which sent them, is gone too: the count is final
    assert len(receiver.got(f"{label} started")) == 1
    assert len(receiver.got(f"{label} succeeded")) == 1
    assert len(receiver.posts) == 2
    listed = simtui_json("notify", "list", config=config)
    assert sorted((r["event"], r["status"]) for r in listed) == [("started", "sent"), ("succeeded", "sent")]


def test_a_receiver_that_is_down_breaks_nothing(receiver, tmp_path):
    down = closed_url()
    config = write_config(tmp_path, notify_toml([down], ["started", "succeeded"]))
    proc = simtui("run", "--host", "local", "--follow", "--", "echo", "hi", config=config)
    assert proc.returncode == 0 and proc.stdout.splitlines()[1] == "hi"
    label = proc.stdout.splitlines()[0]
    assert show(label, config)["state"] == "succeeded"
    # the server sends (and retries) in the background: the command did not wait for it
    events = wait_for(lambda: len(found := notify_events(label, config)) == 2 and found, timeout=60,
                      what="both failures in the record's events")
    assert sorted(e.split(":")[0] for e in events) == ["started", "succeeded"]
    assert all(f"{down}: not sent after 2 attempts:" in e for e in events)
    assert "Traceback" not in proc.stderr
    listed = simtui_json("notify", "list", config=config)
    assert {r["status"] for r in listed} == {"failed"}
    shown = simtui("show", label, config=config)
    assert "notify" in shown.stdout and "not sent" in shown.stdout

    tested = simtui("notify", "test", config=config)
    assert tested.returncode == 3 and down in tested.stdout and "failed" in tested.stdout


def test_notify_test_reports_each_url(receiver, tmp_path):
    down = closed_url()
    config = write_config(tmp_path, notify_toml([receiver.url()], ["failed"],
                                                f'[[notify.route]]\nurl = "{down}"\ntags = ["x"]\n'))
    result = simtui("notify", "test", "--json", config=config)
    assert result.returncode == 3, result.stderr
    report = {d["url"]: d for d in json.loads(result.stdout)}
    assert report[receiver.url()]["ok"] is True and report[down]["ok"] is False
    assert report[down]["attempts"] == 1 and report[down]["reason"]
    assert [p["title"] for p in receiver.posts] == ["simtui: test notification"]

    ok = write_config(tmp_path, notify_toml([receiver.url("again")], ["failed"]))
    assert simtui("notify", "test", config=ok).returncode == 0
    bad = write_config(tmp_path, notify_toml(["nosuchservice://secret-token@x"], ["failed"]))
    invalid = simtui("notify", "test", config=bad)
    assert invalid.returncode == 2 and "not a valid apprise URL" in invalid.stdout
    assert "secret-token" not in invalid.stdout
    none = simtui("notify", "test", config=write_config(tmp_path, ""))
    assert none.returncode == 2 and "no URLs" in none.stderr


def host_shell(spec, script: str) -> str:
    async def go():
        async with open_host(spec) as host:
            return (await host.run(["sh", "-c", script])).stdout

    return asyncio.run(go())


def test_a_host_going_down_and_back_is_told_once_each(receiver, make_lab, tmp_path):
    lab = make_lab(1, prefix="n")
    config = write_config(tmp_path, notify_toml([receiver.url()], ["host_down", "host_up"]) + lab.config_toml())
    go = f"go-{uuid.uuid4().hex[:8]}"
    label = simtui("run", "--host", "n0", "--", "sh", "-c", f"until [ -e {go} ]; do sleep 0.05; done",
                   config=config).stdout.strip()
    watcher = popen("watch", config=config)
    try:
        lab.hosts[0].stop()
        wait_for(lambda: receiver.got("host n0 down"), timeout=60, what="host_down")
        lab.hosts[0].start()
        wait_for(lambda: receiver.got("host n0 up"), timeout=60, what="host_up")
        host_shell(lab.hosts[0].spec, f"touch {go}")
        wait_for(lambda: show(label, config)["state"] == "succeeded", timeout=60, what="the job to end")
    finally:
        watcher.terminate()
        assert watcher.wait(timeout=60) == 0, watcher.stderr.read()
    assert [p["title"] for p in receiver.posts] == ["simtui: host n0 down", "simtui: host n0 up"]
    assert receiver.posts[0]["type"] == "failure" and "host: n0\nstate: down" in receiver.posts[0]["message"]


def test_the_command_line_starts_without_apprise():
    code = "import sys, simtui.cli, simtui.engine.jobs; print('apprise' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def finished_record(store: Store) -> Record:
    record = Record(label=uuid.uuid4().hex[:12], host="local", command="train.py", state=JobState.SUCCEEDED,
                    tags=["sweep"], started=100.0, ended=160.0)
    store.insert(record)
    return store.update(record.label, duration=60.0)


async def test_a_slow_receiver_never_blocks_the_event_loop(receiver, tmp_path):
    receiver.hang = True
    config = parse_config({"notify": {"urls": [receiver.url()], "on": ["succeeded"]}}, "c.toml")
    store = Store.open(tmp_path / "r.db")
    notifier = Notifier(config, store)
    record = finished_record(store)
    notifier.job(record)
    notifier.job(record)  # the same event again: already claimed
    while not receiver.arrived.is_set():  # the loop runs on while the request waits
        await asyncio.sleep(0.01)
    assert receiver.posts == [] and len(notifier._tasks) == 1
    receiver.release.set()
    await notifier.drain()
    [post] = receiver.posts
    assert post["title"] == f"simtui: {record.label} succeeded on local"
    assert "duration: 1m00s" in post["message"] and "#sweep" in post["message"]
    assert [e.detail for e in store.events(record.label) if e.kind == "notify"] == [f"succeeded: {receiver.url()}: sent"]


async def test_sends_still_in_flight_at_exit_are_given_up_and_recorded(receiver, tmp_path):
    receiver.hang = True
    config = parse_config({"notify": {"urls": [receiver.url()], "on": ["succeeded"]}}, "c.toml")
    store = Store.open(tmp_path / "r.db")
    told: list = []
    notifier = Notifier(config, store, report=told.append)
    record = finished_record(store)
    notifier.job(record)
    while not receiver.arrived.is_set():
        await asyncio.sleep(0.01)
    await notifier.drain(timeout=0.01)
    [row] = claims.recent(store.db)
    assert row["status"] == "failed" and "exited before the receiver answered" in row["detail"]
    assert [str(o) for o in told] == [f"{record.label}: succeeded: not sent: simtui exited before the receiver answered"]


def test_no_urls_means_no_claims(tmp_path):
    config = load_config(None)
    store = Store.open(tmp_path / "r.db")
    notifier = Notifier(config, store)
    assert not notifier.enabled
    notifier.host_state("local", "down")
    assert claims.recent(store.db) == []


# -- figures of metrics: a job's at its end, a sweep's at the end of its last run ---------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SWEEP = "sw2f775532a4"


def sweep_run(store: Store, label: str, state: JobState, lr: float, losses: list[float]) -> Record:
    """A run of SWEEP with a loss a step, as its log printed them."""
    store.insert(Record(label=label, host="local", command=f"train.py --lr {lr}", state=state, sweep=SWEEP,
                        params={"lr": lr, "seed": 1}, tags=["lab"], started=100.0))
    store.add_metrics(label, [("loss", float(step), loss, step * 10) for step, loss in enumerate(losses)], 100.0)
    return store.get(label)


def attachments(post: dict) -> dict[str, bytes]:
    return {a["filename"]: base64.b64decode(a["base64"]) for a in post.get("attachments") or []}


async def test_a_job_with_metrics_ends_with_a_figure_of_them(receiver, tmp_path):
    config = parse_config({"notify": {"urls": [receiver.url()], "on": ["started", "succeeded"]}}, "c.toml")
    store = Store.open(tmp_path / "r.db")
    notifier = Notifier(config, store)
    record = finished_record(store)
    store.add_metrics(record.label, [("loss", 1.0, 0.9, 0), ("acc", 1.0, 0.1, 0), ("loss", 2.0, 0.4, 20)], 100.0)
    plain_run = finished_record(store)  # no metrics: no figure
    for done in (store.get(record.label), plain_run):
        notifier.job(done)
    await notifier.drain()
    [post] = receiver.got(f"{record.label} succeeded")
    assert list(attachments(post)) == [f"metrics-{record.label}.png"]
    assert attachments(post)[f"metrics-{record.label}.png"].startswith(PNG_SIGNATURE)
    assert [a["mimetype"] for a in post["attachments"]] == ["image/png"]
    assert "sweep:" not in post["message"]  # not a run of a sweep
    [other] = receiver.got(f"{plain_run.label} succeeded")
    assert attachments(other) == {}


async def test_the_last_run_of_a_sweep_brings_its_hashtag_and_the_sweeps_figure(receiver, tmp_path):
    config = parse_config({"notify": {"urls": [receiver.url()], "on": ["succeeded", "failed"]}}, "c.toml")
    store = Store.open(tmp_path / "r.db")
    notifier = Notifier(config, store)
    first = sweep_run(store, "5a0000000001", JobState.SUCCEEDED, 0.1, [1.0, 0.5, 0.2])
    second = sweep_run(store, "5a0000000002", JobState.RUNNING, 0.2, [1.2, 0.9])
    notifier.job(first)  # the other run is still running: the sweep goes on
    await notifier.drain()
    [post] = receiver.got(f"{first.label} succeeded")
    assert f"sweep: #{SWEEP}\n" in post["message"] + "\n" and "ended" not in post["message"]
    assert list(attachments(post)) == [f"metrics-{first.label}.png"]

    notifier.job(store.update(second.label, state=JobState.FAILED, exit_code=1))  # the last run ends
    await notifier.drain()
    [post] = receiver.got(f"{second.label} failed")
    assert f"sweep: #{SWEEP} ended, 2 runs: 1 succeeded, 1 failed" in post["message"]
    assert "tags: #lab" in post["message"]
    files = attachments(post)
    assert list(files) == [f"metrics-{second.label}.png", f"sweep-{SWEEP}.png"]
    assert all(data.startswith(PNG_SIGNATURE) for data in files.values())
    assert len(files[f"sweep-{SWEEP}.png"]) > 1000
    [told] = [row for row in claims.recent(store.db) if row["event"] == "sweep_ended"]
    assert told["label"] == SWEEP and told["status"] == "sent"
    # told once: another look at its end (another process, the same event again) claims nothing
    assert notifier._sweep_end(store.get(second.label), "failed") is None


@pytest.mark.parametrize("why", ["no matplotlib", "attach off"])
async def test_no_figure_without_matplotlib_or_attachments_and_no_error(receiver, tmp_path, monkeypatch, why):
    if why == "no matplotlib":
        monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails, as when not installed
    settings = {"urls": [receiver.url()], "on": ["succeeded"], "attach": why != "attach off"}
    store = Store.open(tmp_path / "r.db")
    told: list = []
    notifier = Notifier(parse_config({"notify": settings}, "c.toml"), store, report=told.append)
    run = sweep_run(store, "5b0000000001", JobState.SUCCEEDED, 0.1, [1.0, 0.5])
    notifier.job(run)  # the sweep's only run: it ends the sweep
    await notifier.drain()
    [post] = receiver.got(f"{run.label} succeeded")
    assert attachments(post) == {}
    assert f"sweep: #{SWEEP} ended, 1 run: 1 succeeded" in post["message"]
    assert told == [] and [e.detail for e in store.events(run.label) if e.kind == "notify"] == [
        f"succeeded: {receiver.url()}: sent"]


def test_a_real_job_that_prints_metrics_is_told_with_their_figure(receiver, tmp_path):
    """Through the server: the metrics of the whole log are stored before its end is told."""
    config = write_config(tmp_path, notify_toml([receiver.url()], ["succeeded"]))
    script = "for i in range(1, 31): print(f'step={i} loss={1 / i:.4f} acc: {i / 30:.3f}')"
    proc = simtui("run", "--host", "local", "--follow", "--", "python3", "-c", script, config=config)
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.splitlines()[0]
    [post] = wait_for(lambda: receiver.got(f"{label} succeeded"), timeout=60, what="the post")
    files = attachments(post)
    assert list(files) == [f"metrics-{label}.png"] and files[f"metrics-{label}.png"].startswith(PNG_SIGNATURE)
