"""What workers hold without an ack, and putting it back: ``queue unacked`` and ``queue restore`` (Redis).

On Redis a message a worker received and has not acked sits in kombu's ``unacked`` hash. A worker that dies
leaves it there; kombu restores it only when some worker runs its restore sweep, after ``visibility_timeout``
(default one hour), so until then the task is lost to everyone. ``restore`` does what that sweep does (back at
the consuming end of its queue, marked redelivered), one message at a time in a step that first checks the
message is still there: safe while live workers restore or ack too, at least once (a message is in its list
before it leaves the hash). It also puts back taskctl's own in-flight lists whose drain or move was killed.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, cast

from taskctl import backends
from taskctl.errors import UsageError
from taskctl.formats.message import decode
from taskctl.models import RestoredMessage, UnackedMessage

if TYPE_CHECKING:
    from taskctl.backends.base import HeldMessage, HoldsUnacked
    from taskctl.config import Settings


def age_text(seconds: float | None) -> str | None:
    """'2h5m', '40s': the two largest units."""
    if seconds is None:
        return None
    s = max(0, int(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size or (unit == "s" and not parts):
            parts.append(f"{s // size}{unit}")
            s %= size
        if len(parts) == 2:
            break
    return "".join(parts)


def _broker(settings: Settings, what: str) -> HoldsUnacked:
    broker = backends.open_broker(settings)
    if not broker.holds_unacked:
        raise UsageError(
            f"{what} reads the unacked messages kombu keeps in Redis; the broker is {broker.scheme}://",
            hint="on RabbitMQ unacked messages return to their queue when the worker's connection closes",
        )
    return cast("HoldsUnacked", broker)


def _task(item: HeldMessage) -> tuple[str | None, str | None]:
    if item.raw is None:
        return None, None
    try:
        dec = decode(item.raw)
    except Exception:
        return None, None
    return dec.task_id, dec.task


def _matches(item: HeldMessage, queue: str | None) -> bool:
    return queue is None or any(fnmatch.fnmatchcase(q, queue) for q in item.queues)


def _row(item: HeldMessage, now: float) -> UnackedMessage:
    task_id, task = _task(item) if item.kind == "unacked" else (None, None)
    age = None if item.since is None else now - item.since
    since = None if item.since is None else dt.datetime.fromtimestamp(item.since, dt.UTC).isoformat()
    return UnackedMessage(
        queue=",".join(item.queues),
        kind=item.kind,
        task_id=task_id,
        task=task,
        age=age_text(age),
        age_seconds=None if age is None else round(age, 3),
        overdue=item.overdue,
        messages=item.messages,
        tag=item.tag,
        exchange=item.exchange,
        routing_key=item.routing_key,
        since=since,
        problem=item.problem,
    )


def unacked(settings: Settings, queue: str | None = None) -> Iterator[UnackedMessage]:
    """Every message held without an ack (QUEUE: a name or glob), then taskctl's in-flight lists."""
    broker = _broker(settings, "queue unacked")
    now = time.time()
    for item in broker.held():
        if _matches(item, queue):
            yield _row(item, now)


def restore(
    settings: Settings, queue: str | None = None, *, older_than: float | None = None, dry_run: bool = False
) -> Iterator[RestoredMessage]:
    """Put back unacked messages held longer than OLDER_THAN seconds (default: the visibility timeout, as kombu's
    own restore), and in-flight lists whose owner is gone; QUEUE (a name or glob) limits it to those queues."""
    broker = _broker(settings, "queue restore")
    if older_than is not None and older_than < 0:
        raise UsageError("--older-than must not be negative")
    limit = broker.visibility_timeout if older_than is None else older_than
    now = time.time()
    chosen: list[HeldMessage] = []
    for item in broker.held():
        if not _matches(item, queue):
            continue
        if item.kind == "unacked":
            if item.since is not None and now - item.since < limit:
                continue
        elif not item.overdue:
            continue  # an in-flight list whose drain or move still runs
        chosen.append(item)
    if dry_run:
        done: Iterable[tuple[HeldMessage, str]] = ((item, _would(item)) for item in chosen)
    else:
        done = broker.restore_held(chosen)
    for item, action in done:
        row = _row(item, now)
        yield RestoredMessage(
            queue=row.queue,
            kind=item.kind,
            task_id=row.task_id,
            task=row.task,
            age=row.age,
            messages=item.messages,
            action=action,
            tag=item.tag,
            dry_run=dry_run,
        )


def _would(item: HeldMessage) -> str:
    if item.kind == "unacked" and item.raw is None:
        return "unreadable"
    if not item.queues:
        return "no queue bound"
    return "would restore"
