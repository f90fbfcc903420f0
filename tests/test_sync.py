"""Code to the host: sync, run in the synced tree, and the stdin streams under it.

Against real sshd hosts. Each test has its own project (a random name), so its
folder on the shared hosts is its own; the folder is removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat

import pytest

from clirun import simtui, simtui_json
from projectkit import FILES, folder_on, git, host0, project, write  # noqa: F401  (host0, project: fixtures)
from simtui.engine.project import Project
from simtui.engine.sync import sync
from simtui.hosts import open_host
from simtui.model import LOCAL, HostKind, HostSpec


async def host_sync(host0, project: Project):
    async with open_host(host0.spec) as host:
        return await sync(host, project)


async def on_host(host0, *argv: str) -> str:
    async with open_host(host0.spec) as host:
        return await host.check(list(argv))


async def test_the_first_sync_sends_everything_then_only_what_changed(host0, project):
    first = await host_sync(host0, project)
    assert sorted(first.sent) == sorted(FILES) and first.files == len(FILES)
    assert (folder_on(host0, project) / "lib/model.py").read_text() == "DEPTH = 4\n"

    again = await host_sync(host0, project)
    assert again.sent == () and again.deleted == () and again.tree_sha256 == first.tree_sha256

    (project.root / "lib/model.py").write_text("DEPTH = 8\n")
    changed = await host_sync(host0, project)
    assert changed.sent == ("lib/model.py",) and changed.bytes_sent == len("DEPTH = 8\n")
    assert (folder_on(host0, project) / "lib/model.py").read_text() == "DEPTH = 8\n"
    assert changed.tree_sha256 != first.tree_sha256


async def test_deletions_propagate_and_nothing_else_there_is_touched(host0, project):
    await host_sync(host0, project)
    await on_host(host0, "sh", "-c", "cd simtui/projects/$1 && mkdir -p outputs .venv && echo r > outputs/result.txt",
                  "sh", project.name)
    os.remove(project.root / "lib/util/io.py")
    result = await host_sync(host0, project)
    assert result.deleted == ("lib/util/io.py",) and result.sent == ()
    folder = folder_on(host0, project)
    assert not (folder / "lib/util").exists()  # the folder it left empty goes too
    assert (folder / "lib/model.py").exists() and (folder / "outputs/result.txt").read_text() == "r\n"
    assert (folder / ".venv").is_dir()


async def test_modes_are_kept_and_a_mode_change_alone_is_sent(host0, project):
    await host_sync(host0, project)
    os.chmod(project.root / "train.py", 0o755)
    result = await host_sync(host0, project)
    assert result.sent == ("train.py",)
    assert stat.S_IMODE((folder_on(host0, project) / "train.py").stat().st_mode) == 0o700  # private: no share


async def test_a_file_changed_on_the_host_behind_our_back_is_sent_again(host0, project):
    await host_sync(host0, project)
    await on_host(host0, "sh", "-c", "echo edited >> simtui/projects/$1/README", "sh", project.name)
    result = await host_sync(host0, project)
    assert result.sent == ("README",)
    assert (folder_on(host0, project) / "README").read_text() == "x\n"


async def test_a_forgotten_local_memory_costs_no_resend(host0, project, simtui_env):
    first = await host_sync(host0, project)
    shutil.rmtree(simtui_env / "home" / "sync")  # the host's manifest is the truth
    again = await host_sync(host0, project)
    assert again.sent == () and again.tree_sha256 == first.tree_sha256


async def test_include_and_exclude_patterns_choose_what_goes(host0, project):
    write(project.root, {".gitignore": "build/\n", "build/model.bin": "m", "build/tmp.o": "t",
                         ".simtui/include": "build/model.bin\n", ".simtui/exclude": "secret.txt\n",
                         "secret.txt": "s"})
    await host_sync(host0, project)
    folder = folder_on(host0, project)
    assert (folder / "build/model.bin").exists()
    assert not (folder / "build/tmp.o").exists() and not (folder / "secret.txt").exists()


async def test_a_file_replaced_by_a_folder_and_a_link(host0, project):
    await host_sync(host0, project)
    os.remove(project.root / "README")
    write(project.root, {"README/index.md": "now a folder\n"})
    os.symlink("lib/model.py", project.root / "model_link.py")
    await host_sync(host0, project)
    folder = folder_on(host0, project)
    assert (folder / "README/index.md").read_text() == "now a folder\n"
    assert os.readlink(folder / "model_link.py") == "lib/model.py"


def test_sync_command_reports_what_crossed(lab, project):
    first = simtui_json("sync", "--host", "h0", config=lab.config, cwd=project.root)
    assert first["folder"] == f"~/simtui/projects/{project.name}" and len(first["sent"]) == len(FILES)
    proc = simtui("sync", "--host", "h0", "--progress", config=lab.config, cwd=project.root / "lib")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"h0:~/simtui/projects/{project.name}: 0 sent")
    assert simtui("sync", config=lab.config, cwd=project.root).returncode == 2  # which host?


def test_run_sync_runs_in_a_copy_of_the_synced_tree_and_records_where_the_code_came_from(lab, project):
    write(project.root, {"script.py": "import os; print('ran in', os.getcwd())\n"})
    proc = simtui("run", "--sync", "--host", "h0", "--follow", "--", "python3", "script.py",
                  config=lab.config, cwd=project.root)
    assert proc.returncode == 0, proc.stderr
    label, output = proc.stdout.split("\n", 1)
    run_dir = folder_on(lab.hosts[0], project) / ".simtui-runs" / label
    assert output == f"ran in {run_dir}\n"
    assert (run_dir / "lib/model.py").read_text() == FILES["lib/model.py"]
    record = simtui_json("show", label, config=lab.config)
    synced = simtui_json("sync", "--host", "h0", config=lab.config, cwd=project.root)
    assert record["workdir"] == f"~/simtui/projects/{project.name}/.simtui-runs/{label}"
    assert record["run_dir"] == str(run_dir) and record["project"] == project.name
    assert record["git"]["tree_sha256"] == synced["tree_sha256"]
    assert record["git"]["commit"] == git(project.root, "rev-parse", "HEAD").strip()
    assert record["git"]["untracked"] == ["script.py"] and record["git"]["dirty"]
    assert record["environment"]["python"]  # captured on the host all the same
    refused = simtui("run", "--sync", "--require-clean", "--host", "h0", "--", "true",
                     config=lab.config, cwd=project.root)
    assert refused.returncode == 2 and "script.py" in refused.stderr


# -- the stdin stream under sync ------------------------------------------------


@pytest.fixture(params=["local", "ssh"])
def spec(request, lab):
    return HostSpec(name=LOCAL, kind=HostKind.LOCAL) if request.param == "local" else lab.hosts[1].spec


async def chunks(*parts: bytes):
    for part in parts:
        yield part


async def test_run_with_input_streams_stdin(spec):
    big = os.urandom(5 << 20)
    async with open_host(spec) as host:
        result = await host.run_with_input(["sh", "-c", "wc -c; echo done >&2"], chunks(big[:7], big[7:]))
    assert result.ok and result.stdout.split() == [str(len(big))] and result.stderr == "done\n"


async def test_a_command_that_stops_reading_ends_the_stream_with_its_status(spec):
    async with open_host(spec) as host:
        result = await host.run_with_input(["sh", "-c", "head -c 3; exit 4"], chunks(*[b"x" * (1 << 20)] * 64))
    assert result.exit_status == 4 and result.stdout == "xxx"


async def test_an_error_making_the_input_stops_the_command_and_propagates(spec):
    async def broken():
        yield b"some"
        raise OSError("disk gone")

    async with open_host(spec) as host:
        with pytest.raises(OSError, match="disk gone"):
            await asyncio.wait_for(host.run_with_input(["cat"], broken()), 30)
        assert (await host.run(["true"])).ok  # the connection is fine
