"""Typed errors that carry their exit code and a one-line message for the user.

Exit codes (the CLI prints ``simtui: <message>`` and exits with the error's code):

* 1: the job failed, no host fits, or the machine is in the way: records.db or
  $SIMTUI_HOME read-only (RecordsReadOnly), its write lock held too long by
  another process (RecordsBusy), a full filesystem (NoSpace), a file simtui
  needs that it cannot open or write (FileFault). Nothing is wrong with what the
  user gave or holds; the same command works once the machine is fixed.
* 2: usage, config or data problems: a bad flag or parameter file (UsageError,
  ConfigError), a records.db that is damaged, garbage or empty (RecordsDamaged):
  what the user gave or keeps must change.
* 3: a host could not be reached or refused us (HostError).
"""

from __future__ import annotations


class SimtuiError(Exception):
    """Base of every error simtui reports to a user; ``str(err)`` is the one line."""

    exit_code = 1


class UsageError(SimtuiError):
    """Bad input on the command line or in a file the user gave (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A problem in the config file: names the file, the key and what is wrong."""

    def __init__(self, file: str, key: str | None, problem: str) -> None:
        self.file, self.key, self.problem = file, key, problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


class HostError(SimtuiError):
    """A host could not be reached or refused us (exit 3)."""

    exit_code = 3
    reason = "error"

    def __init__(self, host: str, detail: str) -> None:
        self.host, self.detail = host, detail
        super().__init__(f"{host}: {detail}")


class UnknownHostKey(HostError):
    reason = "unknown host key"


class ChangedHostKey(HostError):
    reason = "changed host key"


class AuthRefused(HostError):
    reason = "authentication refused"


class ConnectionRefused(HostError):
    reason = "connection refused"


class HostTimeout(HostError):
    reason = "timeout"


class HostUnreachable(HostError):
    reason = "unreachable"


class HostDisconnected(HostError):
    reason = "disconnected"


class ProbeFailed(HostError):
    """The host answered but its resource probe did not: it crashed or spoke nonsense."""

    reason = "probe failed"


class CommandFailed(SimtuiError):
    """A command on a host exited non-zero where success was required."""

    def __init__(self, host: str, command: str, exit_status: int | None, stderr: str) -> None:
        self.exit_status, self.stderr = exit_status, stderr
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
        super().__init__(f"{host}: `{command}` exited {exit_status}: {last}")


class LaunchError(SimtuiError):
    """A recorded job did not start (its record says failed, and why); the exit code
    is its cause's: 3 when the host could not be reached, 2 for what the user can fix."""

    def __init__(self, label: str, cause: SimtuiError) -> None:
        self.label, self.cause = label, cause
        self.exit_code = cause.exit_code if isinstance(cause, (HostError, UsageError)) else HostError.exit_code
        super().__init__(f"{label} did not start: {cause}")


class UnknownLabel(UsageError):
    """No record has this label or label prefix (exit 2)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        super().__init__(f"no record with label {prefix!r} (see `simtui list`)")


class AmbiguousLabel(UsageError):
    """A label prefix matches several records; ``candidates`` lists some of them."""

    def __init__(self, prefix: str, candidates: list[str], more: bool) -> None:
        self.prefix, self.candidates = prefix, candidates
        listed = ", ".join(candidates) + (", ..." if more else "")
        super().__init__(f"label {prefix!r} is ambiguous; it matches {listed} (give more characters)")


class FileFault(SimtuiError):
    """A file or folder simtui needs could not be opened or written (exit 1): the
    message names the path, what went wrong and what to do."""

    def __init__(self, path: object, message: str) -> None:
        self.path = str(path)
        super().__init__(message)

    @classmethod
    def of(cls, path: object, problem: str, fix: str = "") -> FileFault:
        return cls(path, f"{path}: {problem}" + (f"; {fix}" if fix else ""))


class NoSpace(FileFault):
    """The filesystem holding ``path`` is full (ENOSPC, EDQUOT, SQLITE_FULL); nothing
    already written is lost (exit 1)."""

    def __init__(self, path: object, then: str = "free some space there and run it again") -> None:
        super().__init__(path, f"no space left on the device of {path}: {then}")


class RecordsError(FileFault):
    """records.db cannot be used as it is."""


class RecordsReadOnly(RecordsError):
    """records.db (or its folder) cannot be written: a read-only mount, or no write
    permission (exit 1). Reading still works where SQLite can."""

    def __init__(self, path: object, why: str) -> None:
        self.why = why
        super().__init__(path, f"{path} is read-only ({why}): simtui cannot record anything there; make it "
                               "writable, or set SIMTUI_HOME to a writable folder")


class RecordsBusy(RecordsError):
    """Another process held the write lock of records.db for longer than simtui waits (exit 1)."""

    def __init__(self, path: object, waited: float) -> None:
        self.waited = waited
        super().__init__(path, f"{path} is locked: another process has held its write lock for {waited:.0f}s; "
                               "end it (a sqlite3 shell left in a transaction? `fuser` lists who has the file "
                               "open) and run it again")


class RecordsDamaged(RecordsError):
    """records.db is not a usable SQLite database: garbage, truncated, damaged, or an
    empty file (exit 2: the file must be restored or moved away)."""

    exit_code = 2

    def __init__(self, path: object, what: str, *, recoverable: bool = False) -> None:
        recover = f"; `sqlite3 {path} .recover` may save its records" if recoverable else ""
        super().__init__(path, f"{path} is {what}: move it away (simtui then starts a new, empty one) or "
                               f"restore it from a backup{recover}")
