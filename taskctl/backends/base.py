"""The contracts every adapter implements. Commands ask for a capability, never for a type.

Capabilities are class attributes documented with ``#:``. Every SDK exception is translated into a
``TaskctlError`` inside the adapter (see taskctl.errors for the exit codes).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from taskctl.config import Settings
    from taskctl.formats.control import Reply


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
        self, prefixes: Sequence[str] | None = None, *, shard: Shard | None = None, segments: int | None = None
    ) -> Iterator[StoredItem]: ...
    def scan_pages(  # scan, page by page; RESUME: segment -> cursor of a ScanPage (None: that segment is done)
        self,
        prefixes: Sequence[str] | None = None,
        *,
        shard: Shard | None = None,
        segments: int | None = None,
        resume: Mapping[int, str | None] | None = None,
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
    def close(self) -> None: ...


class RemoteControl(Protocol):
    """Celery remote control through the broker's pidbox exchange (see taskctl.backends.control)."""

    #: the transport has a fanout exchange, so a request reaches every online worker
    supports_broadcast: ClassVar[bool]

    @classmethod
    def from_url(  # namespace: Celery's control_exchange
        cls, url: str, *, transport_options: Mapping[str, Any] | None = None, namespace: str | None = None
    ) -> RemoteControl: ...
    def revoke(  # replies collected for timeout s (0: send only)
        self, task_ids: Sequence[str], *, terminate: bool, signal: str | None, timeout: float
    ) -> list[Reply]: ...
    def revoked(self, *, timeout: float) -> list[Reply]: ...  # one Reply per worker, value = its revoked ids


class Broker(Protocol):
    """Queues over kombu (see taskctl.backends.broker: KombuBroker, Consumer, Publisher, Getter, Delivery)."""

    #: a message stays queued until acked, so a killed client loses nothing (False: kombu filesystem://)
    acks: bool
    #: a passive declare reports consumers (AMQP)
    counts_consumers: bool
    #: an empty queue does not exist (Redis, filesystem): "missing" reads as "empty"
    missing_is_empty: bool
    #: RabbitMQ's HTTP management API is the place to list queues
    has_management: bool
    scheme: str
    url: str
    masked_url: str
    vhost: str

    @classmethod
    def from_settings(cls, url: str, settings: Settings) -> Broker: ...
    def stats(self, queue: str, conn: Any | None = None) -> Any: ...  # QueueCounts by passive declare; 404 -> exit 3
    def peek(self, queue: str, limit: int) -> list[Any]: ...  # Deliveries by basic_get, all given back
    def getter(self, queue: str, purpose: str = "get") -> AbstractContextManager[Any]: ...  # basic_get + ack
    def purge(self, queue: str) -> int: ...  # ready messages removed
    def delete_queue(self, queue: str, *, if_empty: bool = False) -> None: ...
    def declare_queue(self, queue: str, **kwargs: Any) -> None: ...  # tests and demos only
    def consume(  # Consumer: next(timeout) -> Delivery | None, ack_upto(delivery)
        self, queue: str, *, prefetch: int = 1000, purpose: str = "drain"
    ) -> AbstractContextManager[Any]: ...
    def publisher(  # Publisher: check_destination, publish(raw, exchange, rk), flush()
        self, *, window: int = 1000, purpose: str = "publish"
    ) -> AbstractContextManager[Any]: ...


class Management(Protocol):
    """RabbitMQ's HTTP management API (see taskctl.backends.management)."""

    base_url: str
    vhost: str
    timeout: float

    @classmethod
    def from_settings(cls, broker_url: str, settings: Settings) -> Management: ...
    def queues(self, vhost: str | None = None) -> list[dict[str, Any]]: ...  # API queue objects of the vhost
    def queue(self, name: str, vhost: str | None = None) -> dict[str, Any]: ...  # NotFoundError when missing
    def reachable(self) -> bool: ...
