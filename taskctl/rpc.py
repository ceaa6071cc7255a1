"""Celery RPC reply queues (``backend='rpc://'``): list them, show and remove the results waiting in them.

Celery keeps one reply queue per client process, named after the client (a UUID, celery-formats §4.1);
results pile up there when the client dies. These queues are auto-delete: consuming one and then cancelling
deletes it with its results, so everything here reads with ``basic_get`` only (§4.5). A ``basic_get`` also
resets the queue's ``x-expires`` timer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from taskctl import backends, events
from taskctl.config import Settings
from taskctl.errors import ConflictError, NotFoundError, OperationError, UsageError
from taskctl.formats.message import RawMessage, decode, message_json, to_record
from taskctl.models import BrokerQueue, RpcResult, TransferSummary
from taskctl.queues.drainfile import POISON, LineFile, raw_record
from taskctl.queues.inspect import management_api
from taskctl.transfer import Transfer, flush_stdout

if TYPE_CHECKING:
    from taskctl.backends.base import Broker

UUID_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: fsync and ack every this many results
BATCH = 100


def is_reply_queue(q: BrokerQueue) -> bool:
    """A UUID name and not exclusive: how a Celery rpc:// client's reply queue looks from outside."""
    return bool(UUID_NAME.match(q.queue)) and not q.exclusive


def list_reply_queues(settings: Settings, idle_for: float | None = None) -> Iterator[BrokerQueue]:
    """Reply queues via the management API; with IDLE_FOR only those unused (no consumer) that long."""
    api = management_api(settings, "rpc list")
    for bq in api.iter_queues():
        if not is_reply_queue(bq):
            continue
        if idle_for is not None:
            # RabbitMQ reports idle_since only some seconds after the last use; --idle-for 0 means "no consumer"
            idle = bq.idle_seconds if bq.idle_seconds is not None else 0.0
            if (bq.consumers or 0) > 0 or (idle_for > 0 and (bq.idle_seconds is None or idle < idle_for)):
                continue
        yield bq


def _result(queue: str, raw: RawMessage, removed: bool) -> RpcResult:
    try:
        d = decode(raw)
    except POISON as exc:
        return RpcResult(queue, None, None, None, None, None, removed, error=f"undecodable: {type(exc).__name__}")
    try:
        message = message_json(raw)
    except POISON:
        message = raw_record(raw, queue, "headers too deep")["message"]
    return RpcResult(
        queue=queue,
        task_id=d.task_id,
        state=d.state,
        result=d.result,
        traceback=d.traceback,
        date_done=d.date_done,
        removed=removed,
        message=message,
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
    dry_run: bool = False,
) -> Iterator[RpcResult] | list[TransferSummary]:
    """Show (and, unless PEEK or DRY_RUN, remove) the results in reply queues; with ALL_ also delete the
    emptied queues. DRY_RUN shows what would be removed and deleted, and changes nothing."""
    names = _targets(settings, queues, all_, idle_for)
    keep = peek or dry_run
    if dry_run and all_:
        for q in names:
            events.note(f"would delete reply queue {q} once emptied")
    if file is not None:
        out = []
        for q in names:
            try:
                out.append(_drain_queue_to_file(settings, q, Path(file), keep=keep, delete=all_ and not keep))
            except NotFoundError:
                if not all_:
                    raise
                events.warn(f"reply queue {q} is gone (expired or deleted meanwhile)")
        return out
    return _drain_to_stdout(settings, names, keep=keep, delete=all_ and not keep, skip_missing=all_)


def _peek_queue(broker: Broker, q: str) -> Iterator[RawMessage]:
    """Every message of Q by basic_get, none acked: all return when the getter closes."""
    with broker.getter(q, purpose="rpc peek") as g:
        while (d := g.get()) is not None:
            yield d.raw


def _drain_to_stdout(
    settings: Settings, names: list[str], *, keep: bool, delete: bool, skip_missing: bool
) -> Iterator[RpcResult]:
    broker = backends.open_broker(settings)
    for q in names:
        if skip_missing:
            try:
                broker.stats(q)
            except NotFoundError:
                events.warn(f"reply queue {q} is gone (expired or deleted meanwhile)")
                continue
        if keep:
            for raw in _peek_queue(broker, q):
                yield _result(q, raw, removed=False)
            continue
        t = Transfer(
            broker,
            q,
            commit=flush_stdout,
            verb="written to",
            where="stdout",
            batch=BATCH,
            use_get=True,
            purpose="rpc drain",
        )
        with t.guard():
            for item in t:
                # the renderer asks for the next one once this one is written: only then is it acked
                yield _result(q, item.raw, removed=True)
        if delete:
            _delete_if_empty(broker, q)


def _drain_queue_to_file(settings: Settings, q: str, path: Path, *, keep: bool, delete: bool) -> TransferSummary:
    broker = backends.open_broker(settings)
    out = LineFile(path)
    n = 0
    try:
        if keep:
            try:
                for raw in _peek_queue(broker, q):
                    out.write(_record(raw, q))
                    n += 1
                out.commit()
            except OSError as exc:
                raise OperationError(f"cannot write {path}: {exc.strerror or exc}; nothing was removed") from None
        else:
            t = Transfer(
                broker,
                q,
                commit=out.commit,
                verb="written to",
                where=str(path),
                batch=BATCH,
                use_get=True,
                purpose="rpc drain",
            )
            with t.guard() as tally:
                for item in t:
                    out.write(_record(item.raw, q))
            n = tally.done
    finally:
        out.close()
    if delete:
        _delete_if_empty(broker, q)
    return TransferSummary("rpc-drain" if not keep else "rpc-peek", q, str(path), n, stopped="end")


def _record(raw: RawMessage, q: str) -> dict[str, object]:
    try:
        rec = to_record(raw, queue=q)
        import json

        json.dumps(rec, default=str)
        return rec
    except POISON as exc:
        return raw_record(raw, q, f"undecodable ({type(exc).__name__}): kept as raw bytes")


def _delete_if_empty(broker: Broker, q: str) -> None:
    """Delete an abandoned reply queue once emptied (never one that received results meanwhile)."""
    try:
        broker.delete_queue(q, if_empty=True)
        events.note(f"deleted reply queue {q}")
    except NotFoundError:
        pass
    except ConflictError as exc:
        events.warn(f"kept reply queue {q}: {exc.message}")
