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


# -- worker inspection (celery.worker.control inspect commands) -------------------------------------------

#: replies are untrusted: at most this many tasks per worker and this many characters per text cell
MAX_ITEMS = 10_000
MAX_TEXT = 2_000
_CELERY_VERSION = re.compile(r"\bcelery:(\S+)")


def bounded(value: Any, limit: int = MAX_TEXT) -> str:
    """A reply value as bounded text: strings as sent (Celery's saferepr), anything else as repr."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pidbox_exchange(namespace: str = DEFAULT_NAMESPACE) -> str:
    """The fanout exchange every worker's pidbox queue is bound to (``kombu.pidbox.Mailbox.exchange_fmt``)."""
    return f"{namespace}.pidbox"


def worker_of_pidbox_queue(queue: str, namespace: str = DEFAULT_NAMESPACE) -> str | None:
    """``celery@host.celery.pidbox`` -> ``celery@host`` (``Mailbox.get_queue``); None for other queues."""
    suffix = f".{namespace}.pidbox"
    if queue.endswith(suffix) and len(queue) > len(suffix) and not queue.startswith("reply."):
        return queue[: -len(suffix)]
    return None


def _sub(value: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """VALUE[KEY] when it is a mapping, else an empty one (replies are untrusted)."""
    inner = value.get(key)
    return inner if isinstance(inner, Mapping) else {}


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _as_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class WorkerStats:
    """What a ``stats`` reply says about one worker (celery.worker.WorkController.stats)."""

    pid: int | None
    pool: str | None
    concurrency: int | None
    processed: int | None
    uptime: float | None
    prefetch_count: int | None
    maxrss_kb: int | None
    #: tasks processed per task name (at most MAX_ITEMS names)
    total: dict[str, int]


def parse_stats(value: Any) -> WorkerStats:
    """A ``stats`` reply value; unknown shapes give empty fields rather than an error."""
    v: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
    pool = _sub(v, "pool")
    impl = pool.get("implementation")
    # "celery.concurrency.prefork:TaskPool" -> "prefork"
    name = str(impl).rsplit(":", 1)[0].rsplit(".", 1)[-1] if isinstance(impl, str) and impl else None
    total: dict[str, int] = {}
    for key, count in list(_sub(v, "total").items())[:MAX_ITEMS]:
        n = _number(count)
        if n is not None:
            total[bounded(key, 300)] = n
    rusage = _sub(v, "rusage")
    return WorkerStats(
        pid=_number(v.get("pid")),
        pool=name[:100] if name else None,
        concurrency=_number(pool.get("max-concurrency")),
        processed=sum(total.values()) if isinstance(v.get("total"), Mapping) else None,
        uptime=_as_float(v.get("uptime")),
        prefetch_count=_number(v.get("prefetch_count")),
        maxrss_kb=_number(rusage.get("maxrss")),
        total=total,
    )


def parse_active_queues(value: Any) -> list[str]:
    """Queue names from an ``active_queues`` reply (``Queue.as_dict(recurse=True)`` per queue)."""
    if not isinstance(value, list | tuple):
        return []
    return [bounded(q.get("name"), 300) for q in value[:MAX_ITEMS] if isinstance(q, Mapping) and q.get("name")]


def celery_version(value: Any) -> str | None:
    """The Celery version in a ``report`` reply (``app.bugreport()``: ``software -> celery:5.7.0 (...)``)."""
    text = value.get("ok") if isinstance(value, Mapping) else value
    m = _CELERY_VERSION.search(text) if isinstance(text, str) else None
    return m.group(1)[:50] if m else None


@dataclass(frozen=True)
class TaskInfo:
    """One task a worker holds, from ``active``/``reserved``/``scheduled`` (``Request.info()``)."""

    task_id: str
    name: str
    args: str
    kwargs: str
    #: epoch seconds the worker started it (active), else None
    time_start: float | None
    #: ISO-8601 as the worker sent it (scheduled), else None
    eta: str | None
    worker_pid: int | None
    acknowledged: bool | None
    #: routing key / exchange it was delivered with
    routing_key: str | None
    exchange: str | None
    priority: int | None


def parse_tasks(value: Any) -> list[TaskInfo]:
    """Tasks from an ``active``/``reserved``/``scheduled`` reply value; malformed entries are skipped."""
    if not isinstance(value, list | tuple):
        return []
    out: list[TaskInfo] = []
    for entry in value[:MAX_ITEMS]:
        if not isinstance(entry, Mapping):
            continue
        eta = None
        priority = None
        req: Mapping[str, Any] = entry
        if isinstance(entry.get("request"), Mapping):  # scheduled: {"eta", "priority", "request"}
            req = _sub(entry, "request")
            eta = bounded(entry.get("eta"), 64) or None
            priority = _number(entry.get("priority"))
        if not req.get("id"):
            continue
        delivery = _sub(req, "delivery_info")
        out.append(
            TaskInfo(
                task_id=bounded(req.get("id"), 300),
                name=bounded(req.get("name") or req.get("type"), 300),
                args=bounded(req.get("args")),
                kwargs=bounded(req.get("kwargs")),
                time_start=_as_float(req.get("time_start")),
                eta=eta,
                worker_pid=_number(req.get("worker_pid")),
                acknowledged=req.get("acknowledged") if isinstance(req.get("acknowledged"), bool) else None,
                routing_key=bounded(delivery.get("routing_key"), 300) or None,
                exchange=bounded(delivery.get("exchange"), 300) or None,
                priority=priority if priority is not None else _number(delivery.get("priority")),
            )
        )
    return out


def parse_registered(value: Any) -> list[tuple[str, str]]:
    """``registered`` entries ``"name [rate_limit=10/m]"`` as (name, info)."""
    if not isinstance(value, list | tuple):
        return []
    out: list[tuple[str, str]] = []
    for entry in value[:MAX_ITEMS]:
        text = bounded(entry, 500)
        name, _, info = text.partition(" ")
        if name:
            out.append((name, info.strip().strip("[]")))
    return out


def consumer_arguments(
    queue: str,
    *,
    exchange: str | None = None,
    exchange_type: str | None = None,
    routing_key: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``app.control.add_consumer(queue, exchange, exchange_type, routing_key, options)`` arguments."""
    if not queue:
        raise UsageError("no queue name given")
    return {
        "queue": queue,
        "exchange": exchange,
        "exchange_type": exchange_type,
        "routing_key": routing_key,
        **dict(options or {}),
    }


# -- events (celery.events: exchange "celeryev", routing key = the type with "-" as ".") -------------------

EVENT_EXCHANGE = "celeryev"  # Celery's event_exchange setting
#: per-task event types, and the worker ones; the names of --state
TASK_EVENTS = ("received", "started", "succeeded", "failed", "retried", "revoked", "rejected", "sent")
WORKER_EVENTS = ("online", "heartbeat", "offline")
#: Celery state names accepted by --state for the task event that sets them
STATE_EVENTS = {
    "RECEIVED": "task-received",
    "STARTED": "task-started",
    "SUCCESS": "task-succeeded",
    "FAILURE": "task-failed",
    "RETRY": "task-retried",
    "REVOKED": "task-revoked",
    "REJECTED": "task-rejected",
    "PENDING": "task-sent",
}
_EVENT_KEYS = 40


@dataclass(frozen=True)
class CeleryEvent:
    """One event as a worker sent it (celery.events.Event), bounded: text cut, at most 40 keys."""

    type: str
    hostname: str
    timestamp: float | None
    uuid: str | None
    #: every field of the event, values over MAX_TEXT cut (args, kwargs, result are saferepr strings)
    fields: dict[str, Any]


def event_type(name: str) -> str:
    """A --state value as an event type: 'succeeded', 'SUCCESS', 'task-succeeded', 'online' -> the type."""
    text = name.strip()
    if text.upper() in STATE_EVENTS:
        return STATE_EVENTS[text.upper()]
    low = text.lower()
    if low in TASK_EVENTS:
        return f"task-{low}"
    if low in WORKER_EVENTS:
        return f"worker-{low}"
    if low.startswith(("task-", "worker-")):
        return low
    known = ", ".join((*TASK_EVENTS, *WORKER_EVENTS))
    raise UsageError(f"unknown event state {name!r}", hint=f"one of {known}, or a Celery state (SUCCESS, FAILURE)")


def _small(value: Any) -> Any:
    if isinstance(value, str):
        return bounded(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return bounded(value)


def parse_events(body: Any) -> list[CeleryEvent]:
    """Events from one message body: a dict, or the list Celery 4+ sends in batches; junk is skipped."""
    items = body if isinstance(body, list | tuple) else [body]
    out: list[CeleryEvent] = []
    for item in items[:MAX_ITEMS]:
        if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
            continue
        fields = {bounded(k, 100): _small(v) for k, v in list(item.items())[:_EVENT_KEYS]}
        out.append(
            CeleryEvent(
                type=bounded(item["type"], 100),
                hostname=bounded(item.get("hostname"), 300),
                timestamp=_as_float(item.get("timestamp")),
                uuid=bounded(item.get("uuid"), 300) or None,
                fields=fields,
            )
        )
    return out
