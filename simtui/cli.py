"""The command line: a thin shell over the engine and the store.

A contract for scripts (see DESIGN.md): names, flags, ``--json`` output and
exit codes (0 ok, 1 job failed / none fits, 2 usage or config error, 3 host
unreachable) stay stable. Heavy imports (textual, asyncssh) happen only in the
commands that need them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from simtui import __version__
from simtui.config import Config, load_config
from simtui.errors import SimtuiError, UsageError
from simtui.hosts.base import LineSplitter
from simtui.model import SWEEP_PREFIX, HostSpec, JobSpec, JobState, ProbeResult, Record
from simtui.textfmt import table, to_json
from simtui.textsafe import one_line, sanitize, sanitize_bytes

if TYPE_CHECKING:
    from simtui.client import Client
    from simtui.store import Store


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

    def hosts(self, names: Sequence[str]) -> list[HostSpec]:
        """The hosts named (each must be configured), else every configured host."""
        return [self.config.host(n) for n in names] if names else list(self.config.hosts)


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
        except BrokenPipeError:  # `simtui list | head`: the reader left; nothing to say
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(1)
        except (OSError, RecursionError) as err:  # a fault no command turned into a SimtuiError
            fault = _fault(err)
            click.echo(f"simtui: {fault}", err=True)
            ctx.exit(fault.exit_code)
        except Exception as err:
            sqlite3 = sys.modules.get("sqlite3")
            if sqlite3 is None or not isinstance(err, sqlite3.Error):
                raise
            from simtui.store.db import records_error

            fault = records_error(err, None)
            if fault is None:
                raise
            click.echo(f"simtui: {fault}", err=True)
            ctx.exit(fault.exit_code)


def _fault(err: OSError | RecursionError) -> SimtuiError:
    """One line for a file simtui could not use (or input too deeply nested)."""
    if isinstance(err, RecursionError):
        return UsageError("input nested too deeply to read")
    from simtui.store.db import file_error

    return file_error(err, err.filename or "a file")


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    import asyncio  # here: ~40 ms that the record commands do not need

    return asyncio.run(coro)


def as_text(arg: str) -> str:
    """A command-line argument as text to store: bytes that are not UTF-8 (which
    Python keeps as lone surrogates) become U+FFFD."""
    return arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def echo_json(data: Any) -> None:
    click.echo(to_json(data))


pass_obj = click.make_pass_decorator(Obj)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
host_names = click.argument("names", nargs=-1, metavar="[HOST]...")
timeout_option = click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=None, help="Seconds per host (default: config)."
)


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
@host_names
@timeout_option
@json_option
@pass_obj
def hosts(obj: Obj, names: tuple[str, ...], timeout: float | None, as_json: bool) -> None:
    """Configured hosts and whether each can be reached, checked at once.

    Exits 3 when a HOST named on the command line is down.
    """
    from simtui.engine.status import check_hosts

    statuses = run_async(check_hosts(obj.hosts(names), timeout or obj.config.defaults.timeout))
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


@main.command()
@host_names
@timeout_option
@json_option
@pass_obj
def probe(obj: Obj, names: tuple[str, ...], timeout: float | None, as_json: bool) -> None:
    """One sample of every host's resources (or the HOSTs named), taken at once.

    Exits 3 when a HOST named on the command line gives no sample.
    """
    from simtui.engine.sampler import probe_hosts

    results = run_async(probe_hosts(obj.hosts(names), timeout or obj.config.defaults.timeout))
    if as_json:
        echo_json([r.to_dict() for r in results])
    else:
        headers = ["host", "state", "cpus", "cpu", "load", "mem used/total", "disk free", "gpus", "reason"]
        click.echo(table(headers, [row for r in results for row in _probe_rows(r)]))
    if names and any(r.sample is None for r in results):
        sys.exit(3)


def _probe_rows(result: ProbeResult) -> list[tuple[Any, ...]]:
    """The host's row; a cluster's partitions, one row each (CPUs and GPUs idle of all)."""
    s = result.sample
    if s is None or not s.partitions:
        return [_probe_row(result)]
    return [(f"{result.spec.name}/{p.name}" + ("*" if p.default else ""), result.state.value if p.up else "down",
             f"{p.cpus_idle}/{p.cpus_total} idle", None, None, None, None,
             f"{p.gpus_free}/{p.gpus_total} free" if p.gpus_total else None,
             f"{p.pending} pending, {p.mine_running} of yours running") for p in s.partitions]


def _probe_row(result: ProbeResult) -> tuple[Any, ...]:
    from simtui.units import format_size

    s = result.sample
    if s is None:
        return (result.spec.name, result.state.value, *[None] * 6, result.reason or "")
    gpus = None
    if s.gpus:
        free = [g.mem_free for g in s.gpus if g.mem_free is not None]
        gpus = f"{len(s.gpus)}x {' + '.join(sorted({g.name for g in s.gpus}))}"
        gpus += f", {format_size(sum(free))} free" if free else ""
    return (
        result.spec.name,
        result.state.value,
        s.cpu_count,
        None if s.cpu_percent is None else f"{s.cpu_percent:.0f}%",
        " ".join(f"{v:.2f}" for v in s.load) if s.load else None,
        f"{format_size(s.mem_used)}/{format_size(s.mem_total)}",
        format_size(s.disk_free),
        gpus,
        result.reason or "",
    )


def needs_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--cpus --mem --gpus --gpu-mem --disk: what a job needs of a host."""
    options = [
        click.option("--cpus", metavar="N", help="Idle CPUs the job needs, e.g. 2 or 0.5."),
        click.option("--mem", metavar="SIZE", help="Available memory, e.g. 4G."),
        click.option("--gpus", metavar="N", help="GPUs (each with --gpu-mem free, when given)."),
        click.option("--gpu-mem", metavar="SIZE", help="Free memory per GPU, e.g. 1.5G; alone it asks for 1 GPU."),
        click.option("--disk", metavar="SIZE", help="Free disk in the work dir, e.g. 3G."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command()
@needs_options
@timeout_option
@json_option
@pass_obj
def place(obj: Obj, cpus: str | None, mem: str | None, gpus: str | None, gpu_mem: str | None,
          disk: str | None, timeout: float | None, as_json: bool) -> None:
    """The best-fit host for these needs, and why each other host is not.

    Probes every configured host. Exits 1 when no host fits.
    """
    from simtui.engine import placement
    from simtui.engine.sampler import probe_hosts

    needs = placement.parse_needs(cpus, mem, gpus, gpu_mem, disk)
    config = obj.config
    results = run_async(probe_hosts(list(config.hosts), timeout or config.defaults.timeout))
    chosen = placement.place(needs, results)
    if as_json:
        echo_json(chosen.to_dict())
    else:
        click.echo(chosen.why)
        states = {r.spec.name: r.state.value for r in results}  # a cluster's partitions: CLUSTER/PARTITION
        rows = [(name, states[name.split("/", 1)[0]], reason) for name, reason in chosen.reasons.items()]
        click.echo(table(["host", "state", "reason"], rows))
    if chosen.host is None:
        sys.exit(1)


# -- records ---------------------------------------------------------------------


def open_store() -> Store:
    """The records log ($SIMTUI_HOME/records.db), opened only by the commands that use it."""
    from simtui.store import Store, db

    db.on_lock_wait = say_waiting
    return Store.open()


def sweep_id(store: Store, name: str) -> str:
    """The sweep ``name`` starts; a UsageError saying so where none does."""
    found = store.sweep_of(name)
    if found is None:
        raise UsageError(f"no sweep {name!r} (a sweep id starts with {SWEEP_PREFIX!r}; `simtui list` shows them)")
    return found


def say_waiting(message: str) -> None:
    """A write waits for the records' lock (another process holds it): say so, once."""
    click.echo(f"simtui: {message}", err=True)


@main.command("list")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Only records with this tag (repeat: all of them).")
@click.option("--state", type=click.Choice([s.value for s in JobState]), help="Only records in this state.")
@click.option("--host", help="Only records of runs on this host.")
@click.option("--search", metavar="WORDS", help="Full-text search over command, tags, reason and notes.")
@click.option("--since", metavar="WHEN", help="Created since an ISO date (2024-05-01) or an age (2h, 3d).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True, help="At most N records; 0: all.")
@click.option("--sweep", metavar="SWEEP", help="Only the runs of this sweep (its id, or a unique start of it).")
@json_option
def list_(tags: tuple[str, ...], state: str | None, host: str | None, search: str | None,
          since: str | None, limit: int, sweep: str | None, as_json: bool) -> None:
    """Records of runs, newest first."""
    from simtui.recordfmt import records_table
    from simtui.store import parse_since
    from simtui.store.export import Chunked, widen_pipe, write_list

    after = parse_since(since) if since else None
    store, out = open_store(), click.get_text_stream("stdout")
    filters = {"tags": tags, "state": state, "host": host, "search": search, "since": after, "limit": limit or None,
               "sweep": sweep_id(store, sweep) if sweep else None}
    widen_pipe(out)
    with store.snapshot():
        if as_json:
            write_list(store, out, **filters)
            return
        lines = records_table(store, **filters)  # its cells went through textsafe.one_line
        header = next(lines, None)
        with Chunked(out) as chunks:
            chunks.write("no records\n" if header is None else f"{header}\n")
            chunks.writelines(f"{line}\n" for line in lines)


@main.command()
@click.argument("name", metavar="LABEL|SWEEP")
@click.option("--key", "-k", "keys", multiple=True, metavar="KEY", help="Only this metric (repeatable).")
@click.option("--csv", "as_csv", is_flag=True, help="Every point: label, key, step, value, time (CSV).")
@json_option
def metrics(name: str, keys: tuple[str, ...], as_csv: bool, as_json: bool) -> None:
    """The metrics a run's log printed (`key=value`, `key: value`, JSON lines, or the
    project's `.simtui/metrics` patterns), or every run's of a sweep: a summary
    table, every point with --csv, series with --json."""
    import csv

    store = open_store()
    if name.startswith(SWEEP_PREFIX):
        records = list(reversed(list(store.find(sweep=sweep_id(store, name), limit=None))))
    else:
        records = [store.get(name)]
    series = store.series([r.label for r in records], keys)
    if as_json:
        echo_json({label: {key: [list(point) for point in points] for key, points in found.items()}
                   for label, found in series.items()})
    elif as_csv:
        out = csv.writer(click.get_text_stream("stdout"), lineterminator="\n")
        out.writerow(["label", "key", "step", "value", "time"])
        out.writerows([label, key, step, value, when] for label, found in series.items()
                      for key, points in found.items() for step, value, when in points)
    else:
        rows = [(label, one_line(key), f"{points[-1][1]:.6g}", f"{min(v for _, v, _ in points):.6g}",
                 f"{max(v for _, v, _ in points):.6g}", f"{points[-1][0]:g}", len(points))
                for label, found in series.items() for key, points in found.items()]
        click.echo(table(["label", "key", "last", "min", "max", "last step", "points"], rows) if rows
                   else "no metrics (a job's lines like `step=1 loss=0.5` are metrics)")


@main.command()
@click.argument("label")
@json_option
def show(label: str, as_json: bool) -> None:
    """The whole record of one run. LABEL may be any unique prefix."""
    from simtui.recordfmt import record_text

    store = open_store()
    record = store.get(label)
    events = store.events(record.label)
    if as_json:
        echo_json({**record.to_dict(), "events": [e.to_dict() for e in events]})
    else:
        click.echo(sanitize(record_text(record, events)))


@main.command()
@click.argument("label_a", metavar="LABEL")
@click.argument("label_b", metavar="LABEL")
@json_option
def diff(label_a: str, label_b: str, as_json: bool) -> None:
    """What differs between two runs: parameters, code, environment, files."""
    from simtui.recordfmt import diff_text
    from simtui.store.diff import diff_records

    store = open_store()
    differences = diff_records(store.get(label_a), store.get(label_b))
    if as_json:
        echo_json(differences)
    else:
        click.echo(sanitize(diff_text(differences)))


@main.command()
@click.argument("label")
@click.argument("tags", nargs=-1, required=True, metavar="TAG...")
def tag(label: str, tags: tuple[str, ...]) -> None:
    """Add tags to a record."""
    record = open_store().add_tags(label, [as_text(t) for t in tags])
    click.echo(f"{record.label}  tags: {one_line(', '.join(record.tags))}")


@main.command()
@click.argument("label")
@click.argument("text", nargs=-1, required=True)
def comment(label: str, text: tuple[str, ...]) -> None:
    """Add a line of TEXT to a record's notes."""
    record = open_store().comment(label, as_text(" ".join(text)))
    click.echo(f"{record.label}  notes:\n{sanitize(record.notes or '')}")


OUTPUT_HELP = ("Write to FILE (default: stdout): a file is replaced only once it is whole; a device or a "
               "pipe (/dev/null) is written as it is.")


@main.command()
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("-o", "--output", metavar="FILE", default="-", help=OUTPUT_HELP)
def export(fmt: str, output: str) -> None:
    """Every record, newest first, as JSON or CSV."""
    from simtui.store.export import open_output, write

    store = open_store()  # first: a store that cannot be read leaves FILE as it was
    with open_output(output) as out, store.snapshot():
        write(store, out, fmt)


@main.command()
@click.option("-o", "--output", metavar="FILE", default="-", help=OUTPUT_HELP)
def feed(output: str) -> None:
    """An Atom feed of the records: one entry a run, tags as categories."""
    from simtui.store.export import open_output
    from simtui.store.feed import write_feed

    store = open_store()  # first: a store that cannot be read leaves FILE as it was
    with open_output(output, binary=True) as out, store.snapshot():
        write_feed(store, out)


# -- jobs ----------------------------------------------------------------------


def with_client(obj: Obj, work: Callable[[Client], Awaitable[Any]]) -> Any:
    """Run ``work(client)`` against the server of $SIMTUI_HOME (started when none
    runs). A bad config is reported here, before any server starts."""
    obj.config
    from simtui.client import Client

    async def go() -> Any:
        async with Client(obj.config_file) as client:
            return await work(client)

    return run_async(go())


class TerminalWriter:
    """Log bytes to stdout, one write for each piece that comes. On a terminal, the
    whole lines of each piece (LineSplitter: linear, a line over its cap cut and
    marked) with every control sequence but colours stripped, and a colour left on
    reset at the end; into a pipe or file, the bytes exactly as the job wrote them."""

    def __init__(self) -> None:
        self.out = click.get_binary_stream("stdout")
        self.splitter = LineSplitter() if self.out.isatty() else None
        self.coloured = False  # a colour may be on: reset it at the end

    def __call__(self, data: bytes) -> None:
        if self.splitter is not None:
            data = self._safe(self.splitter.feed_block(data))
        self.out.write(data)
        self.out.flush()

    def close(self) -> None:
        if self.splitter is not None:
            self.out.write(self._safe(self.splitter.flush_block()))
            if self.coloured:
                self.out.write(b"\x1b[0m")
        self.out.flush()

    def _safe(self, lines: bytes) -> bytes:
        safe = sanitize_bytes(lines)
        self.coloured = self.coloured or b"\x1b" in safe
        return safe


def launch(obj: Obj, submit: Callable[[Client], Awaitable[Record]], follow: bool, as_json: bool,
           progress: ProgressLine | None = None) -> None:
    """Submit a job, print its label, and with ``follow`` stream its log to the end.
    A job that did not start exits 3 (2 for what the user can fix) with one line."""

    async def work(client: Client) -> Record:
        try:
            record = await submit(client)
        finally:
            if progress is not None:
                progress.close()
        if not as_json:
            click.echo(record.label)
        if follow:
            writer = None if as_json else TerminalWriter()
            record = await client.follow(record.label, writer, offset=0)
            if writer:
                writer.close()
        return record

    record = with_client(obj, work)
    if as_json:
        echo_json(record.to_dict())
    if follow:
        finish(record)


def machine_options(host: str | None, size: str | None, provider: str | None, workdir: str | None,
                    ) -> dict[str, Any]:
    """The JobSpec fields of --provider/--size: a new machine has nothing of the
    project, so it is synced there (unless a --workdir says where the job runs)."""
    if not provider:
        if size:
            raise UsageError("--size is the size of the machine --provider makes: give --provider too")
        return {}
    if host:
        raise UsageError("give --host or --provider, not both: --provider makes a machine for the job")
    if workdir:
        return {"provider": provider, "size": size}
    from simtui.engine.project import find_project

    return {"provider": provider, "size": size, "sync": True, "project_root": str(find_project().root)}


def say_stage(text: str) -> None:
    """A step of making a job's machine, on stderr."""
    click.echo(f"simtui: {text}", err=True)


def finish(record: Record) -> None:
    """Exit 0 for a job that succeeded, 1 for one that failed, was killed or lost."""
    if record.state is not JobState.SUCCEEDED:
        detail = f"exit code {record.exit_code}" if record.exit_code is not None else record.log_tail or ""
        click.echo(f"simtui: {record.label} {record.state.value} {detail}".rstrip(), err=True)
        sys.exit(1)


@main.command(context_settings={"allow_interspersed_args": False})
@click.option("--host", "-H", metavar="HOST",
              help="Run on this host, or CLUSTER/PARTITION (else the best fit for NEEDS, else local); "
                   "with NEEDS they are requests there (sbatch flags on Slurm).")
@needs_options
@click.option("--time", "time_limit", metavar="LIMIT", help="A time limit where the host has a scheduler (1:00:00).")
@click.option("--image", metavar="IMAGE",
              help="Run it inside this container image (podman, docker or apptainer on the host).")
@click.option("--provider", metavar="PROVIDER",
              help="Make a machine for it with this [[providers]] entry; this project is synced there, its "
                   "outputs pulled here, the machine destroyed at the end.")
@click.option("--size", metavar="SIZE", help="The size of the machine --provider makes (default: the provider's).")
@click.option("--tag", "-t", "tags", multiple=True, metavar="TAG", help="A tag for the record (repeatable).")
@click.option("--reason", "-r", metavar="TEXT", help="Why this run: kept in the record.")
@click.option("--params", "params_file", metavar="FILE", help="Parameters from a JSON, YAML or TOML file.")
@click.option("--param", "-p", "param_args", multiple=True, metavar="KEY=VALUE", help="A parameter (repeatable).")
@click.option("--workdir", "-C", metavar="DIR", help="Where the job runs (default: here on local, home on SSH hosts).")
@click.option("--input", "-i", "inputs", multiple=True, metavar="PATH",
              help="A file the job reads (repeatable): its size and sha256 go in the record.")
@click.option("--outputs", "outputs_dir", metavar="DIR", help="Look for outputs here (default: the workdir).")
@click.option("--require-clean", is_flag=True, help="Refuse to start from a git checkout with uncommitted changes.")
@click.option("--sync", "sync_first", is_flag=True,
              help="Sync this project to the host first and run in its folder there (in its venv, if made).")
@click.option("--after", metavar="LABEL", help="Start once that job has succeeded (fail if it does not).")
@click.option("--follow", "-f", is_flag=True, help="Stream the log until the job ends; exit 1 unless it succeeded.")
@json_option
@click.argument("command", nargs=-1, required=True, metavar="-- CMD [ARG]...")
@pass_obj
def run(obj: Obj, host: str | None, cpus: str | None, mem: str | None, gpus: str | None,
        gpu_mem: str | None, disk: str | None, time_limit: str | None, image: str | None, provider: str | None,
        size: str | None, tags: tuple[str, ...], reason: str | None,
        params_file: str | None, param_args: tuple[str, ...], workdir: str | None,
        inputs: tuple[str, ...], outputs_dir: str | None, require_clean: bool, sync_first: bool,
        after: str | None, follow: bool, as_json: bool, command: tuple[str, ...]) -> None:
    """Launch CMD detached on a host; print its label (then its log, with --follow).

    The job survives closing simtui, network loss and sshd restarts. Everything
    after `--` runs exactly as given, with no shell in between. With --sync, the
    record's git provenance is this checkout's at sync time, plus the synced
    tree's sha256.
    """
    from simtui.engine.placement import parse_needs
    from simtui.params import load_params, params_format, parse_param_args

    needs = parse_needs(cpus, mem, gpus, gpu_mem, disk)
    if sync_first and workdir:
        raise UsageError("give --sync or --workdir, not both: a synced job runs in its own copy of the project")
    machine = machine_options(host, size, provider, workdir)
    params = load_params(params_file) if params_file else {}
    params.update(parse_param_args(param_args))
    if sync_first and not machine:
        from simtui.engine.project import find_project

        machine = {"sync": True, "project_root": str(find_project().root)}
    spec = JobSpec(argv=command, host=host, needs=needs, workdir=workdir, tags=tags, reason=reason,
                   params=params, after=after, inputs=inputs, outputs_dir=outputs_dir,
                   require_clean=require_clean, params_file=params_file, params_format=params_format(params_file),
                   time=time_limit, image=image, **machine)
    progress = ProgressLine("sync", forced=False)
    stage = say_stage if provider else None
    launch(obj, lambda client: client.submit(spec, progress, stage), follow, as_json, progress)


@main.command(context_settings={"allow_interspersed_args": False})
@click.option("--host", "-H", metavar="HOST", help="Run every point here (else each on the best fit for NEEDS, else local).")
@needs_options
@click.option("--time", "time_limit", metavar="LIMIT", help="A time limit where the host has a scheduler (1:00:00).")
@click.option("--params", "params_file", metavar="FILE", help="Parameters every point starts from (JSON, YAML, TOML).")
@click.option("--param", "-p", "axes", multiple=True, metavar="KEY=VALUES",
              help="Values to sweep: a,b,c or a range of whole numbers A..B (repeatable).")
@click.option("--zip", "zipped", is_flag=True, help="The first values together, then the second, ... (not every combination).")
@click.option("--max-parallel", type=click.IntRange(min=1), metavar="N",
              help="At most N points running at once (with --provider: N machines live at once).")
@click.option("--provider", metavar="PROVIDER", help="A machine made for each point by this [[providers]] entry.")
@click.option("--size", metavar="SIZE", help="The size of the machines --provider makes (default: the provider's).")
@click.option("--tag", "-t", "tags", multiple=True, metavar="TAG", help="A tag for every record (repeatable).")
@click.option("--reason", "-r", metavar="TEXT", help="Why this sweep: kept in each record.")
@click.option("--workdir", "-C", metavar="DIR", help="Where the jobs run (default: here on local, home on SSH hosts).")
@json_option
@click.argument("command", nargs=-1, required=True, metavar="-- CMD [ARG]...")
@pass_obj
def sweep(obj: Obj, host: str | None, cpus: str | None, mem: str | None, gpus: str | None, gpu_mem: str | None,
          disk: str | None, time_limit: str | None, params_file: str | None, axes: tuple[str, ...], zipped: bool,
          max_parallel: int | None, provider: str | None, size: str | None, tags: tuple[str, ...],
          reason: str | None, workdir: str | None, as_json: bool, command: tuple[str, ...]) -> None:
    """Run CMD once per point of a parameter grid: every combination of the -p values
    (or, with --zip, the values side by side). Each run is a record of its own with
    its own merged parameters ($SIMTUI_PARAMS), and they share a sweep id: `simtui
    list --sweep ID`, `simtui metrics ID`, `simtui kill ID`, `simtui rerun ID --failed`.
    """
    from simtui.engine.placement import parse_needs
    from simtui.params import load_params, params_format, sweep_axes, sweep_points

    points = sweep_points(sweep_axes(axes), zipped)
    base = load_params(params_file) if params_file else {}
    machine = machine_options(host, size, provider, workdir)
    spec = JobSpec(argv=command, host=host, needs=parse_needs(cpus, mem, gpus, gpu_mem, disk), workdir=workdir,
                   tags=tags, reason=reason, params=base, params_file=params_file,
                   params_format=params_format(params_file), time=time_limit, max_parallel=max_parallel, **machine)
    progress = ProgressLine("sync", forced=False)
    try:
        stage = say_stage if provider else None
        records = with_client(obj, lambda client: client.sweep(spec, points, progress, stage))
    finally:
        progress.close()
    show_records(records, as_json, records[0].sweep or "")


@main.command()
@click.option("--all", "everything", is_flag=True, help="Also the machines destroyed already.")
@click.option("--destroy", metavar="NAME", help="Destroy this machine now (a job still running there is lost).")
@click.option("--forget", metavar="NAME",
              help="Stop counting this machine live without running destroy (you destroyed it yourself).")
@json_option
@pass_obj
def machines(obj: Obj, everything: bool, destroy: str | None, forget: str | None, as_json: bool) -> None:
    """Machines made for a job by a provider (run --provider) that are not destroyed
    yet: their job, state, age and, where the provider has prices, the cost so far."""
    from simtui.recordfmt import duration
    from simtui.store import machines as made

    if destroy and forget:
        raise UsageError("give --destroy or --forget, not both")
    if destroy or forget:
        name = destroy or forget
        found = [with_client(obj, lambda client: client.destroy_machine(name) if destroy
                             else client.forget_machine(name))]
    else:
        found = made.listed(open_store(), live=not everything)
    now = time.time()
    if as_json:
        echo_json([{**m.to_dict(), "age": m.age(now), "cost": m.cost(now)} for m in found])
        return
    if destroy or forget:
        click.echo(f"destroyed {destroy}" if destroy else f"forgotten {forget} (it was not destroyed by simtui)")
        return
    rows = [(m.name, m.provider, m.size, m.state, m.label, m.address or "", duration(m.age(now)),
             "" if m.cost(now) is None else f"{m.cost(now):.4f}", one_line(m.error or "")) for m in found]
    click.echo(table(["machine", "provider", "size", "state", "job", "address", "age", "cost", "error"], rows)
               if rows else "no machines" + ("" if everything else " live (--all: those destroyed too)"))


@main.command()
@click.argument("label")
@click.option("--follow", "-f", is_flag=True, help="Keep streaming until the job ends; exit 1 unless it succeeded.")
@pass_obj
def log(obj: Obj, label: str, follow: bool) -> None:
    """The job's output from the start (a unique prefix of LABEL is enough)."""
    from simtui.store.logs import LocalLog

    writer = TerminalWriter()

    async def work(client: Client) -> Record:
        # What the local copy holds is read here, at the speed of the disk; the rest
        # (not copied yet, or live) comes through the server from where it ends.
        copy = LocalLog(client.record(label).label)
        whole = copy.compressed  # a finished copy is the whole log (asked first: it may finish while read)
        offset = 0
        for chunk in copy.chunks():
            writer(chunk)
            offset += len(chunk)
        if not whole:
            offset = await client.read(copy.label, writer, offset=offset)
        record = client.record(copy.label)
        if follow and not record.state.finished:
            record = await client.follow(copy.label, writer, offset=offset)
        return record

    record = with_client(obj, work)
    writer.close()
    if follow:
        finish(record)


@main.command()
@click.argument("label")
@json_option
@pass_obj
def kill(obj: Obj, label: str, as_json: bool) -> None:
    """Stop a job: TERM to its process group, KILL after the grace period (config kill_grace).

    A queued or starting job is cancelled. Only the job's own processes get a
    signal (its recorded pid and that pid's start time); a job that had already
    ended keeps its outcome, and says so (exit 2). A sweep id kills every run of
    the sweep that has not ended.
    """
    if label.startswith(SWEEP_PREFIX):
        sweep = sweep_id(open_store(), label)
        records = with_client(obj, lambda client: client.kill_sweep(sweep))
        show_records(records, as_json, sweep)
        return
    record = with_client(obj, lambda client: client.kill(label))
    echo_json(record.to_dict()) if as_json else click.echo(f"{record.label} {record.state.value}")


def show_records(records: list[Record], as_json: bool, sweep: str) -> None:
    """A sweep's runs: its id, then a line each (label, state, host, parameters), or JSON."""
    if as_json:
        echo_json({"sweep": sweep, "records": [r.to_dict() for r in records]})
        return
    click.echo(sweep)
    click.echo(table(["label", "state", "host", "params"], [
        (r.label, r.state.value, r.host, one_line(" ".join(f"{k}={json.dumps(v)}" for k, v in r.params.items())))
        for r in records]))


@main.command()
@click.argument("label")
@click.option("--host", "-H", metavar="HOST", help="Run it here (default: as before).")
@click.option("--follow", "-f", is_flag=True, help="Stream the log until the job ends; exit 1 unless it succeeded.")
@click.option("--failed", is_flag=True, help="With a sweep id: only its runs that failed, were killed or lost.")
@json_option
@pass_obj
def rerun(obj: Obj, label: str, host: str | None, follow: bool, failed: bool, as_json: bool) -> None:
    """Run a record's job again: same command and parameters, new label, repeat_of set.

    A synced run gets exactly the code tree it ran (kept in $SIMTUI_HOME/trees),
    on its host or another, whatever the checkout holds now. A sweep id reruns
    its points into the same sweep (with --failed, only those that did not succeed).
    """
    progress = ProgressLine("send", forced=False)
    if label.startswith(SWEEP_PREFIX):
        if host or follow:
            raise UsageError("rerun of a sweep takes no --host or --follow (each point goes as it went)")
        sweep = sweep_id(open_store(), label)
        try:
            records = with_client(obj, lambda client: client.rerun_sweep(sweep, failed, progress))
        finally:
            progress.close()
        show_records(records, as_json, sweep)
        return
    if failed:
        raise UsageError("--failed is for a sweep id")
    launch(obj, lambda client: client.rerun(label, host, progress), follow, as_json, progress)


@main.command()
@click.argument("label")
@click.option("--host", "-H", metavar="HOST", help="Reproduce it here (default: as before).")
@click.option("--quiet", "-q", is_flag=True, help="Do not stream the rerun's log.")
@json_option
@pass_obj
def reproduce(obj: Obj, label: str, host: str | None, quiet: bool, as_json: bool) -> None:
    """Rerun a record's job (same code tree, parameters and command), wait for it,
    and compare each output's sha256 with the original's.

    Prints `reproduced: N/N outputs identical`, or each file that differs and what
    differs between the two records. The verdict is kept in the new record.
    Exits 0 when reproduced, 1 when not.
    """
    from simtui.recordfmt import diff_text
    from simtui.store.diff import diff_records

    writer = None if quiet or as_json else TerminalWriter()
    progress = ProgressLine("send", forced=False)

    async def work(client: Client) -> tuple[Record, dict[str, Any], str]:
        try:
            rerun, verdict = await client.reproduce(label, host, writer, progress)
        finally:
            progress.close()
        if writer:
            writer.close()
        diff = diff_records(client.record(label), rerun)
        return rerun, verdict, diff_text({k: v for k, v in diff.items() if k != "outputs"})

    rerun, verdict, differences = with_client(obj, work)
    if as_json:
        echo_json({**verdict, "label": rerun.label})
    else:
        click.echo(f"{rerun.label}: rerun of {verdict['of']} {verdict['rerun_state']}")
        if verdict["reproduced"]:
            click.echo(f"reproduced: {verdict['identical']}/{verdict['outputs']} outputs identical")
        else:
            click.echo(f"not reproduced: {verdict['identical']}/{verdict['outputs']} outputs identical")
            for item in verdict["differ"]:
                click.echo(f"  {sanitize(item['path'])}: {item['why']}")
            click.echo(differences)
    if not verdict["reproduced"]:
        sys.exit(1)


@main.command()
@click.argument("label")
@click.option("--pull", "pull_to", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Fetch them into DIR (one stream) and check each sha256 against the record.")
@json_option
@pass_obj
def outputs(obj: Obj, label: str, pull_to: Path | None, as_json: bool) -> None:
    """The files a run made (as its record lists them: size, sha256) and whether
    each is still on its host unchanged; with --pull, fetched here and checked.

    Exits 1 when a pulled file is missing or no longer matches the record.
    """
    from simtui.units import format_size

    record, found = with_client(obj, lambda client: client.outputs(label, pull_to))
    if as_json:
        echo_json(found)
    elif not found:
        click.echo(f"{record.label} has no outputs recorded")
    else:
        rows = [(sanitize(o["path"]), format_size(o["size"]), (o["sha256"] or "")[:12], o["state"]) for o in found]
        click.echo(table(["path", "size", "sha256", "state" if pull_to is None else "pulled"], rows))
    bad = [o["path"] for o in found if o["state"] != "unchanged"]
    if pull_to is not None:
        if bad:
            click.echo(f"simtui: {len(bad)} of {len(found)} outputs do not match the record: "
                       f"{', '.join(sanitize(p) for p in bad[:10])}", err=True)
            sys.exit(1)
        if not as_json:
            click.echo(f"pulled {len(found)} outputs of {record.label} into {pull_to}, each sha256 as recorded")


@main.command()
@pass_obj
def watch(obj: Obj) -> None:
    """Stay attached to the simtui server (which keeps records current, copies
    running jobs' logs and starts queued jobs) and print each change of a job.

    Stops cleanly on Ctrl-C or SIGTERM; the server goes on while jobs are active.
    """
    import asyncio
    import signal

    async def work(client: Client) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        async def show() -> None:
            async for event in client.jobs():
                if "attached" in event:
                    click.echo(f"simtui: watching (server {client.server_pid}); Ctrl-C stops", err=True)
                elif "record" in event:
                    r = Record.from_dict(event["record"])
                    click.echo(f"{r.label} {r.state.value} on {r.host}: {sanitize(r.command)[:60]}")
                elif "notice" in event:
                    click.echo(f"simtui: {sanitize(event['notice'])}", err=True)

        watcher = asyncio.create_task(show())
        await asyncio.wait({watcher, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)

    with_client(obj, work)


# -- the server ----------------------------------------------------------------------


@main.group()
def server() -> None:
    """The local simtui server: one per $SIMTUI_HOME, started by the commands that
    need it, gone when idle ([server] idle in the config, default 10m)."""


@server.command("run")
@pass_obj
def server_run(obj: Obj) -> None:
    """Serve in the foreground (what a started server runs)."""
    from simtui.config import config_identity
    from simtui.server.daemon import serve

    if not serve(obj.config, config_identity(obj.config_file), obj.config.server.idle):
        click.echo("simtui: a server already serves this SIMTUI_HOME", err=True)


@server.command("start")
@pass_obj
def server_start(obj: Obj) -> None:
    """Start the server (detached) unless one runs; print its pid."""
    click.echo(with_client(obj, lambda client: client.status())["pid"])


def _status(obj: Obj, op: str) -> dict[str, Any] | None:
    """``op`` (status, stop) of the running server; None when none runs."""
    from simtui.client import Client, ServerNotRunning

    async def go() -> dict[str, Any] | None:
        try:
            async with Client(obj.config_file, start=False) as client:
                return await client.request(op)
        except ServerNotRunning:
            return None

    return run_async(go())


@server.command("status")
@json_option
@pass_obj
def server_status(obj: Obj, as_json: bool) -> None:
    """Whether a server runs, its hosts and the jobs it follows. Exits 1 when none runs."""
    from simtui.recordfmt import duration

    status = _status(obj, "status")
    if as_json:
        echo_json(status)
    elif status is None:
        click.echo("no simtui server is running")
    else:
        click.echo(f"simtui server {status['pid']}, up {duration(time.time() - status['started'])}, "
                   f"{status['clients'] - 1} other clients, following {len(status['followers'])} jobs, "
                   f"{len(status['active'])} active")
        rows = [(h["host"], h["state"], h["reason"] or "") for h in status["hosts"]]
        click.echo(table(["host", "state", "reason"], rows))
    if status is None:
        sys.exit(1)


@server.command("stop")
@pass_obj
def server_stop(obj: Obj) -> None:
    """Stop the server (jobs go on: the next command starts a new one, which resumes them)."""
    import os

    status = _status(obj, "stop")
    if status is None:
        click.echo("no simtui server is running")
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(status["pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    click.echo(f"stopped simtui server {status['pid']}")


@server.command("log")
@click.option("--lines", "-n", type=click.IntRange(min=1), default=50, show_default=True, help="The last N lines.")
def server_log(lines: int) -> None:
    """The server's log (size-capped: it is cut at 1 MB, one older file kept)."""
    from simtui.config import simtui_home

    path = simtui_home() / "server.log"
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist: no server has run here") from None
    for line in text.splitlines()[-lines:]:
        click.echo(sanitize(line))


# -- code and data -----------------------------------------------------------------


class ProgressLine:
    """``what: 1.2 MB / 40.0 MB`` on stderr, rewritten in place: with ``forced``
    (--progress) always, else on a terminal once a transfer is large."""

    LARGE = 1 << 20
    EVERY = 0.1  # seconds between updates

    def __init__(self, what: str, forced: bool) -> None:
        self.what, self.forced = what, forced
        self.on = forced or sys.stderr.isatty()
        self.shown = False
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        from simtui.units import format_size

        now = time.monotonic()
        if not self.on or (total < self.LARGE and not self.forced) or (done < total and now - self.last < self.EVERY):
            return
        self.last, self.shown = now, True
        click.echo(f"\r{self.what}: {format_size(done)} / {format_size(total)}", err=True, nl=False)

    def close(self) -> None:
        if self.shown:
            click.echo(err=True)
            self.shown = False


def to_stderr(data: bytes) -> None:
    """A command's output on the host (pip, curl), as it comes."""
    out = click.get_binary_stream("stderr")
    out.write(data)
    out.flush()


host_option = click.option("--host", "-H", metavar="HOST", help="The host (default: the only SSH host configured).")
progress_option = click.option(
    "--progress", is_flag=True, help="Show bytes sent / total on stderr (default: on a terminal, for large transfers)."
)


@main.command()
@host_option
@progress_option
@json_option
@pass_obj
def sync(obj: Obj, host: str | None, progress: bool, as_json: bool) -> None:
    """Send this project to its folder on the host (projects_dir/NAME): only what changed.

    The project is the git checkout you are in (what git tracks, the untracked
    files it does not ignore, and those matching .simtui/include), else this
    folder; minus what matches .simtui/exclude. Files deleted here are deleted
    there; nothing else there is touched.
    """
    from simtui.units import format_size

    line = ProgressLine("sync", progress)
    try:
        result = with_client(obj, lambda client: client.sync(host, progress=line))
    finally:
        line.close()
    summary = (f"{result['host']}:{result['folder']}: {len(result['sent'])} sent "
               f"({format_size(result['bytes_sent'])}), {len(result['deleted'])} deleted, "
               f"{result['files']} files in all")
    echo_json(result) if as_json else click.echo(summary)


@main.command()
@host_option
@json_option
@pass_obj
def env(obj: Obj, host: str | None, as_json: bool) -> None:
    """Sync, then make the project's virtual environment on the host (.venv in its folder).

    From requirements.txt, else pyproject.toml (uv where the host has it, else
    python3 -m venv and pip); made again only when that file changes. Jobs run
    with --sync run inside it, and their record lists its packages.
    """
    result = with_client(obj, lambda client: client.env(host, on_output=to_stderr))
    summary = (f"{result['host']}:{result['venv']}: {'made' if result['made'] else 'up to date'} "
               f"from {result['requirements']}")
    echo_json(result) if as_json else click.echo(summary)


@main.command()
@click.argument("local", type=click.Path(path_type=Path))
@click.argument("remote")
@host_option
@progress_option
@pass_obj
def push(obj: Obj, local: Path, remote: str, host: str | None, progress: bool) -> None:
    """Copy LOCAL (a file or folder) to REMOTE, a path in the project's folder on the
    host (into it, when it is a folder there). Modes are kept."""
    line = ProgressLine("push", progress)
    try:
        where = with_client(obj, lambda client: client.push(local, remote, host, progress=line))
    finally:
        line.close()
    click.echo(where)


@main.command()
@click.argument("remote")
@click.argument("local", type=click.Path(path_type=Path))
@host_option
@progress_option
@pass_obj
def pull(obj: Obj, remote: str, local: Path, host: str | None, progress: bool) -> None:
    """Copy REMOTE, a file or folder in the project's folder on the host, to LOCAL
    (into it, when it is a folder here)."""
    line = ProgressLine("pull", progress)
    try:
        target = with_client(obj, lambda client: client.pull(remote, local, host, progress=line))
    finally:
        line.close()
    click.echo(target)


@main.command()
@click.argument("urls", nargs=-1, required=True, metavar="URL...")
@host_option
@progress_option
@pass_obj
def data(obj: Obj, urls: tuple[str, ...], host: str | None, progress: bool) -> None:
    """Download each URL on the host into the project's data/ folder.

    With curl, wget or python3, whichever the host has; the file is named after
    the URL's path. A failed download leaves no partial file.
    """
    from simtui.engine.transfer import data_name

    for url in urls:
        data_name(url)  # every URL checked before the first download

    async def work(client: Client) -> None:
        for url in urls:
            click.echo(await client.data(url, host, on_output=to_stderr, progress=progress or sys.stderr.isatty()))

    with_client(obj, work)


@main.command()
@host_option
@click.option("--port", type=click.IntRange(0, 65535), default=8888, show_default=True,
              help="The local port to forward (0: any free one).")
@click.option("--command", "server", hidden=True,
              help="Start this instead of Jupyter ({port}: the port it should use).")
@pass_obj
def notebook(obj: Obj, host: str | None, port: int, server: str | None) -> None:
    """Start Jupyter in the project's folder on the host, as a tracked job, and
    forward a local port to it over the same connection.

    Prints the local URL (with Jupyter's token); Ctrl-C stops the server and the
    forward. Exits 2 when Jupyter is not installed on the host, 1 when the server
    ends by itself.
    """
    import shlex

    def on_url(label: str, url: str) -> None:
        click.echo(f"simtui: notebook {label}; Ctrl-C stops it", err=True)
        click.echo(url)

    try:
        record = with_client(obj, lambda client: client.notebook(on_url, host, port=port,
                                                                 command=shlex.split(server) if server else None))
    except KeyboardInterrupt:
        click.echo("simtui: notebook stopped", err=True)
        return
    finish(record)


# -- notifications ---------------------------------------------------------------


@main.group()
def notify() -> None:
    """Notifications ([notify] in the config): test the URLs, list what was sent."""


@notify.command("test")
@json_option
@pass_obj
def notify_test(obj: Obj, as_json: bool) -> None:
    """Send a test message to every configured URL (one try each) and report each.

    Exits 2 when a URL is not a valid apprise URL (or none is configured), 3 when
    one could not be reached or refused the message.
    """
    from simtui.engine.notify import Notifier

    notifier = Notifier(obj.config)
    if not notifier.urls():
        raise UsageError(f"{obj.config.path}: notify: no URLs; add [notify] urls = [\"ntfy://ntfy.sh/TOPIC\"]")
    deliveries = run_async(notifier.test())
    if as_json:
        echo_json([d.to_dict() for d in deliveries])
    else:
        rows = [(d.url, "sent" if d.ok else "failed", d.reason or "") for d in deliveries]
        click.echo(table(["url", "result", "reason"], rows))
    if any(d.invalid for d in deliveries):
        sys.exit(2)
    if not all(d.ok for d in deliveries):
        sys.exit(3)


@notify.command("list")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True, help="At most N; 0: all.")
@json_option
def notify_list(limit: int, as_json: bool) -> None:
    """Notifications claimed by any simtui process, newest first, and how they went."""
    from simtui.recordfmt import when
    from simtui.store import notifications

    rows = notifications.recent(open_store().db, limit or None)
    if as_json:
        echo_json(rows)
    else:
        shown = [(when(r["time"]), r["event"], r["label"] or r["host"], r["status"], r["detail"] or "") for r in rows]
        click.echo(table(["time", "event", "about", "status", "detail"], shown) if rows else "no notifications")
