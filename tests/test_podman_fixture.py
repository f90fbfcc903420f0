"""Smoke tests of the podman fixture: rootless containers run for the sshd host's user,
over real ssh, the way ``simtui run --image`` will run them."""

from __future__ import annotations

import json
import os
import re
import shlex
import time
import tomllib
import uuid
from pathlib import Path

from podman import run_as


def _ok(done):
    assert done.returncode == 0, f"{done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_a_container_runs_over_ssh(podman_lab):
    assert _ok(podman_lab.ssh(f"podman run --rm {podman_lab.image} /bin/busybox echo hi")) == "hi\n"
    # Rootless: the engine runs as the user, not root.
    assert _ok(podman_lab.ssh("podman info --format '{{.Host.Security.Rootless}}'")).strip() == "true"
    assert _ok(run_as(podman_lab.host.user, "podman", "image", "exists", podman_lab.image)) == ""


def test_a_locally_built_image_has_an_id_and_a_digest(podman_lab):
    image = podman_lab.image
    image_id = _ok(podman_lab.ssh(f"podman image inspect --format '{{{{.Id}}}}' {image}")).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", image_id) and image_id == podman_lab.image_id
    digest = _ok(podman_lab.ssh(f"podman image inspect --format '{{{{.Digest}}}}' {image}")).strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest) and digest == podman_lab.digest
    # Built here, never pushed or pulled, it still has a repo digest: its name with the
    # manifest digest. The id is the config's sha256, the digest the manifest's.
    repo_digests = json.loads(_ok(podman_lab.ssh(f"podman image inspect --format '{{{{json .RepoDigests}}}}' {image}")))
    assert repo_digests == [f"localhost/busybox@{digest}"]
    assert digest != f"sha256:{image_id}"
    # The build is reproducible: created at the epoch.
    assert _ok(podman_lab.ssh(f"podman image inspect --format '{{{{.Created.Unix}}}}' {image}")).strip() == "0"
    # A container records the id of the image it ran (not the digest).
    name = f"simtui-digest-{uuid.uuid4().hex[:8]}"
    _ok(podman_lab.ssh(f"podman run --name {name} {image} /bin/busybox true"))
    try:
        shown = _ok(podman_lab.ssh(f"podman container inspect --format '{{{{.Image}}}} {{{{.ImageName}}}}' {name}"))
        assert shown.split() == [image_id, image]
    finally:
        podman_lab.ssh(f"podman rm -f {name}")
    # The digest names the image too.
    assert _ok(podman_lab.ssh(f"podman run --rm localhost/busybox@{digest} /bin/busybox echo by-digest")) == "by-digest\n"


def test_keep_id_keeps_the_users_uid(podman_lab):
    uid = _ok(podman_lab.ssh("id -u")).strip()
    assert int(uid) == os.stat(podman_lab.host.home).st_uid
    image = podman_lab.image
    assert _ok(podman_lab.ssh(f"podman run --rm --userns=keep-id {image} /bin/busybox id -u")).strip() == uid
    assert _ok(podman_lab.ssh(f"podman run --rm --userns=keep-id {image} /bin/busybox id -g")).strip() == \
        _ok(podman_lab.ssh("id -g")).strip()
    # Without it the user is root inside (mapped to the user outside).
    assert _ok(podman_lab.ssh(f"podman run --rm {image} /bin/busybox id -u")).strip() == "0"


def test_a_folder_of_the_home_mounted_at_its_own_path(podman_lab):
    home = Path(podman_lab.host.home)
    folder = home / f"simtui-podman-{uuid.uuid4().hex[:8]}"
    q = shlex.quote(str(folder))
    try:
        _ok(podman_lab.ssh(f"mkdir -p {q} && echo in > {q}/in.txt"))
        for userns, name in (("--userns=keep-id", "keep-id.txt"), ("", "default.txt")):
            script = f"cat in.txt; pwd; /bin/busybox id -u > {name}"
            out = _ok(podman_lab.ssh(
                f"podman run --rm {userns} -v {q}:{q} -w {q} {podman_lab.image} "
                f"/bin/busybox sh -c {shlex.quote(script)}"))
            assert out.split() == ["in", str(folder)], out
            written = folder / name
            assert written.stat().st_uid == os.stat(home).st_uid  # the user's file, either way
            assert written.stat().st_gid == os.stat(home).st_gid
        assert (folder / "keep-id.txt").read_text().strip() == str(os.stat(home).st_uid)
        assert (folder / "default.txt").read_text().strip() == "0"
    finally:
        podman_lab.ssh(f"rm -rf {q}")


def test_a_running_container_stops_and_is_killed_by_name(podman_lab):
    image = podman_lab.image
    tag = uuid.uuid4().hex[:8]
    plain, init, killed = (f"simtui-{what}-{tag}" for what in ("stop", "stop-init", "kill"))
    try:
        for name, options in ((plain, ""), (init, "--init"), (killed, "")):
            _ok(podman_lab.ssh(f"podman run -d --name {name} {options} {image} /bin/busybox sleep 60"))
            assert _ok(podman_lab.ssh(f"podman inspect --format '{{{{.State.Status}}}}' {name}")).strip() == "running"

        took = {}
        for name, command in ((plain, "stop -t 1"), (init, "stop -t 1"), (killed, "kill")):
            start = time.monotonic()
            _ok(podman_lab.ssh(f"podman {command} {name}"))
            took[name] = time.monotonic() - start
        print(f"over ssh: podman stop -t 1: {took[plain]:.2f}s; with --init: {took[init]:.2f}s; "
              f"podman kill: {took[killed]:.2f}s")

        def state(name):
            return _ok(podman_lab.ssh(
                f"podman inspect --format '{{{{.State.Status}}}} {{{{.State.ExitCode}}}}' {name}")).split()

        # The command is PID 1 in its container: it ignores TERM, so stop KILLs it after
        # the 1 s; with --init, podman's init forwards the TERM and the command ends at once.
        assert state(plain) == ["exited", "137"] and 1 <= took[plain] < 10
        assert state(init) == ["exited", "143"] and took[init] < took[plain]
        assert state(killed) == ["exited", "137"] and took[killed] < 10
    finally:
        podman_lab.ssh(f"podman rm -f {plain} {init} {killed}")


def test_the_config_names_the_box(podman_lab):
    config = tomllib.loads(podman_lab.config_toml(image_engine="podman"))
    assert config["local"] == {"enabled": False}
    (host,) = config["hosts"]
    assert host["name"] == "box" and host["port"] == podman_lab.host.port
    assert host["user"] == podman_lab.host.user and host["image_engine"] == "podman"
    assert "local" not in tomllib.loads(podman_lab.config_toml(local=True))
