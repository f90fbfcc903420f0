"""Machines made for a job, in the records database: the truth about what may
still cost money, kept from before a provider's create runs until its destroy
has succeeded, so a simtui that crashes in between leaves nothing unaccounted."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from simtui.model import Machine
from simtui.store.db import translated, write_transaction

if TYPE_CHECKING:
    from simtui.store.records import Store

_COLUMNS = ("name", "provider", "size", "label", "created", "state", "address", "port", "user", "host_keys",
            "machine_id", "price", "ready", "destroyed", "error")


def _machine(row: tuple[Any, ...]) -> Machine:
    data = dict(zip(_COLUMNS, row))
    data["host_keys"] = tuple(json.loads(data["host_keys"] or "[]"))
    return Machine.from_dict(data)


def add(store: Store, machine: Machine) -> None:
    row = machine.to_dict()
    row["host_keys"] = json.dumps(list(machine.host_keys))
    with write_transaction(store.conn):
        store.db["machines"].insert(row)


def update(store: Store, name: str, **fields: Any) -> Machine:
    if "host_keys" in fields:
        fields["host_keys"] = json.dumps(list(fields["host_keys"]))
    with write_transaction(store.conn):
        store.db["machines"].update(name, fields)
    return get(store, name)


def get(store: Store, name: str) -> Machine | None:
    with translated(store.path):
        row = store.conn.execute(f"select {', '.join(_COLUMNS)} from machines where name = ?", [name]).fetchone()
    return _machine(row) if row else None


def listed(store: Store, *, live: bool = True, limit: int | None = None) -> list[Machine]:
    """Machines not destroyed yet (with ``live``), else all; newest first."""
    sql = f"select {', '.join(_COLUMNS)} from machines"
    if live:
        sql += " where state != 'gone'"
    sql += " order by created desc"
    if limit is not None:
        sql += f" limit {int(limit)}"
    with translated(store.path):
        return [_machine(row) for row in store.conn.execute(sql).fetchall()]
