"""Celery RPC reply queues (``backend='rpc://'``): list them, show and remove the results waiting in them.

Celery keeps one reply queue per client process, named after the client (a UUID, celery-formats §4.1);
results pile up there when the client dies. These queues are auto-delete: consuming one and then cancelling
deletes it with its results, so everything here reads with ``basic_get`` only (§4.5). A ``basic_get`` also
resets the queue's ``x-expires`` timer.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from taskctl import backends, events
from taskctl.config import Settings
from taskctl.errors import NotFoundError, UsageError
from taskctl.formats.message import RawMessage, decode, message_json, to_record
from taskctl.models import BrokerQueue, RpcResult, TransferSummary
from taskctl.queues import LineFile, broker_queue, management_api

UUID_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: fsync and ack every this many results
BATCH = 100


def is_reply_queue(q: dict[str, Any]) -> bool:
    """A UUID name and not exclusive: how a Celery rpc:// client's reply queue looks from outside."""
    return bool(UUID_NAME.match(str(q.get("name", "")))) and not q.get("exclusive")


def list_reply_queues(settings: Settings, idle_for: float | None = None) -> Iterator[BrokerQueue]:
    """Reply queues via the management API; with IDLE_FOR only those unused (no consumer) that long."""
    import datetime as dt

    api = management_api(settings, "rpc list")
    now = dt.datetime.now(dt.UTC)
    for q in api.iter_queues():
        if not is_reply_queue(q):
            continue
        bq = broker_queue(q, now)
        if idle_for is not None:
            # RabbitMQ reports idle_since only some seconds after the last use; --idle-for 0 means "no consumer"
            idle = bq.idle_seconds if bq.idle_seconds is not None else 0.0
            if bq.consumers > 0 or (idle_for > 0 and (bq.idle_seconds is None or idle < idle_for)):
                continue
        yield bq


def _result(queue: str, raw: RawMessage, removed: bool) -> RpcResult:
    d = decode(raw)
    return RpcResult(
        queue=queue,
        task_id=d.task_id,
        state=d.state,
        result=d.result,
        traceback=d.traceback,
        date_done=d.date_done,
        removed=removed,
        message=message_json(raw),
        error=d.error if d.kind in ("result", "other") and d.error else None,
    )


def _targets(settings: Settings, queues: Iterable[str], all_: bool, idle_for: float | None) -> list[str]:
    names = list(queues)
    if all_:
        if names:
            raise UsageError("give reply queue names or --all, not both")
        names = [q.queue for q in list_reply_queues(settings, idle_for if idle_for is not None else 3600.0)]
    elif not names:
        raise UsageError("name the reply queues to drain, or pass --all --idle-for D", hint="see 'taskctl rpc list'")
    return names


def drain(
    settings: Settings,
    queues: Iterable[str],
    *,
    peek: bool = False,
    file: str | None = None,
    all_: bool = False,
    idle_for: float | None = None,
) -> Iterator[RpcResult] | list[TransferSummary]:
    """Show (and, unless PEEK, remove) the results in reply queues; with ALL_ also delete the emptied queues."""
    names = _targets(settings, queues, all_, idle_for)
    if file is not None:
        out = []
        for q in names:
            try:
                out.append(_drain_queue_to_file(settings, q, Path(file), peek=peek, delete=all_ and not peek))
            except NotFoundError:
                if not all_:
                    raise
                events.warn(f"reply queue {q} is gone (expired or deleted meanwhile)")
        return out
    return _drain_to_stdout(settings, names, peek=peek, delete=all_ and not peek, skip_missing=all_)


def _drain_to_stdout(
    settings: Settings, names: list[str], *, peek: bool, delete: bool, skip_missing: bool
) -> Iterator[RpcResult]:
    broker = backends.open_broker(settings)
    for q in names:
        if skip_missing:
            try:
                broker.stats(q)
            except NotFoundError:
                events.warn(f"reply queue {q} is gone (expired or deleted meanwhile)")
                continue
        with broker.getter(q, purpose="rpc drain") as g:
            last = None
            n = 0
            while True:
                d = g.get()
                if d is None:
                    break
                yield _result(q, d.raw, removed=not peek)
                # the renderer asked for the next one: the previous result is written
                if not peek:
                    last = d
                    n += 1
                    if n % BATCH == 0:
                        sys.stdout.flush()
                        g.ack_upto(last)
                        last = None
            if last is not None:
                sys.stdout.flush()
                g.ack_upto(last)
        if delete:
            _delete_if_empty(broker, q)


def _drain_queue_to_file(settings: Settings, q: str, path: Path, *, peek: bool, delete: bool) -> TransferSummary:
    broker = backends.open_broker(settings)
    out = LineFile(path)
    n = 0
    try:
        with broker.getter(q, purpose="rpc drain") as g:
            last = None
            while True:
                d = g.get()
                if d is None:
                    break
                out.write(to_record(d.raw, queue=q))
                n += 1
                last = d
                if not peek and n % BATCH == 0:
                    out.commit()
                    g.ack_upto(last)
                    last = None
            out.commit()
            if last is not None and not peek:
                g.ack_upto(last)
    finally:
        out.close()
    if delete:
        _delete_if_empty(broker, q)
    return TransferSummary("rpc-drain" if not peek else "rpc-peek", q, str(path), n, stopped="end")


def _delete_if_empty(broker: Any, q: str) -> None:
    """Delete an abandoned reply queue once emptied (never one that received results meanwhile)."""
    from taskctl.errors import ConflictError

    try:
        broker.delete_queue(q, if_empty=True)
        events.note(f"deleted reply queue {q}")
    except NotFoundError:
        pass
    except ConflictError as exc:
        events.warn(f"kept reply queue {q}: {exc.message}")
