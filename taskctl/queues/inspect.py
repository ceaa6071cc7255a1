"""Looking at queues, and emptying them without keeping the messages: stats, list, peek, purge.

Peek on a quorum queue counts as a delivery of each message shown; where the queue has a delivery limit a few
peeks drop (or dead-letter) the messages. So peek refuses a quorum queue with a limit, and refuses too where it
cannot tell: the management API unreachable or refusing the login (fail closed; ``--force`` overrides).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taskctl import backends, events
from taskctl.config import Settings
from taskctl.errors import ConflictError, ExitCode, NotFoundError, TaskctlError, UsageError
from taskctl.formats.message import RawMessage, decode, to_record
from taskctl.models import BrokerQueue, Listing, Outcome, PurgedQueue, QueueMessage, QueueStats
from taskctl.units import format_size

if TYPE_CHECKING:
    from taskctl.backends.base import Broker, Management

#: RabbitMQ 4.0 gives every quorum queue a delivery limit of 20 unless one is set
RABBITMQ4_DEFAULT_DELIVERY_LIMIT = 20


def stats(settings: Settings, queues: Iterable[str], *, max_message_size: int | None = None) -> Outcome:
    """Counts of each queue and the broker's message size limit; a missing queue is reported after the others
    (exit 3), which are still shown. No message is read: sizes are peek's business."""
    broker = backends.open_broker(settings)
    outcome = Outcome(value=None)
    names = list(queues)

    def rows() -> Iterator[QueueStats]:
        missing: list[NotFoundError] = []
        limit: SizeLimit | None = None
        for q in names:
            try:
                c = broker.stats(q)
            except NotFoundError as exc:
                missing.append(exc)
                continue
            if limit is None:  # once, and only once a queue exists (a missing one must not wait on HTTP)
                limit = size_limit(settings, broker, max_message_size)
            note = None if c.certain else "empty or missing"
            yield QueueStats(
                queue=q,
                messages=c.messages,
                consumers=c.consumers,
                note=note,
                size_limit=limit.bytes,
                size_limit_source=limit.source,
                in_flight=c.in_flight,
                delayed=c.delayed,
                dead_letter_queue=c.dead_letter_queue,
                max_receive_count=c.max_receive_count,
            )
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
        # SQS's PurgeQueue also removes what is in flight and delayed (None elsewhere)
        n = c.messages + (c.in_flight or 0) + (c.delayed or 0)
        plan.append((q, n, None if c.certain else "empty or missing"))
    out = []
    for q, n, note in plan:
        if n < 0:
            out.append(PurgedQueue(q, 0, dry_run, note))
        elif dry_run:
            out.append(PurgedQueue(q, n, True, note))
        else:
            out.append(PurgedQueue(q, broker.purge(q), False, note))
    return out


# -- message size limits -------------------------------------------------------------------------------------------

#: a message at least this share of the broker's limit is flagged (the next, slightly larger one is refused)
NEAR_LIMIT = 0.9
#: RabbitMQ's default max_message_size: 128 MiB from 3.8 (was 2 GiB), 16 MiB from 4.0
RABBITMQ_DEFAULT_MAX_MESSAGE_SIZE = {3: 128 << 20, 4: 16 << 20}


@dataclass(frozen=True)
class SizeLimit:
    """The largest message body the broker accepts (None: unknown) and where that number comes from."""

    bytes: int | None
    source: str | None


def rabbitmq_default_limit(version: str | None) -> int | None:
    """RabbitMQ's default max_message_size for VERSION ("3.10.8"); None before 3.8 or when not known."""
    try:
        parts = [int(p) for p in str(version).split(".")[:2]]
    except ValueError:
        return None
    if len(parts) < 2 or (parts[0] == 3 and parts[1] < 8) or parts[0] < 3:
        return None
    return RABBITMQ_DEFAULT_MAX_MESSAGE_SIZE.get(min(parts[0], 4))


def size_limit(settings: Settings, broker: Broker, override: int | None) -> SizeLimit:
    """The broker's limit: --max-message-size, else the transport's own (SQS), else RabbitMQ's default for the
    server's version. RabbitMQ's management API does not expose max_message_size (not in /api/overview,
    /api/nodes/NODE or /api/definitions): a changed setting is only known when the operator passes it."""
    if override is not None:
        return SizeLimit(override, "--max-message-size")
    if broker.max_message_bytes is not None:
        return SizeLimit(broker.max_message_bytes, f"{broker.scheme}:// limit")
    if not broker.has_management:
        return SizeLimit(None, None)
    try:
        version = backends.open_management(settings, timeout=2.0).server_version()
    except TaskctlError:  # the limit is a hint: never a reason for stats or peek to fail
        return SizeLimit(None, None)
    default = rabbitmq_default_limit(version)
    return SizeLimit(default, f"RabbitMQ {version} default" if default is not None else None)


def size_note(size: int, limit: int | None) -> str | None:
    """A note for a message of SIZE bytes at or past NEAR_LIMIT of LIMIT (None: not near, or no limit)."""
    if not limit or size < NEAR_LIMIT * limit:
        return None
    share = size / limit
    where = "over" if size > limit else "near"
    return f"{where} the broker's limit: {format_size(size)}, {share:.0%} of {format_size(limit)}"


# -- peek -----------------------------------------------------------------------------------------------------------


def _major(version: str | None) -> int | None:
    try:
        return int(str(version).split(".", 1)[0]) if version else None
    except ValueError:
        return None


def _delivery_limit_check(broker: Broker, queue: str, force: bool) -> None:
    """Where the broker counts a peek as a delivery (SQS receives toward maxReceiveCount): refuse if it has a
    limit, as for a quorum queue; a missing queue is exit 3."""
    limit = broker.delivery_limit(queue)
    if limit is None:
        return
    if not force:
        raise ConflictError(
            f"queue {queue!r} sends a message to its dead-letter queue after {limit} deliveries, and each peek "
            "counts as one: peeking can push messages there",
            hint="pass --force to peek anyway",
        )
    events.warn(f"queue {queue!r}: this peek counts as a delivery of each message shown (limit {limit})")


def _quorum_check(settings: Settings, broker: Broker, queue: str, force: bool) -> None:
    """Refuse to peek where a delivery limit can drop messages, or where the limit cannot be read."""
    if broker.peek_counts_deliveries:
        _delivery_limit_check(broker, queue, force)
        return
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


def peek(
    settings: Settings, queue: str, limit: int, *, force: bool = False, max_message_size: int | None = None
) -> list[QueueMessage]:
    """The first LIMIT messages, given back; each one within NEAR_LIMIT of the broker's size limit is flagged."""
    broker = backends.open_broker(settings)
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    _quorum_check(settings, broker, queue, force)
    deliveries = broker.peek(queue, limit)
    if broker.peek_moves_to_tail:
        events.warn(f"on {broker.scheme}:// a peeked message goes back to the end of the queue")
    size_cap = size_limit(settings, broker, max_message_size).bytes if deliveries else None
    out = []
    near = 0
    for i, d in enumerate(deliveries, 1):
        if "x-delivery-count" in (d.raw.headers or {}):
            events.warn(f"message {i} has x-delivery-count: the queue counts peeks as deliveries (quorum)")
        m = queue_message(i, queue, d.raw, size_cap)
        near += m.near_limit
        out.append(m)
    if near and size_cap is not None:
        events.warn(
            f"{near} of {len(out)} messages are at least {NEAR_LIMIT:.0%} of the broker's "
            f"{format_size(size_cap)} limit: a slightly larger one is refused"
        )
    return out


def queue_message(n: int, queue: str, raw: RawMessage, size_cap: int | None = None) -> QueueMessage:
    """One peeked message; SIZE_CAP (the broker's limit, bytes) flags a body near it."""
    dec = decode(raw)
    note = size_note(dec.size, size_cap)
    record = to_record(raw, queue=queue, decoded=dec)
    record["size_limit"] = size_cap
    record["near_limit"] = note is not None
    return QueueMessage(
        n=n,
        queue=queue,
        kind=dec.kind,
        task_id=dec.task_id,
        task=dec.task,
        size=dec.size,
        redelivered=raw.redelivered,
        summary=dec.summary,
        record=record,
        near_limit=note is not None,
        note=note,
    )
