"""Jobs in a container image (rootless podman for a real sshd host's user): the run
contract inside the image, the image pinned in the record, kill, rerun by id."""

from __future__ import annotations

import pytest

from clirun import popen, simtui, simtui_json
from sshd import wait_for

SHOW = ("/bin/busybox", "sh", "-c", 'echo "uid=$(id -u) pwd=$(pwd) label=$SIMTUI_LABEL run=$SIMTUI_RUN_DIR"; '
        '/bin/busybox cat "$SIMTUI_PARAMS"; echo made > out.txt')


@pytest.fixture
def box(podman_lab, tmp_path):
    podman_lab.config = podman_lab.quick_config(tmp_path / "config.toml")
    return podman_lab


def test_a_job_runs_in_its_image_as_the_user_with_its_folder_and_the_image_pinned(box):
    workdir = f"{box.host.home}/ctr"
    box.ssh(f"mkdir -p {workdir}")
    proc = simtui("run", "--host", "box", "--image", box.image, "--workdir", workdir, "-p", "lr=0.5", "--follow",
                  "--", *SHOW,
                  config=box.config, timeout=120)
    assert proc.returncode == 0, proc.stderr
    label = proc.stdout.splitlines()[0]
    uid = box.ssh("id -u").stdout.strip()
    record = simtui_json("show", label, config=box.config)
    assert f"uid={uid} pwd={workdir} label={label} run={record['run_dir']}" in proc.stdout
    assert '"lr": 0.5' in proc.stdout  # the merged parameters, read inside the image
    container = record["container"]
    assert container["engine"] == "podman" and container["image"] == box.image
    assert container["id"].startswith("sha256:") and container["pinned"] == container["id"]
    assert container["digest"] and container["digest"].startswith("sha256:")
    assert [o["path"] for o in record["outputs"]] == ["out.txt"]
    assert box.ssh(f"stat -c %U {workdir}/out.txt").stdout.strip() == box.host.user

    rerun = simtui("rerun", label, "--follow", config=box.config, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    again = simtui_json("show", rerun.stdout.splitlines()[0], config=box.config)
    assert again["spec"]["image"] == container["id"] and again["container"]["id"] == container["id"]


def test_kill_stops_the_container(box):
    follow = popen("run", "--host", "box", "--image", box.image, "--follow", "--",
                   "/bin/busybox", "sh", "-c", "echo up; exec /bin/busybox sleep 300", config=box.config)
    label = follow.stdout.readline().strip()
    assert follow.stdout.readline().strip() == "up"
    name = f"simtui-{label}"
    assert name in box.ssh("podman ps --format '{{.Names}}'").stdout
    assert simtui("kill", label, config=box.config).returncode == 0
    assert follow.wait(timeout=60) == 1
    wait_for(lambda: name not in box.ssh("podman ps -a --format '{{.Names}}'").stdout, timeout=30,
             what="the container to be gone")
    assert simtui_json("show", label, config=box.config)["state"] == "killed"


def test_a_missing_image_or_engine_is_one_line_and_exit_2(box, tmp_path):
    missing = simtui("run", "--host", "box", "--image", "localhost/nothing:here", "--", "true", config=box.config)
    assert missing.returncode == 2
    assert "no image localhost/nothing:here" in missing.stderr and "Traceback" not in missing.stderr
    other = box.write_config(tmp_path / "apptainer.toml", container="apptainer")
    engine = simtui("run", "--host", "box", "--image", box.image, "--", "true", config=other)
    assert engine.returncode == 2 and "apptainer is not installed" in engine.stderr
