"""The one map from kombu / py-amqp / redis-py / socket exceptions to the TaskctlError a user sees.

Every kombu adapter (queues, remote control) translates through :func:`translate`, so the same exception
means the same exit code everywhere: 404 and NO_ROUTE exit 3; 403, wrong credentials (``ACCESS_REFUSED``,
Redis ``NOAUTH``/``WRONGPASS``), a refused vhost, a connection closed by the broker, refused or timed-out
connections exit 5; 405/406 (exclusive, refused by the queue's arguments) exit 4; anything else exits 1.
Secrets in the URL are masked in every message.
"""

from __future__ import annotations

import re
import socket

from taskctl.errors import ConflictError, NotFoundError, OperationError, TaskctlError, UnavailableError
from taskctl.urls import mask, mask_text

_REPLY = re.compile(r"^.*?\((\d{3})\) ")

#: exception class names (kombu, py-amqp, redis-py) that mean "the broker cannot be used now"
_UNREACHABLE = frozenset(
    {
        "ConnectionError",
        "RecoverableConnectionError",
        "OperationalError",
        "TimeoutError",
        "timeout",
        "BusyLoadingError",
    }
)
_AUTH = frozenset({"AccessRefused", "AuthenticationError", "AuthenticationWrongNumberOfArgsError"})


def reply_text(text: str) -> str:
    """py-amqp's "Queue.declare: (404) NOT_FOUND - no queue 'x'" as "NOT_FOUND - no queue 'x'"."""
    return _REPLY.sub("", text, count=1)


def translate(exc: BaseException, what: str, url: str) -> TaskctlError:
    """One TaskctlError for any kombu/py-amqp/redis/socket exception; WHAT says what was being done."""
    if isinstance(exc, TaskctlError):
        return exc
    text = mask_text(str(exc) or exc.__class__.__name__, url)
    code = getattr(exc, "reply_code", None) or getattr(exc, "code", None)
    name = type(exc).__name__
    where = mask(url)
    if code == 404 or "NOT_FOUND" in text:
        return NotFoundError(f"{what}: {reply_text(text)}")
    if code == 403 or name in _AUTH or "ACCESS_REFUSED" in text or "NOAUTH" in text or "WRONGPASS" in text:
        return UnavailableError(
            f"{what}: access refused by {where}: {reply_text(text)}",
            hint="check the user and password in the broker URL, and the user's permissions on the vhost",
        )
    if code == 530 or "NOT_ALLOWED" in text:
        return UnavailableError(f"{what}: {where} refused the vhost: {reply_text(text)}", hint="check the vhost")
    if code == 320 or name == "ConnectionForced" or "CONNECTION_FORCED" in text:
        return UnavailableError(
            f"{what}: the broker closed the connection: {reply_text(text)}",
            hint="unacked messages went back to the queue; run the command again to continue",
        )
    if code in (405, 406) or name in ("ResourceLocked", "PreconditionFailed"):
        return ConflictError(f"{what}: refused by the broker: {reply_text(text)}")
    if code == 312 or "NO_ROUTE" in text:
        return NotFoundError(f"{what}: unroutable: {reply_text(text)}", hint="no queue is bound to that route")
    if isinstance(exc, OSError | EOFError) or name in _UNREACHABLE:
        reason = text
        if isinstance(exc, ConnectionRefusedError) or "connection refused" in text.lower():
            reason = "connection refused"
        elif isinstance(exc, socket.timeout | TimeoutError):
            reason = "timed out"
        return UnavailableError(
            f"{what}: cannot reach {where}: {reason}",
            hint="is the broker running? check --broker (or TASKCTL_BROKER_URL / CELERY_BROKER_URL)",
        )
    return OperationError(f"{what}: {name}: {text}")
