"""Sync's pure parts, without a host: which files, manifests, plans, tar streams, paths."""

from __future__ import annotations

import hashlib
import io
import marshal
import os
import stat
import subprocess
import sys
import tarfile
import time

import pytest

from simtui.engine.project import inside
from simtui.engine.selection import Patterns, project_files
from simtui.engine.sync import Plan, hash_missing, plan, scan, tree_sha256
from simtui.engine.tarstream import header, tar_chunks
from simtui.engine.transfer import data_name
from simtui.errors import UsageError
from simtui.hosts import project_helper


def write(root, files: dict[str, str]) -> None:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


@pytest.mark.parametrize("pattern,path,is_dir,matched", [
    ("*.log", "a.log", False, True),
    ("*.log", "deep/down/b.log", False, True),
    ("/top.txt", "top.txt", False, True),
    ("/top.txt", "sub/top.txt", False, False),
    ("sub/x.txt", "sub/x.txt", False, True),
    ("sub/x.txt", "a/sub/x.txt", False, False),
    ("build/", "build/out/model.bin", False, True),
    ("build/", "build", False, False),  # a file named build is no folder
    ("build/", "build", True, True),
    ("docs/**/*.md", "docs/a/b/c.md", False, True),
    ("docs/**/*.md", "docs/c.md", False, True),
    ("**/cache", "x/y/cache", True, True),
    ("data?.csv", "data1.csv", False, True),
    ("data[0-4].csv", "data5.csv", False, False),
    ("data[!0-4].csv", "data5.csv", False, True),
    ("# a comment", "# a comment", False, False),
])
def test_patterns_follow_gitignore(pattern, path, is_dir, matched):
    assert Patterns([pattern]).match(path, is_dir) is matched


def test_the_last_matching_pattern_decides():
    patterns = Patterns(["*.csv", "!keep.csv"])
    assert patterns.match("drop.csv") and not patterns.match("keep.csv")


def test_a_git_checkout_sends_tracked_untracked_and_included_files_minus_excluded(tmp_path):
    write(tmp_path, {
        "train.py": "", "lib/model.py": "", "new.py": "", ".gitignore": "build/\n*.log\n",
        "build/model.bin": "", "build/tmp.o": "", "run.log": "", "secret.txt": "", "notes/a.md": "",
        ".simtui/include": "build/model.bin\n", ".simtui/exclude": "secret.txt\nnotes/\n",
        ".venv/bin/python": "", ".simtui-manifest": "",
    })
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "train.py", "lib/model.py", "secret.txt", ".gitignore"],
                   check=True)
    assert project_files(tmp_path) == [
        ".gitignore", ".simtui/exclude", ".simtui/include", "build/model.bin", "lib/model.py", "new.py", "train.py",
    ]


def test_outside_git_every_file_is_sent_minus_excluded(tmp_path):
    write(tmp_path, {"a.py": "", "sub/b.py": "", "out/big.bin": "", ".simtui/exclude": "out/\n",
                     ".git/HEAD": "", ".venv/bin/python": ""})
    os.symlink("a.py", tmp_path / "link.py")
    assert project_files(tmp_path) == [".simtui/exclude", "a.py", "link.py", "sub/b.py"]


def test_scan_keeps_hashes_only_of_what_did_not_change_since_the_last_scan(tmp_path):
    write(tmp_path, {"same.txt": "same", "changed.txt": "before"})
    os.symlink("same.txt", tmp_path / "link")
    old = scan(tmp_path, ["same.txt", "changed.txt", "gone.txt", "link"], {}, 0)
    assert set(old) == {"same.txt", "changed.txt", "link"} and {e[3] for e in old.values()} == {None}
    known = {path: entry[:3] + ["remembered"] for path, entry in old.items()}
    (tmp_path / "changed.txt").write_text("after!")
    later = time.time_ns() + 10 * 10**9  # a scan well after both files were written
    new = scan(tmp_path, ["same.txt", "changed.txt", "link"], known, later)
    assert new["same.txt"][3] == new["link"][3] == "remembered" and new["changed.txt"][3] is None
    hash_missing(tmp_path, new, ["changed.txt"])
    assert new["changed.txt"][3] == hashlib.sha256(b"after!").hexdigest()
    hash_missing(tmp_path, old, ["link"])
    assert old["link"][3] == hashlib.sha256(b"symlink\0same.txt").hexdigest()


def test_a_file_changed_just_before_the_last_scan_is_hashed_again(tmp_path):
    write(tmp_path, {"racy.txt": "x"})
    entry = scan(tmp_path, ["racy.txt"], {}, 0)["racy.txt"]
    known = {"racy.txt": entry[:3] + ["remembered"]}
    assert scan(tmp_path, ["racy.txt"], known, entry[1] + 1)["racy.txt"][3] is None
    assert scan(tmp_path, ["racy.txt"], known, entry[1] + 3 * 10**9)["racy.txt"][3] == "remembered"


def test_plan_sends_new_changed_mode_changed_and_stale_files_and_deletes_the_gone():
    local = {"new": [1, 1, 0o100644, "n"], "same": [1, 1, 0o100644, "s"], "edited": [1, 1, 0o100644, "e2"],
             "chmod": [1, 1, 0o100755, "c"], "stale": [1, 1, 0o100644, "t"]}
    remote = {"same": [1, 9, 0o100644, "s"], "edited": [1, 9, 0o100644, "e1"], "chmod": [1, 9, 0o100644, "c"],
              "stale": [1, 9, 0o100644, "t"], "deleted": [1, 9, 0o100644, "d"], "changed-there": [1, 9, 0o100644, "x"]}
    assert plan(local, remote, {"stale", "changed-there"}) == Plan(
        send=("chmod", "edited", "new", "stale"), delete=("deleted",), forget=("changed-there",))
    assert not plan(local, {p: [0, 0, *e[2:]] for p, e in local.items()})


def test_the_tree_hash_covers_paths_modes_and_contents_only():
    tree = {"a": [1, 1, 0o100644, "x"], "b": [2, 2, 0o100644, "y"]}
    assert tree_sha256(tree) == tree_sha256({"a": [7, 7, 0o100644, "x"], "b": [8, 8, 0o100644, "y"]})
    assert tree_sha256(tree) != tree_sha256({**tree, "a": [1, 1, 0o100755, "x"]})
    assert tree_sha256(tree) != tree_sha256({**tree, "a": [1, 1, 0o100644, "z"]})
    assert tree_sha256(tree) != tree_sha256({"c": tree["a"], "b": tree["b"]})


def test_both_ends_update_a_manifest_the_same_way():
    before = {"kept": [1, 2, 3, "k"], "deleted": [1, 2, 3, "d"], "resent": [1, 2, 3, "old"]}
    after = project_helper.updated(before, ["deleted"], {"resent": "new"}, {"resent": [4, 5, 6]})
    assert after == {"kept": [1, 2, 3, "k"], "resent": [4, 5, 6, "new"]}


def test_the_tar_stream_keeps_contents_modes_and_links_in_big_and_small_chunks(tmp_path):
    write(tmp_path, {"small.txt": "hello", "tool.sh": "#!/bin/sh\n"})
    (tmp_path / "big.bin").write_bytes(os.urandom(3 << 20))
    os.chmod(tmp_path / "tool.sh", 0o750)
    os.symlink("small.txt", tmp_path / "link")
    members = [(tmp_path / name, f"in/{name}") for name in ("small.txt", "tool.sh", "big.bin", "link")]
    sent = []
    chunks = list(tar_chunks(members, sent.append))
    assert len(chunks) > 2 and sent[-1] == 5 + 10 + (3 << 20)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        got = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("in/small.txt").read() == b"hello"
        assert tar.extractfile("in/big.bin").read() == (tmp_path / "big.bin").read_bytes()
    assert got["in/tool.sh"].mode == 0o750
    assert got["in/link"].issym() and got["in/link"].linkname == "small.txt"


@pytest.mark.parametrize("name,mode,size,mtime,link", [
    ("pkg/module.py", 0o644, 1234, 1_700_000_000, None),
    ("tool", 0o4755, 8**11 - 1, 8**11 - 1, None),  # the largest octal fields
    ("x" * 100, 0o600, 0, 0, None),
    ("link", 0o777, 0, 5, "../target"),
    ("x" * 101, 0o644, 1, 1, None),  # from here: a PAX header first, as tarfile writes it
    ("caf\u00e9.txt", 0o644, 1, 1, None),
    ("big", 0o644, 8**11, 1, None),
    ("old", 0o644, 1, -1, None),
    ("link", 0o777, 0, 5, "t" * 101),
])
def test_tar_headers_are_what_tarfile_writes(name, mode, size, mtime, link):
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.size = mode, mtime, size  # a link's size is 0
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    assert header(name, mode, size, mtime, link) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def test_the_tar_stream_hashes_what_it_holds_and_holds_the_sizes_scanned(tmp_path):
    write(tmp_path, {"same.txt": "same", "grew.txt": "grown since the scan", "shrank.txt": "ab"})
    os.symlink("same.txt", tmp_path / "link")
    scanned = {name: os.lstat(tmp_path / name) for name in ("same.txt", "link")}
    members = [(tmp_path / name, name, st.st_mode, st.st_size, st.st_mtime_ns) for name, st in scanned.items()]
    members += [(tmp_path / "grew.txt", "grew.txt", 0o100644, 5, 0), (tmp_path / "shrank.txt", "shrank.txt", 0o100600, 4, 0)]
    digests: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(b"".join(tar_chunks(members, None, digests)))) as tar:
        held = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        assert tar.getmember("shrank.txt").mode == 0o600 and tar.getmember("link").linkname == "same.txt"
    assert held == {"same.txt": b"same", "grew.txt": b"grown", "shrank.txt": b"ab\0\0"}
    assert digests == {**{name: hashlib.sha256(data).hexdigest() for name, data in held.items()},
                       "link": hashlib.sha256(b"symlink\0same.txt").hexdigest()}


def receive(root, *frames: bytes, mode: str = "--private") -> subprocess.CompletedProcess:
    """project_helper's ``receive`` as a host runs it, fed these frames."""
    source = open(project_helper.__file__).read()
    stdin = b"".join(b"%016d" % len(frame) + frame for frame in frames)
    return subprocess.run([sys.executable, "-S", "-c", source, mode, "receive", str(root)], input=stdin,
                          capture_output=True)


def test_receive_deletes_extracts_and_keeps_the_trailers_hashes_in_its_manifest(tmp_path):
    root = tmp_path / "project"
    write(root, {"old.txt": "old"})
    (tmp_path / "tool.sh").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "tool.sh", 0o755)
    tar = b"".join(tar_chunks([(tmp_path / "tool.sh", "bin/tool.sh")]))
    done = receive(root, b"v1\0D\0old.txt", tar[:700], tar[700:], b"", b"bin/tool.sh\0cafe")
    assert done.returncode == 0, done.stderr
    st = os.lstat(root / "bin/tool.sh")
    assert done.stdout == f"{st.st_size}\0{st.st_mtime_ns}\0{st.st_mode}\0".encode()
    assert stat.S_IMODE(st.st_mode) == 0o700 and not (root / "old.txt").exists()
    assert marshal.loads((root / project_helper.MANIFEST).read_bytes()) == {
        "version": "v1", "files": {"bin/tool.sh": [st.st_size, st.st_mtime_ns, st.st_mode, "cafe"]}}


def test_receive_of_a_broken_tar_fails_and_claims_no_file(tmp_path):
    root = tmp_path / "project"
    failed = receive(root, b"v2\0D\0gone.txt", b"not a tar archive" * 100, b"", b"x.txt\0beef")
    assert failed.returncode != 0
    assert marshal.loads((root / project_helper.MANIFEST).read_bytes()) == {"version": "", "files": {}}


def test_receive_of_nothing_changes_nothing(tmp_path):
    assert receive(tmp_path / "project", b"").returncode == 0
    assert not (tmp_path / "project").exists()


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "~/x", ""])
def test_paths_that_leave_the_project_folder_are_refused(path):
    with pytest.raises(UsageError, match="outside the project folder"):
        inside(path)


def test_paths_inside_are_normalised():
    assert inside("./results//run1/") == "results/run1"


@pytest.mark.parametrize("url,name", [
    ("https://example.org/sets/train.csv", "train.csv"),
    ("https://example.org/sets/train.csv?version=2#top", "train.csv"),
    ("http://127.0.0.1:8000/a%20b.bin", "a b.bin"),
])
def test_a_download_is_named_after_its_url(url, name):
    assert data_name(url) == name


@pytest.mark.parametrize("url", [
    "https://example.org/", "https://example.org/..", "https://example.org/x/%2E%2E",
    "https://example.org/a%2Fb", "file:///etc/passwd", "example.org/x.csv",
])
def test_a_url_that_names_no_file_in_data_is_refused(url):
    with pytest.raises(UsageError):
        data_name(url)
