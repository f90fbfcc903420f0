"""Records and their events: insert, update, look up by label prefix, find with filters.

Reads stream: ``find`` and ``select`` read from the cursor as they are iterated, and
``select`` reads only the columns asked for (a list's small ones, never the bulky
JSON it does not show); ``snapshot`` makes several passes agree.

Every write is one ``BEGIN IMMEDIATE`` transaction (see db.write_transaction), so
a tag or a comment added by one process never overwrites another's. Each change
of state, tag or comment also lands in ``events`` with its own timestamp.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from simtui.errors import AmbiguousLabel, UnknownLabel, UsageError
from simtui.model import SWEEP_PREFIX, JobState, Record, RecordEvent
from simtui.provenance import packages_sha256
from simtui.store.db import connect, path_of, sqlite_utils_on, translated, write_transaction
from simtui.textsafe import one_line

if TYPE_CHECKING:
    from sqlite_utils import Database

COLUMNS = tuple(f.name for f in dataclasses.fields(Record))
JSON_COLUMNS = frozenset({"argv", "tags", "params", "git", "environment", "inputs", "outputs", "needs", "spec",
                          "params_file", "reproduction", "scheduler", "metrics", "container",
                          "machine"})
UPDATABLE = frozenset(COLUMNS) - {"label", "created", "updated"}
MAX_CANDIDATES = 10
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_TERM = re.compile(r'"([^"]*)"?|(\S+)')  # a "quoted phrase" or a word


# What a list of records shows: small columns, read without the bulky ones.
LISTED = ("label", "state", "host", "created", "duration", "tags", "command")

# The length of tags joined by ", ", in SQL, from their JSON as stored (json_text):
# '["a", "b"]' less two brackets and two quotes, then two quotes for each '", "' (which
# becomes ", "); tags_length() where an item holds an escape or a character not ASCII.
_TAGS_LENGTH = ("case when tags is null or tags = '[]' then 0 "
                "when instr(tags, '\\') or length(tags) != length(cast(tags as blob)) then tags_length(tags) "
                "else length(tags) - 4 - (length(tags) - length(replace(tags, '\", \"', ''))) / 2 end")


class Listed(NamedTuple):
    """A record as a list of records shows it (LISTED)."""

    label: str
    state: JobState
    host: str
    created: float | None
    duration: float | None
    tags: list[str]
    command: str


class Extent(NamedTuple):
    """Of some records (Store.extent): how many, the longest one-line text of each
    LISTED text column (tags joined by ", "), the range (min, max) of created and duration."""

    count: int
    label: int
    state: int
    host: int
    command: int
    tags: int
    created: tuple[float | None, float | None]
    duration: tuple[float | None, float | None]


class Store:
    """The records log. ``Store.open()`` uses ``$SIMTUI_HOME/records.db``.

    Reads are plain SQL on the connection; writes go through sqlite-utils (``db``).
    A fault of the file (read-only, full, locked, damaged) is a one-line
    SimtuiError naming it, from reads and writes alike (see db.records_error).
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.path = path_of(conn)
        self._packages: dict[str, dict[str, str]] = {}  # by sha256; immutable, so cached

    @classmethod
    def open(cls, path: str | Path | None = None) -> Store:
        return cls(connect(path))

    @cached_property
    def db(self) -> Database:
        """sqlite-utils on the same connection, imported on the first write."""
        return sqlite_utils_on(self.conn)

    def close(self) -> None:
        self.conn.close()

    # -- reading -------------------------------------------------------------

    def resolve(self, prefix: str) -> str:
        """The one label that starts with ``prefix``; UnknownLabel or AmbiguousLabel otherwise."""
        if not prefix.strip():
            raise UsageError("give a record label (or a unique prefix of one)")
        with translated(self.path):
            rows = self.conn.execute(
                "select label from records where label >= ? and label < ? order by label limit ?",
                [prefix, prefix + "\U0010ffff", MAX_CANDIDATES + 1],
            ).fetchall()
        labels = [row[0] for row in rows]
        if prefix in labels:
            return prefix
        if not labels:
            raise UnknownLabel(prefix)
        if len(labels) > 1:
            raise AmbiguousLabel(prefix, labels[:MAX_CANDIDATES], more=len(labels) > MAX_CANDIDATES)
        return labels[0]

    def get(self, label: str) -> Record:
        """The record whose label is, or uniquely starts with, ``label``."""
        found = self.resolve(label)
        with translated(self.path):
            row = self.conn.execute(f"select {', '.join(COLUMNS)} from records where label = ?", [found]).fetchone()
        return self._record(row)

    def find(self, **filters: Any) -> Iterator[Record]:
        """Whole records, newest first, read as iterated; ``filters`` as for ``selection``."""
        for row in self.select(COLUMNS, **filters):
            yield self._record(row)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see the records as they were at the first of them (one read
        transaction): several passes over the records agree whatever others write."""
        with translated(self.path):
            self.conn.execute("begin")
        try:
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("rollback")

    def select(self, columns: Sequence[str], **filters: Any) -> Iterator[tuple[Any, ...]]:
        """Of the records ``filters`` select (see ``selection``), newest first, the values
        of ``columns`` (names, or SQL expressions over one record) as SQLite holds them
        (JSON columns as text): one tuple a record, read from the cursor as iterated."""
        sql, args = selection(columns, **filters)
        with translated(self.path):
            yield from self.conn.execute(sql, args)

    def listed(self, **filters: Any) -> Iterator[Listed]:
        """The records as a list shows them (LISTED), newest first; ``filters`` as for ``selection``."""
        for label, state, host, created, duration, tags, command in self.select(LISTED, **filters):
            yield Listed(label, JobState(state), host, created, duration, json.loads(tags) if tags else [], command)

    def extent(self, **filters: Any) -> Extent:
        """Over the records ``filters`` select: how long their LISTED texts get as one
        line (textsafe.one_line; tags joined by ", ") and the range of their created
        and duration; one pass of SQLite over their small columns."""
        self.conn.create_function("one_line_length", 1, _one_line_length, deterministic=True)
        self.conn.create_function("tags_length", 1, _tags_length, deterministic=True)
        # labels and states are simtui's own plain text; a host or a command is anyone's
        lengths = ["max(length(label))", "max(length(state))", "max(one_line_length(host))",
                   "max(one_line_length(command))"]
        count, *lengths, first, last, shortest, longest = self.aggregate(
            ["count(*)", *lengths, f"max({_TAGS_LENGTH})", "min(created)", "max(created)", "min(duration)",
             "max(duration)"], LISTED, **filters)
        return Extent(count, *(length or 0 for length in lengths), (first, last), (shortest, longest))

    def distinct(self, column: str, **filters: Any) -> Iterator[Any]:
        """Each distinct value of ``column`` (a name, or an SQL expression over one
        record) of the records ``filters`` select (see ``selection``), once, in order of
        its first appearance among them newest first."""
        inner, args = selection([f"{column} as value", "row_number() over (order by created desc, rowid desc) as n"],
                                ordered=False, **filters)
        with translated(self.path):
            for (value,) in self.conn.execute(f"select value from ({inner}) group by value order by min(n)", args):
                yield value

    def aggregate(self, expressions: Sequence[str], over: Sequence[str], **filters: Any) -> tuple[Any, ...]:
        """SQL aggregates (``max(updated)``) over columns ``over`` of the records
        ``filters`` select (see ``selection``): one tuple."""
        inner, args = selection(over, ordered=False, **filters)
        with translated(self.path):
            return self.conn.execute(f"select {', '.join(expressions)} from ({inner})", args).fetchone()

    def events(self, label: str) -> list[RecordEvent]:
        found = self.resolve(label)
        with translated(self.path):
            rows = self._query("select label, time, kind, detail from events where label = ? order by time, rowid",
                               [found])
            return [RecordEvent(**row) for row in rows]

    # -- writing -------------------------------------------------------------

    def insert(self, *records: Record) -> list[Record]:
        """Add new records (one transaction); ``created`` defaults to now.

        Returns them as stored. A label that exists already is an error.
        """
        now = time.time()
        stored = [dataclasses.replace(r, created=r.created or now, updated=now) for r in records]
        with write_transaction(self.conn):
            self.db["records"].insert_all(self._row(r, COLUMNS) for r in stored)
            self.db["events"].insert_all(
                {"label": r.label, "time": r.created, "kind": "state", "detail": r.state.value} for r in stored
            )
        return stored

    def update(self, label: str, /, **fields: Any) -> Record:
        """Set fields of a record; a change of ``state`` is logged as an event.

        Setting ``ended`` on a started record also sets ``duration``.
        """
        unknown = fields.keys() - UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
        if "state" in fields:
            fields["state"] = JobState(fields["state"])
        with write_transaction(self.conn):
            record = self.get(label)
            changed_state = "state" in fields and fields["state"] != record.state
            return self._save(record, fields, ("state", fields["state"].value) if changed_state else None)

    def add_tags(self, label: str, tags: Iterable[str]) -> Record:
        """Add the tags the record lacks (read-modify-write under the write lock)."""
        with write_transaction(self.conn):
            record = self.get(label)
            new = [t for t in dict.fromkeys(tags) if t not in record.tags]
            if not new:
                return record
            return self._save(record, {"tags": record.tags + new}, ("tag", " ".join(new)))

    def add_event(self, label: str, kind: str, detail: str) -> None:
        """Note something that happened to the record (e.g. its log copy waited for
        space): it shows among the record's events."""
        with write_transaction(self.conn):
            self.db["events"].insert({"label": self.resolve(label), "time": time.time(), "kind": kind,
                                      "detail": detail})

    # -- sweeps and metrics ------------------------------------------------------

    def sweep_of(self, name: str) -> str | None:
        """``name`` as a sweep id (it, or a unique start of one, that some record has), else None."""
        if not name.startswith(SWEEP_PREFIX):
            return None
        with translated(self.path):
            rows = self.conn.execute("select distinct sweep from records where sweep >= ? and sweep < ? limit 2",
                                     [name, name + "\U0010ffff"]).fetchall()
        if len(rows) > 1:
            raise UsageError(f"{name!r} starts more than one sweep id: give more of it")
        return rows[0][0] if rows else None

    def add_metrics(self, label: str, points: Sequence[tuple[str, float, float, int]], when: float) -> None:
        """Points of a record's metrics, each (key, step, value, offset of its line),
        taken at ``when``; one already stored (same key and line) is left as it is.
        The record keeps the last value of each key."""
        if not points:
            return
        last = {key: value for key, _, value, _ in points}
        with write_transaction(self.conn):
            self.conn.executemany("insert or ignore into metrics (label, key, step, value, time, offset) "
                                  "values (?, ?, ?, ?, ?, ?)",
                                  [(label, key, step, value, when, offset) for key, step, value, offset in points])
            row = self.conn.execute("select metrics from records where label = ?", [label]).fetchone()
            if row is not None:
                merged = {**(json.loads(row[0]) if row[0] else {}), **last}
                self.conn.execute("update records set metrics = ? where label = ?", [json_text(merged), label])

    def metrics_end(self, label: str) -> int | None:
        """Where the last line with metrics of the record's log starts (None: none yet)."""
        with translated(self.path):
            row = self.conn.execute("select max(offset) from metrics where label = ?", [label]).fetchone()
        return row[0]

    def series(self, labels: Sequence[str], keys: Sequence[str] = ()) -> dict[str, dict[str, list[tuple[float, float, float]]]]:
        """Each record's metrics as series: label -> key -> [(step, value, time)], in
        the order they were printed (only ``keys``, where given)."""
        found: dict[str, dict[str, list[tuple[float, float, float]]]] = {label: {} for label in labels}
        sql = "select label, key, step, value, time from metrics where label = ?"
        if keys:
            sql += f" and key in ({', '.join('?' * len(keys))})"
        with translated(self.path):
            for label in labels:
                for _, key, step, value, when in self.conn.execute(sql + " order by offset", [label, *keys]):
                    found[label].setdefault(key, []).append((step, value, when))
        return found

    def comment(self, label: str, text: str) -> Record:
        """Append a line to the record's notes."""
        with write_transaction(self.conn):
            record = self.get(label)
            notes = f"{record.notes}\n{text}" if record.notes else text
            return self._save(record, {"notes": notes}, ("comment", text))

    # -- rows <-> records ------------------------------------------------------

    def _query(self, sql: str, args: Any = ()) -> Iterator[dict[str, Any]]:
        cursor = self.conn.execute(sql, args)
        names = [column[0] for column in cursor.description]
        return (dict(zip(names, row)) for row in cursor)

    def _save(self, record: Record, fields: dict[str, Any], event: tuple[str, str] | None) -> Record:
        """Write ``fields`` (plus updated, duration) of ``record``; inside a write transaction."""
        now = time.time()
        changed = dataclasses.replace(record, **fields, updated=now)
        if changed.started is not None and changed.ended is not None:
            changed.duration = changed.ended - changed.started
        self.db["records"].update(changed.label, self._row(changed, [*fields, "updated", "duration"]))
        if event:
            self.db["events"].insert({"label": changed.label, "time": now, "kind": event[0], "detail": event[1]})
        return changed

    def _row(self, record: Record, names: Iterable[str]) -> dict[str, Any]:
        """Columns ``names`` of ``record`` as SQLite values; stores its package list
        (once per distinct list) and keeps only that list's sha256 in ``environment``."""
        row = {}
        for name in names:
            value = getattr(record, name)
            if name == "environment" and value and "packages" in value:
                value = self._keep_packages(value)
            if name == "state":
                value = value.value
            elif name in JSON_COLUMNS and value is not None:
                value = json_text(value)
            row[name] = value
        return row

    def _keep_packages(self, environment: dict[str, Any]) -> dict[str, Any]:
        rest = dict(environment)
        packages = rest.pop("packages")
        digest = rest.setdefault("packages_sha256", packages_sha256(packages))
        self.db["packages"].insert({"sha256": digest, "packages": json.dumps(packages)}, ignore=True)
        return rest

    def _record(self, row: Sequence[Any]) -> Record:
        """The record of a row of COLUMNS (NULL: the field's default), its package list
        read (once per list)."""
        values = {k: (json.loads(v) if k in JSON_COLUMNS else v) for k, v in zip(COLUMNS, row) if v is not None}
        values["state"] = JobState(values["state"])
        environment = values.get("environment")
        if environment and "packages_sha256" in environment:
            environment["packages"] = self.packages(environment["packages_sha256"])
        return Record(**values)

    def packages(self, digest: str) -> dict[str, str]:
        """The package list stored by its sha256 ({} when there is none), read once."""
        if digest not in self._packages:
            with translated(self.path):
                row = self.conn.execute("select packages from packages where sha256 = ?", [digest]).fetchone()
            self._packages[digest] = json.loads(row[0]) if row else {}
        return self._packages[digest]


def selection(
    columns: Sequence[str],
    *,
    tags: Iterable[str] = (),
    state: JobState | str | None = None,
    host: str | None = None,
    search: str | None = None,
    since: float | None = None,
    limit: int | None = 50,
    ordered: bool = True,
    sweep: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """SQL (and its arguments) for ``columns`` of the records newest first of which
    every filter given holds (each of ``tags`` too); at most ``limit`` (None: all).
    Without ``ordered`` (for aggregates) they come in any order, unless a limit picks
    the newest.

    ``search`` is full-text over command, tags, reason and notes: each word must
    appear, or each "quoted phrase" (taken literally, not as FTS operators).
    """
    where: list[str] = []
    args: dict[str, Any] = {}
    match: list[str] = []  # full-text terms: they narrow the rows cheaply, before exact tests
    for i, tag in enumerate(tags):
        where.append(f"exists (select 1 from json_each(records.tags) where value = :tag{i})")
        args[f"tag{i}"] = tag
        if any(c.isalnum() for c in tag):  # a tag without words has no full-text terms
            match.append(f"tags : {_fts_string(tag)}")
    if state is not None:
        where.append("state = :state")
        args["state"] = JobState(state).value
    if host is not None:
        where.append("host = :host")
        args["host"] = host
    if sweep is not None:
        where.append("sweep = :sweep")
        args["sweep"] = sweep
    if since is not None:
        where.append("created >= :since")
        args["since"] = since
    terms = [phrase or word for phrase, word in _TERM.findall(search or "")]
    if any(terms):
        match.append("({})".format(" ".join(_fts_string(t) for t in terms if t)))
    if match:
        # "+rowid": walk the records newest first testing membership, rather than
        # fetch and sort every match (a common word matches most records)
        where.append("+rowid in (select rowid from records_fts where records_fts match :match)")
        args["match"] = " AND ".join(match)
    sql = f"select {', '.join(columns)} from records"
    if where:
        sql += " where " + " and ".join(where)
    if ordered or limit is not None:
        sql += " order by created desc, rowid desc"
    if limit is not None:
        sql += " limit :limit"
        args["limit"] = limit
    return sql, args


def json_text(value: Any) -> str:
    """A JSON column's text: as ``json.dumps`` writes it by default, but for non-ASCII
    characters, kept as they are; so an export can copy it as it is."""
    return json.dumps(value, ensure_ascii=False)


def _one_line_length(text: str) -> int:
    return len(one_line(text))


def _tags_length(tags: str) -> int:
    return len(one_line(", ".join(json.loads(tags))))


def _fts_string(text: str) -> str:
    """``text`` as one FTS5 string: matched as a phrase, its operators inert."""
    return '"{}"'.format(text.replace('"', '""'))


def parse_since(text: str, now: float | None = None) -> float:
    """Unix time from an age (``90s``, ``30m``, ``2h``, ``3d``, ``1w``: that long ago)
    or an ISO date or date-time (local time unless it names a zone)."""
    age = _AGE.match(text)
    if age:
        return (time.time() if now is None else now) - float(age[1]) * _SECONDS[age[2].lower()]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise UsageError(f"--since: expected an ISO date (2024-05-01) or an age (2h, 3d), got {text!r}") from None
