"""Records as text for people: the ``list`` table, ``show`` and ``diff`` views.

Every value from a record went through simtui.textsafe: a one-line field (label,
command, host, tags, a parameter, ...) is ``one_line`` (no control, no colour, a line
break shown as ``⏎``); the multi-line ones (reason, notes, the git diff) are
``plain``; the log's last lines are ``sanitize``d (colours kept, reset at each
line's end). So the text holds no terminal control but SGR colours in the log.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from simtui.model import Record, RecordEvent
from simtui.store.diff import flatten
from simtui.store.records import LISTED
from simtui.textfmt import cell, table, table_lines
from simtui.textsafe import one_line, plain, sanitize
from simtui.units import format_size

if TYPE_CHECKING:
    from simtui.store import Store

COMMAND_WIDTH = 60
HASH_WIDTH = 12


def records_table(store: Store, **filters: Any) -> Iterator[str]:
    """The ``list`` table of the records ``filters`` select (see Store.find), line by
    line as they are read; no line when there is no record. The columns' widths come
    first, from one pass of SQLite over the same records (Store.extent): call it inside
    Store.snapshot() so that both passes see the same records."""
    extent = store.extent(**filters)
    if not extent.count:
        return
    widths = [extent.label, extent.state, extent.host,
              max(len(cell(when(t, seconds=False))) for t in extent.created),
              max(len(cell(duration(t))) for t in extent.duration),
              extent.tags, min(extent.command, COMMAND_WIDTH)]
    yield from table_lines(LISTED, [max(len(h), w) for h, w in zip(LISTED, widths)],
                           map(_listed_cells, store.select(LISTED, **filters)))


def _listed_cells(row: tuple[Any, ...]) -> tuple[str, ...]:
    """A row of LISTED as the cells of the list table (see textfmt.cell)."""
    label, state, host, created, seconds, tags, command = row
    texts = label + state + host + command
    if not (texts.isascii() and texts.isprintable()):  # else one_line would leave them as they are
        label, state, host, command = map(cell, (label, state, host, command))
    return (label, state, host, when(created, seconds=False) or "-", duration(seconds) or "-", _tags_cell(tags),
            _truncate(command, COMMAND_WIDTH))


@functools.lru_cache(maxsize=1024)  # the same few sets of tags come again and again
def _tags_cell(tags: str | None) -> str:
    """The cell of tags as stored (JSON): joined by ", "."""
    return cell(", ".join(json.loads(tags)) if tags else "")


def record_text(record: Record, events: Sequence[RecordEvent]) -> str:
    """The whole record, grouped: summary, parameters, git, environment, files,
    events, the log's last lines, then the git diff."""
    r = record
    outcome = r.state.value + (f" (exit {r.exit_code})" if r.exit_code is not None else "")
    summary = [
        ("command", r.command), ("host", r.host), ("workdir", r.workdir), ("run folder", r.run_dir),
        ("project", r.project), ("venv", r.venv),
        ("created", when(r.created)), ("started", when(r.started)), ("ended", when(r.ended)),
        ("duration", duration(r.duration)), ("tags", ", ".join(one_line(t) for t in r.tags)),
        ("reason", _Lines.of(r.reason)), ("notes", _Lines.of(r.notes)),
        ("repeat of", r.repeat_of), ("waits for", r.after), ("placement", r.placement),
        ("needs", _needs(r.needs or {})),
        ("pid", r.pid), ("jobs dir", r.jobs_dir),
        ("peak memory", r.peak_rss and format_size(r.peak_rss)),
        ("peak GPU memory", r.peak_gpu_mem and format_size(r.peak_gpu_mem)),
    ]
    git = r.git or {}
    commit = git.get("commit") and git["commit"] + (" (dirty)" if git.get("dirty") else "")
    env = r.environment or {}
    packages = env.get("packages")
    sections = [
        (f"Record {one_line(r.label)}  {outcome}", _pairs(summary)),
        ("Parameters", _pairs([*((k, _value(v)) for k, v in flatten(r.params).items()), *_params_file(r)])),
        ("Git", _pairs([("remote", git.get("remote")), ("branch", git.get("branch")), ("commit", commit),
                        ("untracked", ", ".join(git.get("untracked") or [])),
                        ("synced tree", git.get("tree_sha256"))])),
        ("Environment", _pairs([
            ("python", env.get("python") and f"{env['python']} ({env.get('python_executable')})"),
            ("system", " ".join(str(env[k]) for k in ("os", "kernel", "arch") if env.get(k))),
            ("distribution", env.get("os_release")), ("hostname", env.get("hostname")),
            ("cpu", env.get("cpu") and f"{env['cpu']} x {env.get('cpu_count')}"),
            ("memory", env.get("memory") and format_size(env["memory"])),
            ("packages", packages is not None
             and f"{len(packages)} (sha256 {env.get('packages_sha256', '')[:HASH_WIDTH]})"),
        ])),
        ("Container", _pairs([(key, one_line(str(value))) for key, value in (r.container or {}).items()
                              if value not in (None, "")])),
        ("Machine", _pairs(_machine(r.machine))),
        ("Scheduler", _pairs([(key.replace("_", " "), one_line(str(value)))
                              for key, value in (r.scheduler or {}).items() if value not in (None, "")])),
        ("Inputs", _files(r.inputs)),
        ("Outputs", _files(r.outputs)),
        ("Reproduction", _pairs(_reproduction(r.reproduction))),
        ("Events", _indent(table(["time", "kind", "detail"], [(when(e.time), e.kind, e.detail) for e in events]))
         if events else []),
        ("Log (last lines)", _log_lines(r.log_tail) if r.log_tail else []),
        ("Git diff", _indent(plain(git["diff"]).rstrip("\n")) if git.get("diff") else []),
    ]
    return _sections(sections)


def _machine(facts: dict[str, Any] | None) -> list[tuple[str, str | None]]:
    """A record's machine made for it: provider, size, name, made and destroyed, cost, outputs."""
    if not facts:
        return []
    price = facts.get("price_per_hour")
    cost = facts.get("cost")
    return [("provider", facts.get("provider")), ("size", facts.get("size")), ("name", facts.get("name")),
            ("created", when(facts["created"]) if facts.get("created") else "not (yet) made"),
            ("destroyed", when(facts["destroyed"]) if facts.get("destroyed") else facts.get("created") and "not yet"),
            ("price", price is not None and f"{price:g}/hour" or None),
            ("cost", cost is not None and f"{cost:.4f}" or None),
            ("outputs here", facts.get("outputs")), ("left", facts.get("left") and one_line(facts["left"]))]


def diff_text(diff: dict[str, Any]) -> str:
    """A diff from store.diff.diff_records, one ``name  a -> b`` line a change."""
    head = f"a {one_line(diff['a'])}  b {one_line(diff['b'])}"
    git = dict(diff.get("git", {}))
    patch = git.pop("diff", None)
    env = dict(diff.get("environment", {}))
    packages = env.pop("packages", {})
    package_lines = [f"+ {name} {version}" for name, version in packages.get("added", {}).items()]
    package_lines += [f"- {name} {version}" for name, version in packages.get("removed", {}).items()]
    package_lines += [f"  {name} {_change(c)}" for name, c in packages.get("changed", {}).items()]
    sections = [
        ("Run", _pairs(_changes(diff.get("run", {})))),
        ("Parameters", _pairs(_changes(diff.get("params", {})))),
        ("Git", _pairs([*_changes(git), ("diff", _Lines.of(patch and patch.rstrip("\n")))])),
        ("Environment", _pairs([*_changes(env), ("packages", _Lines.of("\n".join(package_lines)))])),
        ("Inputs", _pairs(_changes(diff.get("inputs", {}), short=True))),
        ("Outputs", _pairs(_changes(diff.get("outputs", {}), short=True))),
    ]
    body = _sections(sections)
    return f"{head}\n\n{body}" if body else f"{head}\nno differences"


def _params_file(r: Record) -> list[tuple[str, Any]]:
    """Where the job read its merged parameters, and that file's sha256."""
    info = r.params_file or {}
    if not info:
        return []
    return [("(file)", info.get("path") or info.get("given")),
            ("(sha256)", (info.get("sha256") or "")[:HASH_WIDTH] + f" {info.get('format', '')}")]


def _reproduction(verdict: dict[str, Any] | None) -> list[tuple[str, Any]]:
    if not verdict:
        return []
    outcome = "reproduced" if verdict.get("reproduced") else "not reproduced"
    pairs = [("of", verdict.get("of")),
             ("outcome", f"{outcome}: {verdict.get('identical')}/{verdict.get('outputs')} outputs identical")]
    return pairs + [(item["path"], item["why"]) for item in verdict.get("differ", [])]


# -- small pieces ------------------------------------------------------------------


def when(timestamp: float | None, seconds: bool = True) -> str | None:
    """Local time, ``2024-05-01 12:30:05``; None stays None."""
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", time.localtime(timestamp))


def duration(seconds: float | None) -> str | None:
    """``4.2s``, ``3m05s``, ``2h03m``, ``1d04h``."""
    if seconds is None:
        return None
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _sections(sections: list[tuple[str, list[str]]]) -> str:
    return "\n\n".join("\n".join([title, *lines]) for title, lines in sections if lines)


class _Lines(str):
    """A value of several lines (notes, a patch): shown under its name, line by line."""

    @classmethod
    def of(cls, text: str | None) -> _Lines | None:
        return None if text is None else cls(text)


def _pairs(pairs: Iterable[tuple[str, Any]]) -> list[str]:
    """``  name  value`` lines, names aligned; empty values left out. A value is one
    line (textsafe.one_line) unless it is _Lines: those are wrapped under."""
    kept = [(one_line(name), plain(value) if isinstance(value, _Lines) else one_line(str(value)))
            for name, value in pairs if value is not None and value is not False and value != ""]
    width = max((len(name) for name, _ in kept), default=0)
    pad = "\n" + " " * (width + 4)
    return [f"  {name.ljust(width)}  {value.replace(chr(10), pad)}" for name, value in kept]


def _changes(changed: dict[str, dict[str, Any]], short: bool = False) -> list[tuple[str, str]]:
    return [(name, _change(c, short)) for name, c in changed.items()]


def _change(change: dict[str, Any], short: bool = False) -> str:
    def side(key: str) -> str:
        if key not in change:
            return "(none)"
        return str(change[key])[:HASH_WIDTH] if short and change[key] else _value(change[key])

    return f"{side('a')} -> {side('b')}"


def _files(files: list[dict[str, Any]]) -> list[str]:
    if not files:
        return []
    rows = [(f["path"], format_size(f.get("size")), (f.get("sha256") or "")[:HASH_WIDTH], f.get("media_type"))
            for f in files]
    return _indent(table(["path", "size", "sha256", "type"], rows))


def _needs(needs: dict[str, Any]) -> str:
    sizes = ("mem", "gpu_mem", "disk")
    return ", ".join(f"{k} {format_size(v) if k in sizes else v}" for k, v in needs.items() if v)


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _indent(text: str) -> list[str]:
    return ["  " + line for line in text.splitlines()]


def _log_lines(text: str) -> list[str]:
    """The log's last lines with their colours; a coloured line ends in a reset, so
    no colour runs on into what follows."""
    lines = [sanitize(line) for line in text.rstrip("\n").splitlines()]
    return ["  " + line + ("\x1b[0m" if "\x1b" in line else "") for line in lines]


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
