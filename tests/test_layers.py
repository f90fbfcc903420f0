"""The layers of DESIGN.md, enforced: arrows point down only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "simtui"


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it: ``from a import b`` counts as
    ``a`` and ``a.b`` (b may be a module); relative imports resolved."""
    package = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)[:-1]  # the package it is in
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module:
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


MODULES = {p.relative_to(PACKAGE.parent).as_posix(): imports_of(p) for p in PACKAGE.rglob("*.py")}

# (module path prefix, imported package prefix that it must not use)
FORBIDDEN = [
    ("simtui/engine/", "simtui.ui"),
    ("simtui/hosts/", "simtui.engine"),
    ("simtui/hosts/", "simtui.store"),
    ("simtui/hosts/", "simtui.ui"),
    ("simtui/store/", "simtui.engine"),
    ("simtui/store/", "simtui.hosts"),
    ("simtui/store/", "simtui.ui"),
    ("simtui/provenance.py", "simtui.engine"),
    ("simtui/config.py", "simtui.engine"),
    # the server is above the engine, the client above nothing but the protocol
    ("simtui/engine/", "simtui.server"),
    ("simtui/engine/", "simtui.client"),
    ("simtui/hosts/", "simtui.server"),
    ("simtui/store/", "simtui.server"),
    ("simtui/client.py", "simtui.server.hub"),
    ("simtui/client.py", "simtui.server.requests"),
    ("simtui/client.py", "simtui.server.daemon"),
    ("simtui/client.py", "simtui.engine.jobs"),
]


def uses(imported: set[str], package: str) -> bool:
    return any(name == package or name.startswith(package + ".") for name in imported)


# The dashboard is a client of the server (DESIGN.md, "The server: one owner of the
# truth"): it never holds a host connection, a job's local log or an engine of its own.
NOT_IN_THE_UI = ["simtui.hosts", "simtui.store.logs", "simtui.engine.jobs", "simtui.engine.pool",
                 "simtui.engine.watch", "simtui.engine.sampler"]


def test_only_the_ui_imports_textual():
    offenders = [m for m, imp in MODULES.items() if uses(imp, "textual") and not m.startswith("simtui/ui/")]
    assert offenders == []


def test_only_hosts_ssh_imports_asyncssh():
    offenders = [m for m, imp in MODULES.items() if uses(imp, "asyncssh") and m != "simtui/hosts/ssh.py"]
    assert offenders == []


@pytest.mark.parametrize("where,package", FORBIDDEN)
def test_arrows_point_down(where, package):
    offenders = [m for m, imp in MODULES.items() if m.startswith(where) and uses(imp, package)]
    assert offenders == []


@pytest.mark.parametrize("module", ["simtui/model.py", "simtui/units.py", "simtui/errors.py"])
def test_base_modules_are_stdlib_only(module):
    outside = {
        name for name in MODULES[module]
        if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] not in ("simtui", "__future__")
    }
    assert outside == set()


def test_command_line_start_up_imports_neither_textual_nor_asyncssh():
    code = "import sys, simtui.cli, simtui.engine.status; print(sorted(m for m in ('textual', 'asyncssh') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("module", ["simtui/provenance.py", "simtui/hosts/agent.py", "simtui/hosts/project_helper.py"])
def test_files_that_run_on_hosts_need_only_the_standard_library(module):
    """They are uploaded and run by the host's own python3: nothing of simtui's is there."""
    optional = {"pynvml", "agent"}  # shipped beside them, imported only when present
    outside = {
        name for name in MODULES[module]
        if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] not in optional | {"__future__"}
    }
    assert outside == set()


@pytest.mark.parametrize("package", NOT_IN_THE_UI)
def test_no_ui_module_imports_what_the_server_owns(package):
    offenders = [m for m, imp in MODULES.items() if m.startswith("simtui/ui/") and uses(imp, package)]
    assert offenders == []


def test_the_dashboard_loads_no_engine_host_connection_or_server():
    """What importing the dashboard loads, imports of imports included. Of simtui.hosts
    only the pure helpers that finding the project (engine.project) needs may come along."""
    code = "import sys, simtui.ui.app; print('\\n'.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    helpers = {"simtui.hosts", "simtui.hosts.base", "simtui.hosts.project_helper"}
    offenders = [m for m in loaded if m not in helpers and (
        any(uses({m}, package) for package in NOT_IN_THE_UI) or uses({m}, "asyncssh")
        or (uses({m}, "simtui.server") and m not in ("simtui.server", "simtui.server.protocol")))]
    assert offenders == []
    assert "simtui.client" in loaded


def test_what_differs_between_kinds_of_host_lives_in_the_host_classes():
    """No ``kind`` checks above simtui/hosts: the engine and the server ask the Host."""
    offenders = [m for m, imp in MODULES.items() if m.startswith(("simtui/engine/", "simtui/server/"))
                 and "HostKind" in (PACKAGE.parent / m).read_text()]
    assert offenders == []


def test_every_shell_script_that_runs_on_a_host_lives_in_hosts():
    """A module-level string that reads its arguments ($1, $@) is a script for a host."""
    offenders = []
    for module in MODULES:
        if module.startswith("simtui/hosts/"):
            continue
        for node in ast.parse((PACKAGE.parent / module).read_text()).body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str) and (
                    "$1" in value.value or '"$@"' in value.value):
                offenders.append(module)
    assert offenders == []
