"""Provenance capture on real files and a real temporary git repository."""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import socket
import subprocess
import sys
import time

import pytest

from simtui import params, provenance
from simtui.errors import UsageError


def git(repo, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@example.org", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "remote", "add", "origin", "https://example.org/lab/project.git")
    (path / "train.py").write_text("lr = 0.1\n")
    git(path, "add", "train.py")
    git(path, "commit", "-q", "-m", "first")
    return path


def test_a_clean_checkout(repo):
    info = provenance.git_info(repo)
    assert info == {
        "remote": "https://example.org/lab/project.git",
        "branch": "main",
        "commit": git(repo, "rev-parse", "HEAD"),
        "dirty": False,
        "diff": "",
        "changed": [],
        "untracked": [],
    }


def test_a_dirty_checkout_keeps_its_diff_and_untracked_files(repo):
    (repo / "train.py").write_text("lr = 0.2\n")
    (repo / "notes.txt").write_text("try a higher rate\n")
    info = provenance.git_info(repo / ".")
    assert info["dirty"] is True
    assert "-lr = 0.1\n+lr = 0.2\n" in info["diff"]
    assert info["diff"] == git(repo, "diff", "HEAD") + "\n"
    assert info["untracked"] == ["notes.txt"] and info["changed"] == ["train.py"]


def test_a_detached_head_and_a_subdirectory(repo):
    (repo / "sub").mkdir()
    git(repo, "checkout", "-q", "--detach")
    info = provenance.git_info(repo / "sub")
    assert info["branch"] is None and info["commit"] == git(repo, "rev-parse", "HEAD")


def test_outside_a_repository_there_is_no_git_info(tmp_path):
    assert provenance.git_info(tmp_path) is None
    assert provenance.git_info(tmp_path / "missing") is None


@pytest.mark.parametrize(
    "name,text",
    [
        ("p.json", '{"lr": 0.1, "model": {"depth": 4}, "tags": ["a"]}'),
        ("p.toml", 'lr = 0.1\ntags = ["a"]\n[model]\ndepth = 4\n'),
        ("p.yaml", "lr: 0.1\nmodel:\n  depth: 4\ntags: [a]\n"),
        ("p.yml", "lr: 0.1\nmodel: {depth: 4}\ntags:\n  - a\n"),
    ],
)
def test_parameter_files_of_each_format(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    assert params.load_params(tmp_path / name) == {"lr": 0.1, "model": {"depth": 4}, "tags": ["a"]}


@pytest.mark.parametrize(
    "name,text,line",
    [
        ("bad.json", '{\n  "lr": 0.1\n  "depth": 4\n}', 3),
        ("bad.toml", "lr = 0.1\ndepth = \n", 2),
        ("bad.yaml", "lr: 0.1\nmodel: [1, 2\nx: 1\n", 3),
    ],
)
def test_a_broken_parameter_file_names_the_file_and_the_line(tmp_path, name, text, line):
    (tmp_path / name).write_text(text)
    with pytest.raises(UsageError, match=rf"{name}: line {line}: ") as caught:
        params.load_params(tmp_path / name)
    assert caught.value.exit_code == 2


def test_parameters_must_be_a_mapping_of_a_known_type(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(UsageError, match="mapping"):
        params.load_params(tmp_path / "list.json")
    with pytest.raises(UsageError, match="unknown parameter file type"):
        params.load_params(tmp_path / "p.ini")
    with pytest.raises(UsageError, match="cannot read"):
        params.load_params(tmp_path / "missing.json")


def test_yaml_without_pyyaml_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now raises ImportError
    (tmp_path / "p.yaml").write_text("lr: 0.1\n")
    with pytest.raises(UsageError, match="pip install pyyaml.*JSON or TOML"):
        params.load_params(tmp_path / "p.yaml")


def test_key_value_arguments_take_json_literals_else_strings():
    args = ["lr=0.1", "epochs=10", "name=run one", "amp=true", "layers=[64, 32]", 'id="7"', "eq=a=b", "none=null"]
    assert params.parse_param_args(args) == {
        "lr": 0.1, "epochs": 10, "name": "run one", "amp": True, "layers": [64, 32], "id": "7",
        "eq": "a=b", "none": None,
    }
    for bad in ("lr", "=1"):
        with pytest.raises(UsageError, match="key=value"):
            params.parse_param_args([bad])


def test_environment_describes_this_interpreter_and_its_packages():
    env = provenance.environment()
    assert env["python_executable"] == sys.executable
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["cpu_count"] >= 1 and env["memory"] > 0 and env["hostname"]
    assert "click" in env["packages"] and "sqlite-utils" in env["packages"]
    assert env["packages_sha256"] == provenance.packages_sha256(env["packages"])


def test_package_hash_depends_on_content_not_order():
    a = provenance.packages_sha256({"numpy": "2.0", "torch": "2.3"})
    assert a == provenance.packages_sha256({"torch": "2.3", "numpy": "2.0"})
    assert a != provenance.packages_sha256({"numpy": "2.1", "torch": "2.3"})


def test_file_hashes_and_info(tmp_path):
    data = b"step,loss\n" + b"1,0.5\n" * 300_000  # several read chunks
    (tmp_path / "out.csv").write_bytes(data)
    assert provenance.hash_file(tmp_path / "out.csv") == hashlib.sha256(data).hexdigest()
    assert provenance.file_info(tmp_path / "out.csv") == {
        "path": str(tmp_path / "out.csv"),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "media_type": "text/csv",
    }


def test_labels_are_twelve_hex_chars_distinct_per_launch():
    launch = {"argv": ["python", "train.py"], "host": "local"}
    first, second = provenance.make_label(launch), provenance.make_label(launch)
    assert len(first) == 12 and int(first, 16) >= 0
    assert first != second
    assert provenance.make_label(launch, nonce="n") == provenance.make_label(dict(reversed(launch.items())), nonce="n")


# -- outputs: what a job made, scanned on the host ----------------------------------------

SINCE_NS = 1_700_000_000 * 10**9


def _touch(path, data: bytes, mtime_ns: int):
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def _scan(root, since_file) -> list:
    """``provenance.py end`` in a subprocess, so that a hang fails instead of blocking."""
    done = subprocess.run([sys.executable, provenance.__file__, "end", str(root), str(since_file)],
                          capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout)["outputs"]


def test_outputs_lists_new_regular_files_only_and_never_opens_the_rest(tmp_path):
    root, outside = tmp_path / "work", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    since_file = tmp_path / "pid"
    _touch(since_file, b"1\n", SINCE_NS)
    _touch(root / "at_since.csv", b"a,b\n", SINCE_NS)
    (root / "sub").mkdir()
    _touch(root / "sub" / "model.bin", b"\0" * 3_000_000, SINCE_NS + 5)
    _touch(root / "old.txt", b"old", SINCE_NS - 1)  # one nanosecond too early
    os.mkfifo(root / "pipe")  # opening it to hash would block for ever
    server = socket.socket(socket.AF_UNIX)
    try:
        os.chdir(root)  # a short relative path: AF_UNIX paths are limited to ~108 bytes
        server.bind("sock")
    finally:
        os.chdir(tmp_path)
    _touch(outside / "secret.txt", b"not an output", SINCE_NS + 9)
    os.symlink(outside / "secret.txt", root / "link.txt")
    os.symlink(outside, root / "linked_dir")  # a symlinked folder is not walked
    for special in ("pipe", "sock", "link.txt", "linked_dir"):
        os.utime(root / special, ns=(SINCE_NS + 1, SINCE_NS + 1), follow_symlinks=False)
    try:
        found = _scan(root, since_file)
    finally:
        server.close()
    assert found == [
        {"path": "at_since.csv", "size": 4, "sha256": hashlib.sha256(b"a,b\n").hexdigest(), "media_type": "text/csv"},
        {"path": os.path.join("sub", "model.bin"), "size": 3_000_000,
         "sha256": hashlib.sha256(b"\0" * 3_000_000).hexdigest(), "media_type": mimetypes.guess_type("model.bin")[0]},
    ]


def test_outputs_stops_when_its_time_is_up(tmp_path):
    _touch(tmp_path / "new.txt", b"new", SINCE_NS)
    assert provenance.outputs(str(tmp_path), SINCE_NS, deadline_s=0) == [
        {"path": None, "note": "stopped looking after 0 s"}
    ]
    assert provenance.outputs(str(tmp_path), SINCE_NS)[0]["path"] == "new.txt"
    assert provenance.MAX_SECONDS == 60.0


def test_hashing_stops_at_its_deadline(tmp_path):
    data = b"x" * (3 << 20)
    _touch(tmp_path / "big", data, SINCE_NS)
    assert provenance.hash_file(tmp_path / "big", deadline=time.monotonic()) is None
    assert provenance.hash_file(tmp_path / "big", deadline=time.monotonic() + 60) == hashlib.sha256(data).hexdigest()


def test_outputs_keeps_its_count_and_size_caps(tmp_path, monkeypatch):
    for i in range(5):
        _touch(tmp_path / f"f{i}.txt", b"x" * 10, SINCE_NS)
    monkeypatch.setattr(provenance, "MAX_OUTPUTS", 3)
    monkeypatch.setattr(provenance, "MAX_HASHED", 25)
    found = provenance.outputs(str(tmp_path), SINCE_NS)
    assert [entry["path"] for entry in found] == ["f0.txt", "f1.txt", "f2.txt", None]
    assert found[1]["sha256"] == hashlib.sha256(b"x" * 10).hexdigest()
    assert found[2]["sha256"] is None and found[2]["note"] == "not hashed: over the cap"
    assert found[3] == {"path": None, "note": "2 more changed files not listed (cap 3)"}


def test_outputs_skips_hidden_and_tool_folders(tmp_path, monkeypatch):
    for folder in (".git", "__pycache__", "node_modules", "keep"):
        (tmp_path / folder).mkdir()
        _touch(tmp_path / folder / "x.txt", b"x", SINCE_NS)
    assert [entry["path"] for entry in provenance.outputs(str(tmp_path), SINCE_NS)] == [os.path.join("keep", "x.txt")]
    monkeypatch.setattr(provenance, "MAX_WALK", 0)
    assert provenance.outputs(str(tmp_path), SINCE_NS)[-1] == {"path": None, "note": "stopped looking after 0 files"}


def test_outputs_skips_a_file_that_vanishes_and_reports_one_it_cannot_read(tmp_path, monkeypatch):
    _touch(tmp_path / "gone.txt", b"a", SINCE_NS)
    _touch(tmp_path / "locked.txt", b"b", SINCE_NS)
    real_open = os.open

    def racing_open(path, flags, *args):
        if path.endswith("gone.txt"):
            os.unlink(path)  # removed between the lstat and the open
        if path.endswith("locked.txt"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(provenance.os, "open", racing_open)
    assert provenance.outputs(str(tmp_path), SINCE_NS) == [
        {"path": "locked.txt", "size": 1, "sha256": None, "media_type": "text/plain", "error": "Permission denied"}
    ]
