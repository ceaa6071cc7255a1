"""Remote-control (kombu pidbox) requests and replies, as ``celery.app.control.Control`` sends and reads them.

Pure: task ids, signals, the revoke arguments, reply bodies. The message around them is built and sent by
``kombu.pidbox.Mailbox`` in taskctl.backends.control, as Celery sends it.

Request (celery-formats §6.2), published to the fanout exchange ``<namespace>.pidbox`` with routing key ``''``::

    headers {"clock": <lamport int>, "expires": <epoch float, now + timeout>}
    body    {"method": "revoke", "arguments": {"task_id": ..., "terminate": false, "signal": "SIGTERM"},
             "destination": null | [nodename, ...], "pattern": null, "matcher": null
             [, "ticket": <uuid4>, "reply_to": {"exchange": "reply.<namespace>.pidbox", "routing_key": <oid>}]}

Replies (§6.3) come one message per worker on ``reply.<namespace>.pidbox`` with header ``ticket``; the body is
``{nodename: handler return value}``. ``revoke`` answers ``{"ok": text}`` (or ``{"error": text}``); ``revoked``
answers a list of ids (5.7) or the LimitedSet's ``{id: timestamp}`` dict (older workers).
"""

from __future__ import annotations

import re
import signal as _signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskctl.errors import UsageError

DEFAULT_NAMESPACE = "celery"  # Celery's control_exchange setting
DEFAULT_SIGNAL = "SIGTERM"  # celery.platforms TERM_SIGNAME


# -- task ids and signals ---------------------------------------------------------------------------------

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
# custom ids (apply_async(task_id=...)) are free-form in Celery; keep them to what survives a shell and a key
_CUSTOM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,254}$")
_KEY_WRAPPERS = (re.compile(r"^b'(.*)'$"), re.compile(r'^b"(.*)"$'))
_KEY_PREFIX = "celery-task-meta-"


def normalize_task_id(raw: str, *, any_id: bool = False) -> str:
    """A task id from user input; a pasted result key (``b'celery-task-meta-<id>'``) is reduced to its id.

    Anything but a UUID is refused unless ``any_id`` (custom ids), so a typo cannot revoke nothing silently.
    """
    text = raw.strip()
    for wrapper in _KEY_WRAPPERS:
        m = wrapper.match(text)
        if m:
            text = m.group(1)
    if _KEY_PREFIX in text:
        text = text.split(_KEY_PREFIX, 1)[1]
    if _UUID.match(text):
        return text
    if any_id and _CUSTOM_ID.match(text):
        return text
    if any_id:
        raise UsageError(
            f"not a task id: {raw!r}",
            hint="task ids are UUIDs or custom ids of letters, digits and . _ : @ + = - (no spaces)",
        )
    raise UsageError(
        f"not a task id: {raw!r} (Celery task ids are UUIDs)",
        hint="for custom ids given with apply_async(task_id=...), pass --any-id",
    )


def normalize_signal(value: str | int | None) -> str:
    """A signal as the name workers accept (``billiard.common.signum``): 'KILL', '9', 'sigkill' -> 'SIGKILL'."""
    if value is None or value == "":
        return DEFAULT_SIGNAL
    text = str(value).strip()
    if text.isdigit():
        try:
            return _signal.Signals(int(text)).name
        except ValueError:
            raise UsageError(f"unknown signal number {text}", hint="e.g. TERM, KILL, INT, USR1") from None
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name not in _signal.Signals.__members__ or name.startswith("SIG_"):
        raise UsageError(f"unknown signal {text!r}", hint="e.g. TERM, KILL, INT, USR1, or a number")
    return name


# -- requests ---------------------------------------------------------------------------------------------


def revoke_arguments(task_ids: Sequence[str], *, terminate: bool = False, signal: str | None = None) -> dict[str, Any]:
    """The ``arguments`` of ``app.control.revoke(task_id, terminate=..., signal=...)``: one id as a string."""
    if not task_ids:
        raise UsageError("no task ids to revoke")
    task_id: str | list[str] = task_ids[0] if len(task_ids) == 1 else list(task_ids)
    return {"task_id": task_id, "terminate": bool(terminate), "signal": normalize_signal(signal)}


# -- replies ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One worker's answer: ``ok`` False when the worker reported an error."""

    worker: str
    ok: bool
    message: str
    value: Any


def parse_replies(body: Any) -> list[Reply]:
    """Split one reply body ``{nodename: value}`` into replies (a body may in principle hold several)."""
    if not isinstance(body, Mapping):
        return [Reply(worker="?", ok=False, message=f"unexpected reply: {body!r}"[:300], value=body)]
    out: list[Reply] = []
    for worker, value in body.items():
        if isinstance(value, Mapping) and ("ok" in value or "error" in value):
            if "error" in value:
                out.append(Reply(str(worker), False, str(value["error"]), value))
            else:
                out.append(Reply(str(worker), True, str(value["ok"]), value))
        else:
            out.append(Reply(str(worker), True, "", value))
    return out


def revoked_ids(value: Any) -> list[str]:
    """Ids from a ``revoked`` reply value: a list (5.7), or the LimitedSet ``{id: stamp}`` dict (older)."""
    if isinstance(value, Mapping):
        return [str(k) for k in value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []
