"""Typed errors that carry their exit code and a one-line message for the user."""

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
