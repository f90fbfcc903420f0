"""The records database file: opening it, its pragmas, its schema and migrations.

The schema version lives in ``PRAGMA user_version``; ``MIGRATIONS[n]`` takes a
database from version n to n + 1. Every write goes through ``write_transaction``
(``BEGIN IMMEDIATE``), so several simtui processes can write at once: each waits
its turn for the write lock (busy timeout) instead of failing or losing a write;
a long wait is told (``on_lock_wait``) and bounded (LOCK_WAIT_S).

Faults of the file are one-line SimtuiErrors naming it (``records_error``):
read-only (a read-only mount is still read, ``immutable``), full, locked too
long, garbage, damaged, or empty (a new database is made aside and linked into
place, so a 0-byte records.db is never one of ours). $SIMTUI_HOME is 0700 and
records.db 0600.

The connection is plain sqlite3; sqlite-utils is loaded only to migrate or to
write (see sqlite_utils_on), so commands that only read start fast.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import stat
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simtui.config import simtui_home
from simtui.errors import FileFault, NoSpace, RecordsBusy, RecordsDamaged, RecordsReadOnly, SimtuiError
from simtui.provenance import packages_sha256

if TYPE_CHECKING:
    from sqlite_utils import Database

BUSY_TIMEOUT_S = 30.0  # for a statement outside write_transaction (they rarely wait in WAL mode)
WAIT_NOTICE_S = 2.0  # a writer waiting this long for the lock is told so (on_lock_wait)
LOCK_WAIT_S = 300.0  # then it gives up: RecordsBusy
SEARCHED_COLUMNS = ("command", "tags", "reason", "notes")

log = logging.getLogger("simtui.store")

# Hears "waiting for the write lock" once per wait, after WAIT_NOTICE_S; the CLI
# prints it, anything else logs it.
on_lock_wait: Callable[[str], None] | None = None

_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_IO = (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM)


class RecordsConnection(sqlite3.Connection):
    """A sqlite3 connection that knows its file (for messages) and whether it was
    opened read-only as a fallback (a read-only mount without the ``-shm`` file)."""

    path: Path
    read_only = False


def default_path() -> Path:
    return simtui_home() / "records.db"


def connect(path: str | Path | None = None, *, upgrade: bool = True) -> sqlite3.Connection:
    """Open (creating it if needed) the records database, in WAL mode.

    With ``upgrade`` (the default) the schema is brought to the latest version.
    A new database appears whole (made aside, then linked into place), so an
    empty file is never a store: it is refused, as are garbage and damaged files
    (RecordsDamaged). On a read-only mount it is opened for reading only. Errors
    are one-line SimtuiErrors that name the file (see records_error).
    """
    if str(path) == ":memory:":  # a database of this connection alone (tests, tools)
        conn = sqlite3.connect(":memory:", factory=RecordsConnection)
        conn.path = Path(":memory:")
        if upgrade:
            migrate(conn)
        return conn
    path = Path(path) if path is not None else default_path()
    try:
        _private_dir(path.parent, tighten=path.parent == simtui_home())
    except OSError as err:
        raise file_error(err, path.parent) from None
    with translated(path):
        if not os.path.lexists(path):
            _create(path, upgrade)
        conn = _open(path)
        try:
            if not conn.read_only:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash loses no committed write
            conn.execute("PRAGMA foreign_keys = ON")
            if upgrade:
                migrate(conn)
            else:
                schema_version(conn)  # reads the header: garbage is found here, not later
        except BaseException:
            conn.close()
            raise
    return conn


def _open(path: Path) -> RecordsConnection:
    """The connection; read-only (``immutable``) where SQLite cannot open the file
    or make its ``-shm`` and no one can write it (a read-only mount, or a file and
    folder this user may not write)."""
    try:
        size = path.stat().st_size
    except OSError as err:
        raise file_error(err, path) from None
    if not path.is_file():
        raise RecordsDamaged(path, "not a file")
    if size == 0:
        raise RecordsDamaged(path, "empty (0 bytes), not a records database")
    _private_file(path)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, factory=RecordsConnection)
    conn.path = path
    try:
        conn.execute("PRAGMA schema_version").fetchone()  # reads the file: opens the WAL, the -shm
        return conn
    except sqlite3.OperationalError as err:
        conn.close()
        if _code(err) not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR) \
                or _writable(path):
            raise
    except BaseException:
        conn.close()
        raise
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?immutable=1"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, factory=RecordsConnection)
    conn.path, conn.read_only = path, True
    return conn


def _create(path: Path, upgrade: bool) -> None:
    """Make a new database beside ``path`` and link it into place: another process
    sees no file or a whole one, never an empty file (which ``_open`` refuses)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.new")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        conn = sqlite3.connect(tmp, timeout=BUSY_TIMEOUT_S, factory=RecordsConnection)
        conn.path = path  # for messages
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            if upgrade:
                migrate(conn)
        finally:
            conn.close()  # the last connection: the WAL is checkpointed and removed
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: theirs stands
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            if not os.path.lexists(path):  # no hard links here: not atomic, the window is small
                os.rename(tmp, path)
    except OSError as err:
        if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise RecordsReadOnly(path, _read_only_why(path) or err.strerror or str(err)) from None
        raise file_error(OSError(err.errno, err.strerror), path) from None  # named: records.db, not the file aside
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _private_dir(folder: Path, *, tighten: bool) -> None:
    """Make ``folder`` (0700); with ``tighten`` (it is $SIMTUI_HOME) an existing one
    of ours is made 0700 too."""
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return
    if tighten:
        with contextlib.suppress(OSError):
            st = folder.stat()
            if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
                os.chmod(folder, 0o700)


def _private_file(path: Path) -> None:
    """records.db and its -wal/-shm (which SQLite makes with the database's mode)
    0600; in $SIMTUI_HOME also the server's log, made by others with the umask's mode."""
    files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
    if path.parent == simtui_home():
        files += [path.parent / "server.log", path.parent / "server.log.1"]
    for file in files:
        with contextlib.suppress(OSError):
            st = file.stat()
            if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
                os.chmod(file, stat.S_IMODE(st.st_mode) & 0o700)


# -- errors -----------------------------------------------------------------------


def _code(err: sqlite3.Error) -> int:
    """The primary SQLite result code of an error (0 when unknown)."""
    return (getattr(err, "sqlite_errorcode", None) or 0) & 0xFF


def _writable(path: Path) -> bool:
    """Whether this process may write the database and make files beside it."""
    try:
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            return False
    except OSError:
        return False
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def _read_only_why(path: Path) -> str | None:
    """Why ``path`` cannot be written, or None when it can."""
    with contextlib.suppress(OSError):
        if os.statvfs(path.parent if path.parent.exists() else path).f_flag & os.ST_RDONLY:
            return "read-only file system"
    if path.exists() and not os.access(path, os.W_OK):
        return "no write permission"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"no write permission on its folder {path.parent}"
    return None


def _full(path: Path) -> bool:
    with contextlib.suppress(OSError):
        st = os.statvfs(path.parent)
        return st.f_bavail * st.f_frsize < 64 * 1024 or (st.f_files > 0 and st.f_favail == 0)
    return False


def records_error(err: sqlite3.Error, path: Path | str | None) -> SimtuiError | None:
    """The one-line error for an SQLite error on the records database, or None when
    it is not about the file (a bug, a constraint: then the original stands)."""
    path = Path(path) if path is not None else default_path()
    code = _code(err)
    if code in _BUSY:
        return RecordsBusy(path, BUSY_TIMEOUT_S)  # a statement outside write_transaction waited this long
    if code == sqlite3.SQLITE_FULL or (code in _IO and _full(path)):
        return NoSpace(path)
    if code == sqlite3.SQLITE_READONLY or code in _IO:
        why = _read_only_why(path)
        if why is not None or code == sqlite3.SQLITE_READONLY:
            return RecordsReadOnly(path, why or str(err))
    if code == sqlite3.SQLITE_NOTADB:
        return RecordsDamaged(path, f"not an SQLite database ({err})")
    if code == sqlite3.SQLITE_CORRUPT:
        return RecordsDamaged(path, f"damaged ({err})", recoverable=True)
    if code in _IO:
        return FileFault.of(path, f"cannot be read or written ({err})",
                            "check the file and its folder (owner, mode, disk)")
    return None


def file_error(err: OSError, path: Path | str) -> SimtuiError:
    """The one-line error for an OSError on a file simtui keeps."""
    where = err.filename or path
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(where)
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return FileFault.of(where, err.strerror or str(err),
                            "make it writable, or set SIMTUI_HOME to a writable folder")
    return FileFault.of(where, err.strerror or str(err))


@contextlib.contextmanager
def translated(path: Path | str | None) -> Iterator[None]:
    """SQLite errors about the file (read-only, full, locked, damaged) as one-line
    SimtuiErrors naming it; any other error unchanged."""
    try:
        yield
    except sqlite3.Error as err:
        mapped = records_error(err, path)
        if mapped is None:
            raise
        raise mapped from None


def path_of(conn: Any) -> Path | None:
    """The file of a connection (a sqlite-utils Database's too)."""
    raw = _raw(conn)
    known = getattr(raw, "path", None)
    if known is not None:
        return known
    with contextlib.suppress(sqlite3.Error):
        file = raw.execute("PRAGMA database_list").fetchone()[2]
        return Path(file) if file else None
    return None


def _raw(conn: Any) -> sqlite3.Connection:
    inner = getattr(conn, "conn", None)  # a sqlite-utils Database
    return inner if isinstance(inner, sqlite3.Connection) else conn


# -- writing ----------------------------------------------------------------------


@contextlib.contextmanager
def write_transaction(conn: Any) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: take the write lock before reading,
    so a read-modify-write cannot interleave with another process's.

    A lock another process holds is waited for (SQLite's busy handler backs off),
    and after WAIT_NOTICE_S the wait is told (on_lock_wait); after LOCK_WAIT_S it
    is RecordsBusy. A failed write rolls back: what was committed before stays."""
    raw = _raw(conn)
    path = path_of(raw)
    with translated(path):
        _begin(raw, path)
        try:
            yield
            raw.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    raw.rollback()
            raise


def _begin(raw: sqlite3.Connection, path: Path | None) -> None:
    started = time.monotonic()
    wait = WAIT_NOTICE_S
    told = False
    try:
        while True:
            raw.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as err:
                if _code(err) not in _BUSY:
                    raise
            waited = time.monotonic() - started
            if waited >= LOCK_WAIT_S:
                raise RecordsBusy(path or default_path(), waited)
            if not told:
                told = True
                _tell(f"waiting for the write lock on {path or default_path()}: another process holds it "
                      f"(waiting up to {LOCK_WAIT_S:.0f}s; Ctrl-C stops)")
            wait = min(1.0, LOCK_WAIT_S - waited)  # SQLite's busy handler backs off within each try
    finally:
        with contextlib.suppress(sqlite3.Error):
            raw.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")


def _tell(message: str) -> None:
    if on_lock_wait is not None:
        on_lock_wait(message)
    else:
        log.warning("%s", message)


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


def _v6_json_as_exported(db: Database) -> None:
    """Every JSON column in the form an export writes (json.dumps's separators,
    non-ASCII as it is: an export copies the text as it is), and every package list
    still inside a record's environment moved into ``packages``, once by its sha256."""
    names = ("argv", "tags", "params", "git", "environment", "inputs", "outputs", "needs", "spec", "params_file",
             "reproduction")
    conn, last = db.conn, -1
    while True:
        batch = conn.execute(f"select rowid, {', '.join(names)} from records where rowid > ? order by rowid limit 1000",
                             [last]).fetchall()
        if not batch:
            return
        changed = []
        for rowid, *texts in batch:
            values = dict(zip(names, (None if text is None else json.loads(text) for text in texts)))
            environment = values["environment"]
            if isinstance(environment, dict) and isinstance(environment.get("packages"), dict):
                packages = environment.pop("packages")
                digest = environment.setdefault("packages_sha256", packages_sha256(packages))
                conn.execute("insert or ignore into packages (sha256, packages) values (?, ?)",
                             [digest, json.dumps(packages)])
            new = [None if value is None else json.dumps(value, ensure_ascii=False) for value in values.values()]
            if new != texts:
                changed.append([*new, rowid])
        conn.executemany(f"update records set {', '.join(f'{name} = ?' for name in names)} where rowid = ?", changed)
        last = batch[-1][0]


def _v7_scheduler(db: Database) -> None:
    """What a host's scheduler says of a job (Slurm: its job id, partition, nodes, state)."""
    db["records"].add_column("scheduler", str)


def _v8_sweeps_and_metrics(db: Database) -> None:
    """The sweep a record belongs to, the last value of each of its metrics, and
    every point of them: (label, key, step, value, time, offset), one a metric per
    line of the log (``offset``: where the line starts), so reading a line again
    adds nothing."""
    db["records"].add_column("sweep", str)
    db["records"].add_column("metrics", str)
    db.conn.execute("create index records_sweep on records (sweep) where sweep is not null")
    db.conn.execute("create table metrics (label text not null, key text not null, step real not null, "
                    "value real not null, time real not null, offset integer not null, "
                    "primary key (label, key, offset)) without rowid")


def _v9_container(db: Database) -> None:
    """The container image a job ran in: engine, version, image as asked, id, digest."""
    db["records"].add_column("container", str)


def _v10_machines(db: Database) -> None:
    """Machines made for a job (a provider's create until its destroy), and what the
    record keeps of its own: provider, size, price, when it was made and destroyed, cost."""
    db["records"].add_column("machine", str)
    db.conn.execute("create table machines (name text primary key, provider text not null, size text not null, "
                    "label text not null, created real not null, state text not null, address text, port integer, "
                    "user text, host_keys text, machine_id text, price real, ready real, destroyed real, "
                    "error text)")
    db.conn.execute("create index machines_live on machines (state) where state != 'gone'")


MIGRATIONS: list[Callable[[Database], None]] = [_v1_tables, _v2_search, _v3_notifications, _v4_venv,
                                                _v5_run_contract, _v6_json_as_exported, _v7_scheduler,
                                                _v8_sweeps_and_metrics, _v9_container, _v10_machines]
