"""Exit codes and the error tree: every failure a user can see maps to one code here.

ExitCode        code  TaskctlError subclass       when
OK                 0  -                           success; also a closed stdout (`taskctl ... | head`)
FAILED             1  OperationError, CheckFailed the server failed the operation, or a --check found a problem
                      DiskFullError               no space left on device / quota exceeded (code disk-full)
                      NotConfirmedError           the user answered no at a confirmation prompt
USAGE              2  UsageError (MissingExtra)   bad URL, bad option, unknown command, destructive command
                                                  without --yes off a terminal, a user-given path that is a
                                                  directory (or not one)
NOT_FOUND          3  NotFoundError               table, result, queue or user-given file does not exist
CONFLICT           4  ConflictError               refused by the server's rules (schema, TTL change, ...)
UNAVAILABLE        5  UnavailableError            cannot connect or authenticate (refused, timeout, denied);
                      PermissionDeniedError       permission denied or read-only file system on a local path
WAIT_TIMEOUT     124  WaitTimeoutError            gave up waiting (same code as timeout(1))
INTERRUPTED      130  InterruptedError_           Ctrl-C (128 + SIGINT); only Ctrl-C, never a declined prompt

An OSError that escapes an operation is mapped by :func:`from_os_error` at the one catch site (cli.py).
"""

from __future__ import annotations

import errno
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
            hint=f"install the {extra!r} extra: pip install '.[{extra}]' in taskctl's checkout",
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


class NotConfirmedError(TaskctlError):
    """A declined prompt: a deliberate "no" is not Ctrl-C, so it does not share 130."""

    exit_code = ExitCode.FAILED
    code = "not-confirmed"


class DiskFullError(OperationError):
    code = "disk-full"


class PermissionDeniedError(UnavailableError):
    code = "permission-denied"


_BY_EXIT_CODE: dict[ExitCode, type[TaskctlError]] = {
    ExitCode.FAILED: OperationError,
    ExitCode.USAGE: UsageError,
    ExitCode.NOT_FOUND: NotFoundError,
    ExitCode.CONFLICT: ConflictError,
    ExitCode.UNAVAILABLE: UnavailableError,
    ExitCode.WAIT_TIMEOUT: WaitTimeoutError,
    ExitCode.INTERRUPTED: InterruptedError_,
}


def error_for(exit_code: ExitCode, message: str) -> TaskctlError:
    """The error a result's exit code stands for (a --check that found a problem, ids not found), to report."""
    return _BY_EXIT_CODE.get(exit_code, OperationError)(message)


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


def from_os_error(exc: OSError) -> TaskctlError | None:
    """An OSError that escaped an operation, as an error a user can act on; None where it is a bug.

    Disk full maps whatever the path; the others only with a path (a user-given file or folder), since
    without one they say nothing the user can fix.
    """
    path = exc.filename if isinstance(exc.filename, str) else None
    where = f": {path}" if path else ""
    if exc.errno in _DISK_FULL:
        return DiskFullError(
            f"no space left on device{where}",
            hint="free some space (or write somewhere else) and run again",
        )
    if path is None:
        return None
    reason = exc.strerror or str(exc)
    if exc.errno in _DENIED:
        return PermissionDeniedError(
            f"{reason.lower()}{where}", hint="check the permissions of the path, or choose another one"
        )
    if exc.errno == errno.ENOENT:
        return NotFoundError(f"no such file or directory{where}", hint="check the path")
    if exc.errno in (errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG):
        return UsageError(f"{reason.lower()}{where}", hint="give the path of a file")
    return None


EXIT_CODE_DOCS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.FAILED: "operation failed (server error, disk full), a --check found a problem, or a prompt was declined",
    ExitCode.USAGE: "usage or bad input: bad URL, bad option, unknown command, destructive command without --yes off a terminal",
    ExitCode.NOT_FOUND: "not found: table, result, queue or file",
    ExitCode.CONFLICT: "refused by the server's rules or a conflict: incompatible schema, TTL change refused",
    ExitCode.UNAVAILABLE: "cannot reach or authenticate: connection refused, timeout, bad credentials, access or permission denied",
    ExitCode.WAIT_TIMEOUT: "timed out waiting",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}
