"""The contracts every adapter implements. Commands ask for a capability, never for a type.

Capabilities are class attributes documented with ``#:``. Every SDK exception is translated into a
``TaskctlError`` inside the adapter (see taskctl.errors for the exit codes).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from taskctl.formats.control import CeleryEvent, Reply
    from taskctl.formats.message import RawMessage
    from taskctl.models import BrokerQueue


@dataclass(frozen=True)
class StoredItem:
    """One stored value under Celery's plain key (the DynamoDB ``b'…'`` wrapper already removed)."""

    key: str
    #: the stored bytes as written (None for DynamoDB chord counters, which carry only ``chord_count``)
    value: bytes | None
    #: when it was written, epoch seconds: DynamoDB ``timestamp``, a file's mtime; None where unknown
    timestamp: float | None = None
    #: when the store will (or should already) drop it, epoch seconds: DynamoDB ``ttl``, Redis expiry
    expires_at: float | None = None
    #: DynamoDB chord counters (Celery 5.4+) only
    chord_count: int | None = None


@dataclass(frozen=True)
class Shard:
    """Run INDEX of COUNT runs over one store (``--segment I/N``): together they see every item exactly once."""

    index: int
    count: int


@dataclass(frozen=True)
class ScanPage:
    """One page of a scan, and where its segment goes on after it (what a checkpoint records)."""

    #: the segment of this process's scan it came from (0 .. segments-1)
    segment: int
    items: tuple[StoredItem, ...]
    #: an opaque position to pass back in ``resume`` to continue after this page; None: the segment is done
    cursor: str | None


@dataclass(frozen=True)
class ValueHint:
    """Which values a scan's caller can use, for stores that filter on the server (DynamoDB FilterExpression):
    a binary value that contains none of ``contains`` (when given) and starts with none of ``or_starts_with``, or
    that is not larger than ``larger_than``, may be left out. Only a hint: a store that cannot filter returns
    everything, and the caller still checks each item."""

    contains: tuple[bytes, ...] = ()
    #: kept whatever they contain (compressed values, whose text cannot be searched)
    or_starts_with: tuple[bytes, ...] = ()
    #: and only binary values of more than this many bytes (None: any size)
    larger_than: int | None = None


def in_shard(key: str | bytes, shard: Shard) -> bool:
    """A key's share for stores without native segments: a stable hash (CRC-32, the same on every machine)."""
    import zlib

    raw = key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key
    return zlib.crc32(raw) % shard.count == shard.index


class ResultStore(Protocol):
    """Where Celery keeps result meta, addressed by Celery's plain keys (``celery-task-meta-<id>``).

    Batching, concurrency and retries of partial batches are the store's business: callers pass any number
    of keys and get every answer back (never a silently dropped key).
    """

    #: items can carry an expiry that the server enforces late (DynamoDB ``ttl``)
    supports_ttl: ClassVar[bool]
    #: the store can be listed (scan)
    supports_scan: ClassVar[bool]
    #: a client waiting on a result can be woken by a publish (Redis pub/sub)
    supports_pubsub: ClassVar[bool]
    #: keys fetched per request (DynamoDB BatchGetItem: 100); a walk costs about N / this many requests
    batch_get_size: ClassVar[int]

    @classmethod
    def from_url(  # built by backends.result_store, the one place that reads Settings for it
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,  # overrides the URL's endpoint (DynamoDB)
        region: str | None = None,  # overrides the URL's region (DynamoDB)
        profile: str | None = None,  # the AWS profile for credentials (DynamoDB)
        transport_options: Mapping[str, Any] | None = None,  # result_backend_transport_options
    ) -> ResultStore: ...
    def get_many(self, keys: Sequence[str]) -> dict[str, StoredItem]: ...  # key -> item, for keys present
    def iter_many(self, keys: Sequence[str]) -> Iterator[StoredItem]: ...  # get_many's items as they arrive
    def delete_many(self, keys: Sequence[str]) -> int: ...  # deletes those keys (absent ones are fine)
    def put(self, key: str, value: bytes, *, ttl_seconds: int | None = None) -> None: ...
    def scan(  # keys starting so; SHARD: only this run's share; SEGMENTS: parallel scans (None: sized by store)
        self,
        prefixes: Sequence[str] | None = None,
        *,
        shard: Shard | None = None,
        segments: int | None = None,
        values: ValueHint | None = None,  # may leave out values the caller cannot use
    ) -> Iterator[StoredItem]: ...
    def scan_pages(  # scan, page by page; RESUME: segment -> cursor of a ScanPage (None: that segment is done)
        self,
        prefixes: Sequence[str] | None = None,
        *,
        shard: Shard | None = None,
        segments: int | None = None,
        resume: Mapping[int, str | None] | None = None,
        values: ValueHint | None = None,
    ) -> Iterator[ScanPage]: ...
    def scan_segments(self) -> int: ...  # how many parallel segments suit this store's size (1 when not parallel)
    def publish(self, key: str, value: bytes) -> None: ...  # wake waiting clients (only if supports_pubsub)
    def describe(self) -> str: ...  # where it is, for messages (masked URL)
    def close(self) -> None: ...


@dataclass(frozen=True)
class TableKey:
    """One element of a table's key schema."""

    name: str
    #: "HASH" (partition key) or "RANGE" (sort key)
    role: str


@dataclass(frozen=True)
class TableDescription:
    """A result table as its store describes it (DynamoDB's DescribeTable, parsed by the adapter)."""

    name: str
    #: CREATING, ACTIVE, UPDATING, DELETING, ARCHIVING, ARCHIVED, INACCESSIBLE_ENCRYPTION_CREDENTIALS, UNKNOWN
    status: str
    key_schema: tuple[TableKey, ...]
    #: attribute name -> scalar type ("S", "N", "B") for every attribute the table defines
    attribute_types: Mapping[str, str] = field(default_factory=dict)
    #: "PROVISIONED" or "PAY_PER_REQUEST" (on demand)
    billing_mode: str = "PROVISIONED"
    #: capacity units; None for on-demand tables
    read_capacity: int | None = None
    write_capacity: int | None = None
    #: the store's approximate counts (DynamoDB refreshes them about every six hours)
    item_count: int | None = None
    size_bytes: int | None = None
    arn: str | None = None
    created: datetime | None = None

    @property
    def on_demand(self) -> bool:
        return self.billing_mode == "PAY_PER_REQUEST"

    def key(self, role: str) -> str | None:
        """The attribute with key ROLE ("HASH" or "RANGE"), None when there is none."""
        return next((k.name for k in self.key_schema if k.role == role), None)


@dataclass(frozen=True)
class TtlDescription:
    """A table's Time to Live setting (DynamoDB's DescribeTimeToLive, parsed by the adapter)."""

    #: ENABLED, ENABLING, DISABLED or DISABLING
    status: str = "DISABLED"
    #: the attribute holding expiry times; None when TTL was never enabled
    attribute: str | None = None

    @property
    def active(self) -> bool:
        """TTL in force or on its way there."""
        return self.status in ("ENABLED", "ENABLING")


@dataclass(frozen=True)
class TableDefaults:
    """What a backend URL says about its table: the name Celery uses and how Celery would create it."""

    table: str
    read: int
    write: int
    #: Celery's ``ttl_seconds``: None (not set), < 0 (switch TTL off), >= 0 (switch TTL on, expire after)
    ttl_seconds: int | None = None


class TableAdmin(Protocol):
    """Provisioning of result tables (see taskctl.backends.dynamodb). Every error is a TaskctlError."""

    @classmethod
    def defaults_from_url(cls, url: str) -> TableDefaults: ...  # no client; UsageError for a malformed URL
    @classmethod
    def from_url(
        cls, url: str, *, endpoint_url: str | None = None, region: str | None = None, profile: str | None = None
    ) -> TableAdmin: ...
    @property
    def defaults(self) -> TableDefaults: ...  # what its URL says
    def describe_table(self, table: str) -> TableDescription: ...  # NotFoundError if missing
    def describe_ttl(self, table: str) -> TtlDescription: ...
    def create_table(self, table: str, *, read: int, write: int, on_demand: bool) -> bool: ...  # False: existed
    def update_ttl(self, table: str, *, enabled: bool, attribute: str) -> bool: ...  # False: already so
    def delete_table(self, table: str) -> TableDescription: ...  # as it was when the delete began
    def list_tables(self) -> Iterator[str]: ...  # every table name at the endpoint
    def sample_item_sizes(  # (key, bytes toward the 400 KB item limit) of up to LIMIT items, a few requests
        self, table: str, limit: int
    ) -> Iterator[tuple[str, int]]: ...
    def close(self) -> None: ...


class RemoteControl(Protocol):
    """Celery remote control through the broker's pidbox exchange (see taskctl.backends.control)."""

    #: the transport has a fanout exchange, so a request reaches every online worker
    supports_broadcast: ClassVar[bool]
    #: bound_workers() lists the workers bound to the pidbox exchange (Redis, filesystem)
    lists_bound_workers: bool
    #: RabbitMQ: the management API lists the pidbox exchange's bindings instead
    has_management: bool
    #: several rounds may run at once, one connection each (False: filesystem://, whose binding tables are
    #: rewritten in place, so concurrent reply queues lose each other's bindings)
    concurrent_rounds: bool
    namespace: str

    @classmethod
    def from_url(  # namespace: Celery's control_exchange; event_exchange: its event_exchange
        cls,
        url: str,
        *,
        transport_options: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        event_exchange: str | None = None,
    ) -> RemoteControl: ...
    def broadcast(  # stops after limit replies (default: one per destination), else timeout s without one;
        self,  # a callable limit is asked once the connection is open
        command: str,
        arguments: Mapping[str, Any],
        *,
        reply: bool,
        timeout: float,
        destination: Sequence[str] | None = None,
        action: str = "broadcast to workers",
        limit: int | Callable[[], int | None] | None = None,
    ) -> list[Reply]: ...
    def bound_workers(self) -> list[str]: ...  # worker names bound to <namespace>.pidbox (lists_bound_workers)
    def events(  # Celery's event stream (exchange celeryev, bound with '#'); None after tick s without an event
        self, *, tick: float = 0.5
    ) -> Generator[CeleryEvent | None, None, None]: ...
    def revoke(  # replies collected for timeout s (0: send only)
        self, task_ids: Sequence[str], *, terminate: bool, signal: str | None, timeout: float
    ) -> list[Reply]: ...
    def revoked(self, *, timeout: float) -> list[Reply]: ...  # one Reply per worker, value = its revoked ids


@dataclass(frozen=True)
class QueueCounts:
    """What a passive declare tells: ready messages and consumers (None where the transport cannot tell)."""

    queue: str
    messages: int
    consumers: int | None
    #: False only where the transport cannot tell a missing queue from an empty one (Redis, filesystem)
    certain: bool = True
    #: received and not yet deleted (SQS "not visible"); None where the transport does not say
    in_flight: int | None = None
    #: sent with a delay that has not run out yet (SQS); None where the transport has no delays
    delayed: int | None = None
    #: where messages go after max_receive_count receives (SQS redrive policy)
    dead_letter_queue: str | None = None
    max_receive_count: int | None = None


@dataclass
class Delivery:
    """A received message and the tag that acks it (the tag is the adapter's business)."""

    raw: RawMessage
    tag: object


@dataclass(frozen=True)
class HeldMessage:
    """Taken from a queue and not acknowledged: in kombu's Redis ``unacked`` hash (a worker holds it), or one of
    taskctl's in-flight lists (a drain or move holds its messages there until they are safe elsewhere)."""

    #: "unacked" (a worker's) or "inflight" (taskctl's own list)
    kind: str
    #: the delivery tag, or the in-flight list's key
    tag: str
    #: the queues a restore puts it back on (empty: nothing bound to its exchange and routing key)
    queues: tuple[str, ...]
    #: the message (unacked), the first one of the list (inflight); None when the stored value is unreadable
    raw: RawMessage | None
    #: when it was delivered (unacked_index) or the list was last fetched into, epoch seconds; None if unknown
    since: float | None
    #: unacked: past the visibility timeout; inflight: its lease ran out (its owner is gone)
    overdue: bool
    exchange: str = ""
    routing_key: str = ""
    #: messages held: 1, or the in-flight list's length
    messages: int = 1
    #: why it cannot be decoded or restored as it is
    problem: str | None = None
    #: the stored value as read: a restore goes ahead only if it is still this
    stored: bytes = b""


class Getter(Protocol):
    """``basic_get`` one message at a time; anything not acked returns to the queue when the getter closes."""

    def get(self) -> Delivery | None: ...  # None: the queue is empty now
    def ack_upto(self, delivery: Delivery) -> int: ...  # acks DELIVERY and all got before it; how many


class Consumer(Protocol):
    """A manual-ack consumer with a prefetch window; unacked deliveries return to the queue on close."""

    def next(self, timeout: float) -> Delivery | None: ...  # None after TIMEOUT s with no message
    def ack_upto(self, delivery: Delivery) -> int: ...  # acks DELIVERY and all delivered before it
    def ack_one(self, delivery: Delivery) -> None: ...  # acks DELIVERY alone (others stay unacked)


class Publisher(Protocol):
    """Publishes with confirms on a connection of its own; ``flush`` returns once every publish is confirmed."""

    #: messages published so far
    sent: int

    @property
    def confirmed(self) -> int: ...  # how many of them the broker confirmed
    def check_destination(self, exchange: str, routing_key: str) -> None: ...  # NotFoundError if missing
    def publish(self, raw: RawMessage, exchange: str, routing_key: str) -> None: ...  # as is, mandatory
    def flush(self, timeout: float = 60.0) -> None: ...  # every publish confirmed, or an error


class Broker(Protocol):
    """Queues over kombu (see taskctl.backends.kombu_broker)."""

    #: a message stays queued until acked, so a killed client loses nothing (False: kombu filesystem://)
    acks: bool
    #: a passive declare reports consumers (AMQP)
    counts_consumers: bool
    #: an empty queue does not exist (Redis, filesystem): "missing" reads as "empty"
    missing_is_empty: bool
    #: RabbitMQ's HTTP management API is the place to list queues
    has_management: bool
    #: a peeked message goes back to the tail of the queue, not its place (kombu filesystem://)
    peek_moves_to_tail: bool
    #: unacked deliveries return to their place when the channel closes, so a filtered pass can leave the
    #: messages it does not take where they are instead of publishing them back to the tail (RabbitMQ)
    returns_in_place: bool
    #: the broker lists its own queues (``iter_queues``): Redis from kombu's bindings, SQS by ListQueues
    lists_queues: bool
    #: unacked messages are readable data that can be put back (``held``/``restore_held``: Redis)
    holds_unacked: bool
    #: the largest message body the transport accepts, in bytes (SQS: 262,144); None where it is a server
    #: setting (RabbitMQ's max_message_size) or there is no practical limit
    max_message_bytes: int | None
    #: a peek counts as a delivery toward a limit the broker itself reads (``delivery_limit``; SQS receives
    #: count toward the redrive policy's maxReceiveCount); RabbitMQ's quorum limit is the management API's
    peek_counts_deliveries: bool
    #: a dead-letter queue names the queues that feed it (``dead_letter_sources``; SQS)
    knows_dead_letter_sources: bool
    scheme: str
    url: str
    masked_url: str
    vhost: str

    @classmethod
    def from_url(cls, url: str, *, transport_options: dict[str, Any] | None = None) -> Broker: ...
    def stats(self, queue: str) -> QueueCounts: ...  # by passive declare; NotFoundError (exit 3) if missing
    def peek(self, queue: str, limit: int) -> list[Delivery]: ...  # by basic_get, all given back
    def getter(self, queue: str, purpose: str = "get") -> AbstractContextManager[Getter]: ...
    def purge(self, queue: str) -> int: ...  # ready messages removed
    def delete_queue(self, queue: str, *, if_empty: bool = False) -> None: ...
    def declare_queue(self, queue: str, **kwargs: Any) -> None: ...  # tests and demos only
    def consume(
        self, queue: str, *, prefetch: int = 1000, purpose: str = "drain"
    ) -> AbstractContextManager[Consumer]: ...
    def publisher(self, *, window: int = 1000, purpose: str = "publish") -> AbstractContextManager[Publisher]: ...
    def iter_queues(self) -> Iterator[BrokerQueue]: ...  # every queue (only where lists_queues)
    def delivery_limit(self, queue: str) -> int | None: ...  # deliveries before dead-lettering (None: no limit)
    def dead_letter_sources(self, queue: str) -> list[str]: ...  # queues dead-lettering into QUEUE ([]: unknown)


class HoldsUnacked(Protocol):
    """A broker whose unacked messages are data a client can read and put back (kombu's Redis transport)."""

    #: seconds after which kombu's workers restore an unacked message
    visibility_timeout: float

    def held(self, queue: str | None = None) -> Iterator[HeldMessage]: ...  # unacked, then in-flight lists
    def restore_held(  # (item, restored | gone | no queue bound | unreadable | in use), in order
        self, items: Iterable[HeldMessage]
    ) -> Iterator[tuple[HeldMessage, str]]: ...


class Management(Protocol):
    """RabbitMQ's HTTP management API (see taskctl.backends.management); parsed queues, never API dicts."""

    base_url: str
    vhost: str
    timeout: float

    @classmethod
    def from_url(cls, broker_url: str, *, management_url: str | None = None, timeout: float = 10.0) -> Management: ...
    def iter_queues(self, vhost: str | None = None) -> Iterator[BrokerQueue]: ...  # every queue, paged
    def queue(self, name: str, vhost: str | None = None) -> BrokerQueue: ...  # NotFoundError when missing
    def server_version(self) -> str | None: ...  # RabbitMQ's version ("3.10.8"), None if not told
    def reachable(self) -> bool: ...
    def bound_queues(self, exchange: str, vhost: str | None = None) -> list[str]: ...  # queues bound to EXCHANGE
