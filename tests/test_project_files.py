"""Files and services in a project's folder on a host, through the real command
line: push and pull (and the paths refused), data downloads, the virtual
environment, a notebook reached through a forwarded port. Against real sshd."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import http.server
import os
import signal
import socket
import stat
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile

import pytest

from clirun import popen, simtui, simtui_json
from projectkit import folder_on, host0, project, write  # noqa: F401  (host0, project: fixtures)
from simtui.hosts import open_host


@pytest.fixture
def cli(lab, project):
    """``simtui ARGS`` run in the project's checkout, against the lab's hosts."""
    return functools.partial(simtui, config=lab.config, cwd=project.root)


def on_host(host, *argv: str) -> str:
    async def go():
        async with open_host(host.spec) as connected:
            return await connected.check(list(argv))

    return asyncio.run(go())


# -- push and pull --------------------------------------------------------------


def test_push_and_pull_files_and_folders_keeping_modes(cli, project, host0, tmp_path):
    write(tmp_path, {"tool.sh": "#!/bin/sh\necho tool\n", "conf/a.toml": "a = 1\n", "conf/deep/b.toml": "b = 2\n"})
    os.chmod(tmp_path / "tool.sh", 0o755)
    pushed = cli("push", str(tmp_path / "tool.sh"), "bin/run.sh", "--host", "h0")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout == f"h0:~/simtui/projects/{project.name}/bin/run.sh\n"
    assert cli("push", str(tmp_path / "conf"), "bin", "--host", "h0").returncode == 0  # into the folder
    folder = folder_on(host0, project)
    assert stat.S_IMODE((folder / "bin/run.sh").stat().st_mode) == 0o755
    assert (folder / "bin/conf/deep/b.toml").read_text() == "b = 2\n"

    back = tmp_path / "back"
    pulled = cli("pull", "bin", str(back), "--host", "h0")
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout == f"{back}\n"
    assert (back / "conf/a.toml").read_text() == "a = 1\n" and os.access(back / "run.sh", os.X_OK)
    assert cli("pull", "bin/run.sh", str(tmp_path), "--host", "h0").returncode == 0  # into the folder
    assert (tmp_path / "run.sh").read_text() == "#!/bin/sh\necho tool\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".simtui-pull-")]


@pytest.mark.parametrize("command", ["push", "pull"])
@pytest.mark.parametrize("path", ["../escape.txt", "/tmp/escape.txt", "lib/../../escape.txt", "out/escape.txt"])
def test_a_path_that_leaves_the_project_folder_is_refused(cli, project, host0, tmp_path, command, path):
    folder = f"simtui/projects/{project.name}"
    on_host(host0, "sh", "-c", 'mkdir -p "$1" && ln -sfn /tmp "$1/out"', "sh", folder)  # a symlink out
    args = ["push", str(project.root / "README"), path] if command == "push" else ["pull", path, str(tmp_path)]
    proc = cli(*args, "--host", "h0")
    assert proc.returncode == 2
    assert "outside the project folder" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not os.path.exists("/tmp/escape.txt") and not (tmp_path / "escape.txt").exists()


def test_pulling_what_is_not_there_is_a_usage_error(cli, tmp_path):
    proc = cli("pull", "nothing-here", str(tmp_path), "--host", "h0")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


# -- data -------------------------------------------------------------------------


@pytest.fixture
def web(tmp_path):
    """An HTTP server on 127.0.0.1 serving a folder; its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "set.csv").write_text("x,y\n1,2\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_data_downloads_into_data_and_a_failure_leaves_no_partial_file(cli, project, host0, web):
    proc = cli("data", f"{web}/set.csv", "--host", "h0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"h0:~/simtui/projects/{project.name}/data/set.csv\n"
    data = folder_on(host0, project) / "data"
    assert (data / "set.csv").read_text() == "x,y\n1,2\n"

    failed = cli("data", f"{web}/missing.csv", "--host", "h0")
    assert failed.returncode == 1 and "downloading" in failed.stderr and "404" in failed.stderr
    assert sorted(p.name for p in data.iterdir()) == ["set.csv"]
    assert cli("data", f"{web}/", "--host", "h0").returncode == 2  # no file name


# -- the virtual environment --------------------------------------------------------


def tiny_wheel(folder) -> str:
    """A wheel of ``tinypkg`` (VALUE = 42) made by hand: pip installs it without an index."""
    files = {
        "tinypkg/__init__.py": "VALUE = 42\n",
        "tinypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(text.encode())}" for name, text in files.items()]
    files["tinypkg-1.0.dist-info/RECORD"] = "\n".join([*record, "tinypkg-1.0.dist-info/RECORD,,"]) + "\n"
    name = "tinypkg-1.0-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / name, "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
    return name


def test_env_is_made_from_requirements_once_and_synced_jobs_run_in_it(cli, lab, project):
    wheel = tiny_wheel(project.root / "wheels")
    write(project.root, {"requirements.txt": f"--no-index\n./wheels/{wheel}\n"})
    made = cli("env", "--host", "h0", "--json")
    assert made.returncode == 0, made.stderr
    assert '"made": true' in made.stdout
    again = cli("env", "--host", "h0")
    assert again.returncode == 0 and again.stdout.endswith(".venv: up to date from requirements.txt\n")

    proc = cli("run", "--sync", "--host", "h0", "--follow", "--", "python3", "-c",
               "import tinypkg, sys; print(tinypkg.VALUE, sys.prefix.endswith('.venv'))")
    assert proc.returncode == 0, proc.stderr
    label, output = proc.stdout.split("\n", 1)
    assert output == "42 True\n"
    record = simtui_json("show", label, config=lab.config)
    assert record["venv"] == ".venv" and record["environment"]["packages"]["tinypkg"] == "1.0"

    write(project.root, {"requirements.txt": f"--no-index\n./wheels/{wheel}  # pinned\n"})
    remade = cli("env", "--host", "h0")
    assert remade.returncode == 0 and remade.stdout.endswith(".venv: made from requirements.txt\n")


def test_env_without_requirements_is_a_usage_error(cli):
    proc = cli("env", "--host", "h0")
    assert proc.returncode == 2 and "no requirements.txt or pyproject.toml" in proc.stderr


# -- the notebook ------------------------------------------------------------------


@contextlib.contextmanager
def sigint_ignored():
    """SIGINT ignored here, as in a test run started in the background by a script
    (`pytest &`: a shell without job control makes its background commands ignore
    SIGINT, and every process they start inherits that)."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def ctrl_c_as_from_a_terminal() -> None:
    """In the child before exec: SIGINT's default disposition, which a terminal's
    foreground command has. One inherited ignored stays ignored (Python then never
    raises KeyboardInterrupt, nor asyncio cancels on it), so SIGINT would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_notebook_server_is_reached_through_a_forwarded_port_and_ends_on_ctrl_c(lab, project, cli):
    cli("push", str(project.root / "README"), "hello.txt", "--host", "h0")
    with sigint_ignored():  # however this run was started: the case that once hung
        server = popen("notebook", "--host", "h0", "--port", "0", "--command",
                       "python3 -m http.server {port} --bind 127.0.0.1", config=lab.config, cwd=project.root,
                       preexec_fn=ctrl_c_as_from_a_terminal)
    idle = None
    try:
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), server.stderr.read() if not url else url
        # A client still connected through the forward (half a request sent) holds nothing up.
        # Made before the page's, its channel is opened first.
        idle = socket.create_connection(("127.0.0.1", urllib.parse.urlsplit(url).port), timeout=10)
        idle.sendall(b"GET / HTTP/1.1\r\n")
        with urllib.request.urlopen(url, timeout=10) as page:
            assert "hello.txt" in page.read().decode()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, err = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # leave neither it nor its server on the host running
            server.kill()
            server.communicate()
            for record in simtui_json("list", "--tag", "notebook", config=lab.config):
                if record["state"] in ("starting", "running"):
                    simtui("kill", record["label"], config=lab.config)
            raise
        finally:
            if idle is not None:
                idle.close()
    assert server.returncode == 0 and "notebook stopped" in err
    (record,) = simtui_json("list", "--tag", "notebook", config=lab.config)
    assert record["state"] == "killed" and record["workdir"] == f"~/simtui/projects/{project.name}"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


def test_a_host_without_jupyter_is_told_so(cli, host0):
    if on_host(host0, "sh", "-c", "command -v jupyter-lab jupyter-notebook || true").strip():
        pytest.skip("Jupyter is installed on this machine")
    proc = cli("notebook", "--host", "h0")
    assert proc.returncode == 2 and "Jupyter is not installed on h0" in proc.stderr
