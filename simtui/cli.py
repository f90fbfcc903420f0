"""The command line: a thin shell over the engine and the store.

A contract for scripts (see DESIGN.md): names, flags, ``--json`` output and
exit codes (0 ok, 1 job failed / none fits, 2 usage or config error, 3 host
unreachable) stay stable. Heavy imports (textual, asyncssh) happen only in the
commands that need them.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

import click

from simtui import __version__
from simtui.config import Config, load_config
from simtui.errors import SimtuiError
from simtui.textfmt import table, to_json


class Obj:
    """Per-invocation state; the config is read on first use so --help never fails."""

    def __init__(self, config_file: str | None) -> None:
        self.config_file = config_file
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_file)
        return self._config


class SimtuiGroup(click.Group):
    """Turns SimtuiErrors into one line on stderr and their exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SimtuiError as err:
            click.echo(f"simtui: {err}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("simtui: interrupted", err=True)
            ctx.exit(130)


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def echo_json(data: Any) -> None:
    click.echo(to_json(data))


pass_obj = click.make_pass_decorator(Obj)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


@click.group(cls=SimtuiGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    envvar="SIMTUI_CONFIG",
    metavar="FILE",
    help="Config file (TOML). Env: SIMTUI_CONFIG. Default: the user config dir, else this machine alone.",
)
@click.version_option(__version__, "-V", "--version", prog_name="simtui")
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """Run simulations and training jobs on several machines over SSH.

    With no command, opens the dashboard. Records and logs live in
    $SIMTUI_HOME (default: the platform's user data dir).
    """
    ctx.obj = Obj(config_file)
    if ctx.invoked_subcommand is None:
        ctx.invoke(ui)


@main.command()
@pass_obj
def ui(obj: Obj) -> None:
    """The full-screen dashboard (the default command)."""
    from simtui.ui.app import SimtuiApp

    SimtuiApp(obj.config).run()


@main.command()
@click.argument("names", nargs=-1, metavar="[HOST]...")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=None, help="Seconds per host (default: config).")
@json_option
@pass_obj
def hosts(obj: Obj, names: tuple[str, ...], timeout: float | None, as_json: bool) -> None:
    """Configured hosts and whether each can be reached, checked at once.

    Exits 3 when a HOST named on the command line is down.
    """
    from simtui.engine.status import check_hosts

    config = obj.config
    specs = [config.host(n) for n in names] if names else list(config.hosts)
    statuses = run_async(check_hosts(specs, timeout or config.defaults.timeout))
    if as_json:
        echo_json([s.to_dict() for s in statuses])
    else:
        rows = [
            (s.name, s.kind.value, s.address, s.state.value,
             f"{s.latency_ms:.0f} ms" if s.latency_ms is not None else None, s.reason or "")
            for s in statuses
        ]
        click.echo(table(["host", "kind", "address", "state", "latency", "reason"], rows))
    if names and any(s.state.value != "up" for s in statuses):
        sys.exit(3)
