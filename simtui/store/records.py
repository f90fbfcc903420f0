"""Records and their events: insert, update, look up by label prefix, find with filters.

Every write is one ``BEGIN IMMEDIATE`` transaction (see db.write_transaction), so
a tag or a comment added by one process never overwrites another's. Each change
of state, tag or comment also lands in ``events`` with its own timestamp.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simtui.errors import AmbiguousLabel, UnknownLabel, UsageError
from simtui.model import JobState, Record, RecordEvent
from simtui.provenance import packages_sha256
from simtui.store.db import connect, path_of, sqlite_utils_on, translated, write_transaction

if TYPE_CHECKING:
    from sqlite_utils import Database

COLUMNS = tuple(f.name for f in dataclasses.fields(Record))
JSON_COLUMNS = frozenset({"argv", "tags", "params", "git", "environment", "inputs", "outputs", "needs", "spec",
                          "params_file", "reproduction"})
UPDATABLE = frozenset(COLUMNS) - {"label", "created", "updated"}
MAX_CANDIDATES = 10
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_TERM = re.compile(r'"([^"]*)"?|(\S+)')  # a "quoted phrase" or a word


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
            return self._record(next(self._query("select * from records where label = ?", [found])))

    def find(
        self,
        *,
        tags: Iterable[str] = (),
        state: JobState | str | None = None,
        host: str | None = None,
        search: str | None = None,
        since: float | None = None,
        limit: int | None = 50,
    ) -> Iterator[Record]:
        """Records newest first; every filter given must hold (each of ``tags`` too).

        ``search`` is full-text over command, tags, reason and notes: each word
        must appear, or each "quoted phrase" (taken literally, not as FTS operators).
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
        sql = "select * from records"
        if where:
            sql += " where " + " and ".join(where)
        sql += " order by created desc, rowid desc"
        if limit is not None:
            sql += " limit :limit"
            args["limit"] = limit
        return self._records(sql, args)

    def _records(self, sql: str, args: Any) -> Iterator[Record]:
        with translated(self.path):
            for row in self._query(sql, args):
                yield self._record(row)

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
                value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            row[name] = value
        return row

    def _keep_packages(self, environment: dict[str, Any]) -> dict[str, Any]:
        rest = dict(environment)
        packages = rest.pop("packages")
        digest = rest.setdefault("packages_sha256", packages_sha256(packages))
        self.db["packages"].insert({"sha256": digest, "packages": json.dumps(packages)}, ignore=True)
        return rest

    def _record(self, row: dict[str, Any]) -> Record:
        values = {k: (json.loads(v) if k in JSON_COLUMNS else v) for k, v in row.items() if v is not None}
        values["state"] = JobState(values["state"])
        environment = values.get("environment")
        if environment and "packages_sha256" in environment:
            environment["packages"] = self._package_list(environment["packages_sha256"])
        return Record(**values)

    def _package_list(self, digest: str) -> dict[str, str]:
        if digest not in self._packages:
            with translated(self.path):
                row = self.conn.execute("select packages from packages where sha256 = ?", [digest]).fetchone()
            self._packages[digest] = json.loads(row[0]) if row else {}
        return self._packages[digest]


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
