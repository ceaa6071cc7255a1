"""Queues, drained messages, transfers and RPC replies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from taskctl.models.base import Model


@dataclass(frozen=True)
class QueueStats(Model):
    """`queue stats`: ready messages and consumers of one queue (passive declare)."""

    columns: ClassVar[tuple[str, ...]] = (
        "queue",
        "messages",
        "consumers",
        "in_flight",
        "delayed",
        "dead_letter_queue",
        "size_limit",
        "note",
    )

    queue: str
    messages: int
    #: None where the transport cannot count consumers (Redis, filesystem, SQS)
    consumers: int | None
    #: "empty or missing" on transports where an empty queue does not exist
    note: str | None = None
    #: the largest message body the broker accepts, bytes (None: unknown or no practical limit)
    size_limit: int | None = None
    #: where size_limit comes from: "--max-message-size", "transport", "RabbitMQ 3.10.8 default"; None: unknown
    size_limit_source: str | None = None
    #: SQS: received and not yet deleted; delayed; the redrive policy's queue and maxReceiveCount
    in_flight: int | None = None
    delayed: int | None = None
    dead_letter_queue: str | None = None
    max_receive_count: int | None = None


@dataclass(frozen=True)
class BrokerQueue(Model):
    """`queue list` / `rpc list`: one queue as RabbitMQ's management API (or Redis's bindings) reports it."""

    columns: ClassVar[tuple[str, ...]] = (
        "queue",
        "messages",
        "unacked",
        "consumers",
        "idle",
        "type",
        "expires",
        "exchanges",
        "delayed",
        "dead_letter_queue",
    )

    queue: str
    vhost: str
    messages: int
    ready: int
    unacked: int
    #: None where the broker cannot count consumers (Redis, SQS)
    consumers: int | None
    #: ISO-8601 UTC; None while in use
    idle_since: str | None
    idle_seconds: float | None
    type: str
    durable: bool
    auto_delete: bool
    exclusive: bool
    #: x-expires in seconds (RPC reply queues: result_expires)
    expires: float | None
    arguments: dict[str, Any] = field(default_factory=dict)
    #: quorum queues: x-delivery-limit, else the effective policy's delivery-limit (None: not set)
    delivery_limit: int | None = None
    #: messages per second published to / delivered from the queue (None until it has traffic)
    rate_in: float | None = None
    rate_out: float | None = None
    #: exchanges bound to the queue (Redis: kombu's bindings; empty from RabbitMQ's queue list)
    exchanges: tuple[str, ...] = ()
    #: SQS: messages sent with a delay not yet run out; the redrive policy's dead-letter queue
    delayed: int | None = None
    dead_letter_queue: str | None = None


@dataclass(frozen=True)
class PurgedQueue(Model):
    """`queue purge`: how many ready messages went (or would go, with --dry-run)."""

    columns: ClassVar[tuple[str, ...]] = ("queue", "purged", "note")

    queue: str
    purged: int
    dry_run: bool = False
    note: str | None = None


@dataclass(frozen=True)
class QueueMessage(Model):
    """`queue peek` (and `queue drain` to stdout): one message, decoded, with the complete original message."""

    columns: ClassVar[tuple[str, ...]] = ("n", "kind", "task_id", "task", "size", "redelivered", "summary", "note")

    n: int
    queue: str
    kind: str
    task_id: str | None
    task: str | None
    size: int
    redelivered: bool
    summary: str
    #: the drain line: decoded fields plus "message" (body base64, headers, properties, exchange, routing_key);
    #: peek adds "size_limit" (bytes or null) and "near_limit"
    record: dict[str, Any] = field(default_factory=dict)
    #: the body is at least NEAR_LIMIT of the broker's largest accepted message (a bigger one will be refused)
    near_limit: bool = False
    #: what is wrong with it, for the table (e.g. "120 MiB: 94% of the broker's 128 MiB limit")
    note: str | None = None

    json_value: ClassVar[str | None] = "record"


@dataclass(frozen=True)
class DrainedLine(Model):
    """`queue drain` without --file: the drain line itself, in every output format (nothing may be lost)."""

    json_value: ClassVar[str | None] = "record"

    record: dict[str, Any]


@dataclass(frozen=True)
class TransferSummary(Model):
    """`queue drain --file`, `queue move`, `queue publish`, `rpc drain --file`: what was done, in counts."""

    columns: ClassVar[tuple[str, ...]] = (
        "action",
        "source",
        "destination",
        "count",
        "put_back",
        "skipped",
        "stopped",
        "earlier",
    )

    action: str
    source: str
    destination: str
    #: messages written (drain), published (move/publish)
    count: int
    #: --task: non-matching messages published back to the tail of the source queue
    put_back: int = 0
    #: publish: duplicates skipped (same message id), records unreadable
    skipped: int = 0
    #: limit | idle | end | one-pass
    stopped: str | None = None
    dry_run: bool = False
    #: past expires / eta found (publish), per message one line
    problems: tuple[str, ...] = ()
    #: --checkpoint: messages done by earlier runs with the same checkpoint (``count`` is this run's)
    earlier: int = 0
    #: written/published by an earlier run (or before a reconnect) but not acked: acked now, not sent again
    recovered: int = 0
    #: broker connections opened again after a loss (--retries)
    reconnects: int = 0


@dataclass(frozen=True)
class RpcResult(Model):
    """`rpc drain`: one result waiting in a client's reply queue."""

    columns: ClassVar[tuple[str, ...]] = ("queue", "task_id", "state", "result", "removed")

    queue: str
    task_id: str | None
    state: str | None
    result: Any
    traceback: str | None
    date_done: str | None
    #: False with --peek (left in the queue)
    removed: bool
    #: the complete original message (body base64, headers, properties, ...)
    message: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class UnackedMessage(Model):
    """`queue unacked`: a message a worker holds without an ack (Redis ``unacked`` hash), or one of taskctl's own
    in-flight lists (kind "inflight": a drain or move holding MESSAGES until they are safe elsewhere)."""

    columns: ClassVar[tuple[str, ...]] = ("queue", "kind", "task_id", "task", "age", "overdue", "messages")

    #: the queue a restore puts it back on ("" when nothing is bound to its exchange and routing key)
    queue: str
    #: unacked | inflight
    kind: str
    task_id: str | None
    task: str | None
    #: since delivery (unacked) or since the list's owner started (inflight), e.g. "1h2m"; None when unknown
    age: str | None
    age_seconds: float | None
    #: unacked: past the visibility timeout (lost until a worker restarts); inflight: its owner is gone
    overdue: bool
    messages: int
    #: the delivery tag, or the in-flight list's key
    tag: str
    exchange: str
    routing_key: str
    #: ISO-8601 UTC of delivery; None when unknown
    since: str | None
    problem: str | None = None


@dataclass(frozen=True)
class RestoredMessage(Model):
    """`queue restore`: what happened to one unacked message or in-flight list."""

    columns: ClassVar[tuple[str, ...]] = ("queue", "kind", "task_id", "task", "age", "messages", "action")

    queue: str
    kind: str
    task_id: str | None
    task: str | None
    age: str | None
    messages: int
    #: restored | would restore | gone (acked or restored meanwhile) | no queue bound | unreadable | in use
    action: str
    tag: str
    dry_run: bool = False
