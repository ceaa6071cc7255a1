"""Exit codes and the error tree: every failure a user can see maps to one code here.

ExitCode        code  TaskctlError subclass       when
OK                 0  -                           success
FAILED             1  OperationError, CheckFailed the server failed the operation, or a --check found a problem
USAGE              2  UsageError (MissingExtra)   bad URL, bad option, destructive command without --yes
NOT_FOUND          3  NotFoundError               table, result or queue does not exist
CONFLICT           4  ConflictError               refused by the server's rules (schema, TTL change, ...)
UNAVAILABLE        5  UnavailableError            cannot connect or authenticate (refused, timeout, denied)
WAIT_TIMEOUT     124  WaitTimeoutError            gave up waiting (same code as timeout(1))
INTERRUPTED      130  InterruptedError_           Ctrl-C (128 + SIGINT)
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    CONFLICT = 4
    UNAVAILABLE = 5
    WAIT_TIMEOUT = 124
    INTERRUPTED = 130


class TaskctlError(Exception):
    """Base of every error a user may see; carries its exit code, a stable code string and a hint."""

    exit_code: ExitCode = ExitCode.FAILED
    code: str = "failed"

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def to_json(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "exit_code": int(self.exit_code),
        }


class OperationError(TaskctlError):
    exit_code = ExitCode.FAILED
    code = "failed"


class CheckFailed(TaskctlError):
    exit_code = ExitCode.FAILED
    code = "check-failed"


class UsageError(TaskctlError):
    exit_code = ExitCode.USAGE
    code = "usage"


class MissingExtraError(UsageError):
    """An optional dependency is not installed; names the pip extra that brings it."""

    code = "missing-extra"

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{module}', which is not installed",
            hint=f"pip install 'taskctl[{extra}]'",
        )


class NotFoundError(TaskctlError):
    exit_code = ExitCode.NOT_FOUND
    code = "not-found"


class ConflictError(TaskctlError):
    exit_code = ExitCode.CONFLICT
    code = "conflict"


class UnavailableError(TaskctlError):
    exit_code = ExitCode.UNAVAILABLE
    code = "unavailable"


class WaitTimeoutError(TaskctlError):
    exit_code = ExitCode.WAIT_TIMEOUT
    code = "timeout"


class InterruptedError_(TaskctlError):
    exit_code = ExitCode.INTERRUPTED
    code = "interrupted"


EXIT_CODE_DOCS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.FAILED: "operation failed (server error), or a --check found a problem",
    ExitCode.USAGE: "usage or bad input: bad URL, bad option, destructive command without --yes off a terminal",
    ExitCode.NOT_FOUND: "not found: table, result or queue",
    ExitCode.CONFLICT: "refused by the server's rules or a conflict: incompatible schema, TTL change refused",
    ExitCode.UNAVAILABLE: "cannot reach or authenticate: connection refused, timeout, bad credentials, access denied",
    ExitCode.WAIT_TIMEOUT: "timed out waiting",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}
