"""Notifications claimed in the records database, so that each event is sent once.

Several simtui processes (a dashboard, ``simtui watch``, ``simtui run --follow``)
may see the same event. Each tries to claim it with ``INSERT OR IGNORE`` on the
event's unique key inside a write transaction; only the one whose row went in
sends. The outcome then lands on that row and, for a job, in its record's events
(kind ``notify``).

Keys: ``job:<label>:<event>`` for job events (each happens once per label);
``host:<name>:<event>:<time of the previous opposite event>`` for host events, so
that every down/up episode of a host has its own pair of keys.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from simtui.store.db import write_transaction

if TYPE_CHECKING:
    from sqlite_utils import Database

HOST_EVENTS = ("host_down", "host_up")
PENDING, SENT, FAILED, PARTIAL, OFF = "pending", "sent", "failed", "partial", "off"


def claimer() -> str:
    """Who claimed a row: this machine and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _insert(db: Database, key: str, event: str, label: str | None, host: str, status: str) -> bool:
    cursor = db.execute(
        "insert or ignore into notifications (key, event, label, host, time, claimed_by, status) "
        "values (?, ?, ?, ?, ?, ?, ?)",
        [key, event, label, host, time.time(), claimer(), status],
    )
    return cursor.rowcount == 1


def claim_job(db: Database, label: str, host: str, event: str) -> str | None:
    """Claim a job's event; its key when this process is the one to send it, else None."""
    key = f"job:{label}:{event}"
    with write_transaction(db):
        return key if _insert(db, key, event, label, host, PENDING) else None


def claim_sweep(db: Database, sweep: str, host: str, event: str, runs: int) -> str | None:
    """Claim telling that ``sweep``, of ``runs`` runs, ended: its key when this process
    is the one to tell it, else None. Once a sweep and count of runs: a rerun into
    the sweep adds runs, and its end is told again."""
    key = f"sweep:{sweep}:{event}:{runs}"
    with write_transaction(db):
        return key if _insert(db, key, event, sweep, host, PENDING) else None


def claim_machine(db: Database, name: str, label: str, event: str) -> str | None:
    """Claim telling ``event`` of a machine made for a job (once a machine and event)."""
    key = f"machine:{name}:{event}"
    with write_transaction(db):
        return key if _insert(db, key, event, label, name, PENDING) else None


def claim_host(db: Database, host: str, event: str, wanted: bool) -> str | None:
    """Record that ``host`` went down (or came back up) and claim telling it.

    Only a change counts: down when the last recorded host event was not down,
    up only after a recorded down. With ``wanted`` false the change is recorded
    (status ``off``), so that episodes line up for everyone, and None returned.
    """
    with write_transaction(db):
        last = db.execute(
            "select event, time from notifications where host = ? and event in (?, ?) "
            "order by time desc, rowid desc limit 1",
            [host, *HOST_EVENTS],
        ).fetchone()
        if (last is None and event == "host_up") or (last is not None and last[0] == event):
            return None
        key = f"host:{host}:{event}:{last[1] if last else 0!r}"
        inserted = _insert(db, key, event, None, host, PENDING if wanted else OFF)
    return key if inserted and wanted else None


def finish(db: Database, key: str, status: str, detail: str, label: str | None, lines: Iterable[str]) -> None:
    """Keep how the sending went: on the claimed row, and one ``notify`` event per
    line in the record's events (for a job)."""
    now = time.time()
    with write_transaction(db):
        db.execute("update notifications set status = ?, detail = ? where key = ?", [status, detail, key])
        if label is not None:
            db["events"].insert_all({"label": label, "time": now, "kind": "notify", "detail": line} for line in lines)


def recent(db: Database, limit: int | None = 50) -> list[dict[str, Any]]:
    """Claimed notifications, newest first."""
    sql = "select key, event, label, host, time, claimed_by, status, detail from notifications " \
          "order by time desc, rowid desc"
    if limit is not None:
        sql += f" limit {int(limit)}"
    return list(db.query(sql))
