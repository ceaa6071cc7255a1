"""Looking at queues, and emptying them without keeping the messages: stats, list, peek, purge.

Peek on a quorum queue counts as a delivery of each message shown; where the queue has a delivery limit a few
peeks drop (or dead-letter) the messages. So peek refuses a quorum queue with a limit, and refuses too where it
cannot tell: the management API unreachable or refusing the login (fail closed; ``--force`` overrides).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from taskctl import backends, events
from taskctl.config import Settings
from taskctl.errors import ConflictError, ExitCode, NotFoundError, TaskctlError, UsageError
from taskctl.formats.message import RawMessage, decode, to_record
from taskctl.models import BrokerQueue, Listing, Outcome, PurgedQueue, QueueMessage, QueueStats

if TYPE_CHECKING:
    from taskctl.backends.base import Broker, Management

#: RabbitMQ 4.0 gives every quorum queue a delivery limit of 20 unless one is set
RABBITMQ4_DEFAULT_DELIVERY_LIMIT = 20


def stats(settings: Settings, queues: Iterable[str]) -> Outcome:
    """Counts of each queue; a missing one is reported after the others (exit 3), which are still shown."""
    broker = backends.open_broker(settings)
    outcome = Outcome(value=None)
    names = list(queues)

    def rows() -> Iterator[QueueStats]:
        missing: list[NotFoundError] = []
        for q in names:
            try:
                c = broker.stats(q)
            except NotFoundError as exc:
                missing.append(exc)
                continue
            note = None if c.certain else "empty or missing"
            yield QueueStats(queue=q, messages=c.messages, consumers=c.consumers, note=note)
        if missing:
            outcome.exit_code = ExitCode.NOT_FOUND
            outcome.message = "; ".join(exc.message for exc in missing)

    outcome.value = Listing(model=QueueStats, items=rows())
    return outcome


def management_api(settings: Settings, what: str) -> Management:
    broker = backends.open_broker(settings)
    if not broker.has_management:
        raise UsageError(
            f"{what} needs RabbitMQ's management API; the broker is {broker.scheme}://",
            hint="use 'taskctl queue stats QUEUE...' for named queues",
        )
    return backends.open_management(settings)


def list_queues(settings: Settings, match: str | None = None) -> Iterator[BrokerQueue]:
    broker = backends.open_broker(settings)
    queues = broker.iter_queues() if broker.lists_queues else management_api(settings, "queue list").iter_queues()
    for q in queues:
        if match and not fnmatch.fnmatchcase(q.queue, match):
            continue
        yield q


# -- purge ---------------------------------------------------------------------------------------------------------


def purge(settings: Settings, queues: Iterable[str], *, dry_run: bool, missing_ok: bool) -> list[PurgedQueue]:
    """Remove the ready messages of each queue; every queue is checked before any is purged."""
    broker = backends.open_broker(settings)
    plan: list[tuple[str, int, str | None]] = []
    for q in queues:
        try:
            c = broker.stats(q)
        except NotFoundError:
            if not missing_ok:
                raise
            plan.append((q, -1, "missing"))
            continue
        plan.append((q, c.messages, None if c.certain else "empty or missing"))
    out = []
    for q, n, note in plan:
        if n < 0:
            out.append(PurgedQueue(q, 0, dry_run, note))
        elif dry_run:
            out.append(PurgedQueue(q, n, True, note))
        else:
            out.append(PurgedQueue(q, broker.purge(q), False, note))
    return out


# -- peek -----------------------------------------------------------------------------------------------------------


def _major(version: str | None) -> int | None:
    try:
        return int(str(version).split(".", 1)[0]) if version else None
    except ValueError:
        return None


def _quorum_check(settings: Settings, broker: Broker, queue: str, force: bool) -> None:
    """Refuse to peek where a delivery limit can drop messages, or where the limit cannot be read."""
    if not broker.has_management:
        return
    broker.stats(queue)  # a missing queue is exit 3, not "cannot tell"
    api = backends.open_management(settings, timeout=2.0)  # on the way to the peek: must not stall
    try:
        info = api.queue(queue)
        limit = info.delivery_limit
        if info.type == "quorum" and limit is None and (_major(api.server_version()) or 0) >= 4:
            limit = RABBITMQ4_DEFAULT_DELIVERY_LIMIT
    except TaskctlError as exc:
        if force:
            events.warn(f"cannot read the queue's delivery limit ({exc.message}); peeking anyway (--force)")
            return
        raise ConflictError(
            f"cannot tell whether peeking {queue!r} is safe: {exc.message}. A quorum queue counts each peek as a "
            "delivery and drops messages past its delivery limit",
            hint="fix --management-url (or its password), or pass --force to peek anyway",
        ) from None
    if info.type != "quorum":
        return
    if limit is not None and not force:
        raise ConflictError(
            f"queue {queue!r} is a quorum queue with delivery limit {limit}: each peek counts as a delivery, "
            "and messages past the limit are dropped or dead-lettered",
            hint="pass --force to peek anyway",
        )
    events.warn(f"queue {queue!r} is a quorum queue: this peek counts as a delivery of each message shown")


def check_peek_safe(settings: Settings, broker: Broker, queue: str) -> None:
    """ConflictError where peeking QUEUE can drop messages (a quorum queue's delivery limit) or nobody can tell."""
    _quorum_check(settings, broker, queue, False)


def peek(settings: Settings, queue: str, limit: int, *, force: bool = False) -> list[QueueMessage]:
    broker = backends.open_broker(settings)
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    _quorum_check(settings, broker, queue, force)
    deliveries = broker.peek(queue, limit)
    if broker.peek_moves_to_tail:
        events.warn(f"on {broker.scheme}:// a peeked message goes back to the end of the queue")
    out = []
    for i, d in enumerate(deliveries, 1):
        if "x-delivery-count" in (d.raw.headers or {}):
            events.warn(f"message {i} has x-delivery-count: the queue counts peeks as deliveries (quorum)")
        out.append(queue_message(i, queue, d.raw))
    return out


def queue_message(n: int, queue: str, raw: RawMessage) -> QueueMessage:
    dec = decode(raw)
    return QueueMessage(
        n=n,
        queue=queue,
        kind=dec.kind,
        task_id=dec.task_id,
        task=dec.task,
        size=dec.size,
        redelivered=raw.redelivered,
        summary=dec.summary,
        record=to_record(raw, queue=queue, decoded=dec),
    )
