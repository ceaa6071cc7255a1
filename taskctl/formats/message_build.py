"""Task messages as Celery builds them (``AMQP.as_task_v2``), and the rules for publishing one again
(celery-formats §5.5).

Pure and without I/O (layer 0).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from taskctl.formats.message_body import JSON
from taskctl.formats.message_decode import RawMessage, decode
from taskctl.formats.times import parse_iso

#: Celery truncates argsrepr/kwargsrepr to this (``AMQP.argsrepr_maxsize``)
REPR_MAXSIZE = 1024


def for_republish(raw: RawMessage) -> RawMessage:
    """RAW as it must be published again: byte-exact, except the AMQP ``expiration``, which is dropped.

    ``expiration`` is a relative TTL in milliseconds that restarts at enqueue time; copying it (as
    ``celery.contrib.migrate.republish`` does, 1000x too long) is never right.
    """
    if "expiration" not in (raw.properties or {}):
        return raw
    props = {k: v for k, v in raw.properties.items() if k != "expiration"}
    return replace(raw, properties=props)


#: an ISO-8601 header value as an aware UTC datetime (:func:`taskctl.formats.times.parse_iso`)
parse_time = parse_iso


def republish_problems(raw: RawMessage, now: dt.datetime | None = None) -> list[str]:
    """What makes a republished task not run as hoped: a past ``expires`` (the worker revokes it on arrival).

    A past ``eta`` is reported too, as information: the task then runs at once.
    """
    now = now or dt.datetime.now(dt.UTC)
    d = decode(raw)
    if d.kind != "task":
        return []
    out = []
    exp = parse_time(d.expires)
    if exp is not None and exp <= now:
        out.append(f"expires {d.expires} is in the past: a worker will store it as REVOKED (expired)")
    eta = parse_time(d.eta)
    if eta is not None and eta <= now:
        out.append(f"eta {d.eta} is in the past: it runs at once")
    return out


def is_expired(raw: RawMessage, now: dt.datetime | None = None) -> bool:
    exp = parse_time(decode(raw).expires)
    return exp is not None and exp <= (now or dt.datetime.now(dt.UTC))


def saferepr(value: Any, maxsize: int = REPR_MAXSIZE) -> str:
    """``repr`` truncated as Celery's argsrepr is; plain values read the same as celery.utils.saferepr."""
    text = repr(value)
    return text if len(text) <= maxsize else text[: maxsize - 3] + "..."


def anon_nodename() -> str:
    """``gen<pid>@<hostname>``, what Celery puts in ``origin`` (celery.utils.nodenames.anon_nodename)."""
    return f"gen{os.getpid()}@{socket.gethostname()}"


def build_task_message(
    name: str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    task_id: str,
    queue: str = "celery",
    eta: str | None = None,
    expires: str | None = None,
    retries: int = 0,
    group_id: str | None = None,
    group_index: int | None = None,
    root_id: str | None = None,
    parent_id: str | None = None,
    shadow: str | None = None,
    reply_to: str | None = None,
    time_limit: float | None = None,
    soft_time_limit: float | None = None,
    ignore_result: bool = False,
    origin: str | None = None,
    argsrepr: str | None = None,
    kwargsrepr: str | None = None,
    callbacks: list[Any] | None = None,
    errbacks: list[Any] | None = None,
    chain: list[Any] | None = None,
    chord: Any = None,
    stamped_headers: list[str] | None = None,
    stamps: Mapping[str, Any] | None = None,
    replaced_task_nesting: int = 0,
    priority: int | None = None,
    delivery_mode: int = 2,
) -> RawMessage:
    """A protocol-2 task message exactly as ``celery.app.amqp.AMQP.as_task_v2`` builds it, JSON-serialized.

    Published to the default exchange with routing key QUEUE, as Celery does for direct-routed queues.
    """
    args = list(args or ())
    kwargs = dict(kwargs or {})
    headers: dict[str, Any] = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": shadow,
        "eta": eta,
        "expires": expires,
        "group": group_id,
        "group_index": group_index,
        "retries": retries,
        "timelimit": [time_limit, soft_time_limit],
        "root_id": root_id or task_id,
        "parent_id": parent_id,
        "argsrepr": argsrepr if argsrepr is not None else saferepr(tuple(args)),
        "kwargsrepr": kwargsrepr if kwargsrepr is not None else saferepr(kwargs),
        "origin": origin or anon_nodename(),
        "ignore_result": ignore_result,
        "replaced_task_nesting": replaced_task_nesting,
        "stamped_headers": stamped_headers,
        "stamps": dict(stamps or {}),
    }
    embed = {"callbacks": callbacks, "errbacks": errbacks, "chain": chain, "chord": chord}
    # kombu's json serializer: json.dumps defaults (", " and ": " separators, ensure_ascii)
    body = json.dumps([args, kwargs, embed]).encode("utf-8")
    props: dict[str, Any] = {
        "correlation_id": task_id,
        "reply_to": reply_to or "",
        "delivery_mode": delivery_mode,
        "priority": priority if priority is not None else 0,
    }
    return RawMessage(
        body=body,
        content_type=JSON,
        content_encoding="utf-8",
        headers=headers,
        properties=props,
        exchange="",
        routing_key=queue,
    )
