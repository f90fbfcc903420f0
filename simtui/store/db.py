"""The records database file: opening it, its pragmas, its schema and migrations.

The schema version lives in ``PRAGMA user_version``; ``MIGRATIONS[n]`` takes a
database from version n to n + 1. Every write goes through ``write_transaction``
(``BEGIN IMMEDIATE``), so several simtui processes can write at once: each waits
its turn for the write lock (busy timeout) instead of failing or losing a write.

The connection is plain sqlite3; sqlite-utils is loaded only to migrate or to
write (see sqlite_utils_on), so commands that only read start fast.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from simtui.config import simtui_home
from simtui.errors import SimtuiError

if TYPE_CHECKING:
    from sqlite_utils import Database

BUSY_TIMEOUT_S = 30.0
SEARCHED_COLUMNS = ("command", "tags", "reason", "notes")


def default_path() -> Path:
    return simtui_home() / "records.db"


def connect(path: str | Path | None = None, *, upgrade: bool = True) -> sqlite3.Connection:
    """Open (creating it if needed) the records database, in WAL mode.

    With ``upgrade`` (the default) the schema is brought to the latest version.
    """
    path = Path(path) if path is not None else default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)  # the busy timeout
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash loses no committed write
    conn.execute("PRAGMA foreign_keys = ON")
    if upgrade:
        migrate(conn)
    return conn


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: take the write lock before reading,
    so a read-modify-write cannot interleave with another process's."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.execute("COMMIT")


def sqlite_utils_on(conn: sqlite3.Connection) -> Database:
    """A sqlite-utils Database over ``conn``, importing sqlite-utils without numpy
    and pandas.

    sqlite-utils imports both when they are installed, only to map their scalar
    types to column types; simtui stores no such values. Hiding them during the
    import saves ~150 ms in a scientific Python environment; they import
    normally afterwards.
    """
    hidden = [name for name in ("numpy", "pandas") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail
    try:
        from sqlite_utils import Database
    finally:
        for name in hidden:
            del sys.modules[name]
    return Database(conn, execute_plugins=False)


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, to: int | None = None) -> None:
    """Apply the migrations the database lacks, up to version ``to`` (default: all)."""
    target = len(MIGRATIONS) if to is None else to
    current = schema_version(conn)
    if current > len(MIGRATIONS):
        file = conn.execute("PRAGMA database_list").fetchone()[2]
        raise SimtuiError(f"{file}: written by a newer simtui (schema {current}, this one knows "
                          f"{len(MIGRATIONS)}); upgrade simtui")
    if current >= target:
        return
    db = sqlite_utils_on(conn)
    with write_transaction(conn):
        version = schema_version(conn)  # again: another process may have migrated meanwhile
        for migration in MIGRATIONS[version:target]:
            migration(db)
        conn.execute(f"PRAGMA user_version = {max(version, target)}")


# -- migrations: append only; never edit one that has shipped ---------------------


def _v1_tables(db: Database) -> None:
    """Records (small columns first, so filters never read the bulky ones), their
    events, and package lists stored once per distinct list (by sha256)."""
    db["records"].create(
        {
            "label": str, "state": str, "host": str, "created": float, "started": float,
            "ended": float, "duration": float, "exit_code": int, "updated": float,
            "tags": str, "command": str, "project": str, "workdir": str, "repeat_of": str,
            "after": str, "pid": int, "jobs_dir": str, "needs": str, "outputs_dir": str,
            "reason": str, "notes": str, "placement": str, "peak_rss": int, "peak_gpu_mem": int,
            "argv": str, "params": str, "inputs": str, "outputs": str, "git": str,
            "environment": str, "log_tail": str,
        },
        pk="label",
        not_null={"state", "host", "command", "created", "updated"},
        defaults={"tags": "[]"},
    )
    db["records"].create_index(["created"])
    db["records"].create_index(["host", "created"])
    db["records"].create_index(["state", "created"])
    db["events"].create(
        {"label": str, "time": float, "kind": str, "detail": str},
        not_null={"label", "time", "kind"},
        foreign_keys=[("label", "records", "label")],
    )
    db["events"].create_index(["label", "time"])
    db["packages"].create({"sha256": str, "packages": str}, pk="sha256", not_null={"packages"})


def _v2_search(db: Database) -> None:
    """Full-text search over command, tags, reason and notes, kept current by triggers."""
    db["records"].enable_fts(SEARCHED_COLUMNS, create_triggers=True)


def _v3_notifications(db: Database) -> None:
    """Notifications claimed, one row per event (``key`` is unique), so that of
    several simtui processes that see the same event exactly one sends it."""
    db["notifications"].create(
        {"key": str, "event": str, "label": str, "host": str, "time": float,
         "claimed_by": str, "status": str, "detail": str},
        pk="key",
        not_null={"event", "time", "status"},
    )
    db["notifications"].create_index(["host", "time"])
    db["notifications"].create_index(["time"])


def _v4_venv(db: Database) -> None:
    """The virtual environment a job ran in (simtui env), on its host."""
    db["records"].add_column("venv", str)


def _v5_run_contract(db: Database) -> None:
    """The run contract: the spec whole, the run's own folder, where its outputs are,
    the merged parameters file, the pid's start time, who is starting it, and a
    reproduction's verdict."""
    for name, kind in (("spec", str), ("run_dir", str), ("outputs_root", str), ("params_file", str),
                       ("pid_start", int), ("client", str), ("reproduction", str)):
        db["records"].add_column(name, kind)


MIGRATIONS: list[Callable[[Database], None]] = [_v1_tables, _v2_search, _v3_notifications, _v4_venv,
                                                _v5_run_contract]
