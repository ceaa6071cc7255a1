"""The contracts every adapter implements. Commands ask for a capability, never for a type.

Capabilities are class attributes documented with ``#:``. Every SDK exception is translated into a
``TaskctlError`` inside the adapter (see taskctl.errors for the exit codes).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
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
    def from_settings(cls, url: str, settings: Settings) -> ResultStore: ...
    def get_many(self, keys: Sequence[str]) -> dict[str, StoredItem]: ...  # key -> item, for keys present
    def delete_many(self, keys: Sequence[str]) -> int: ...  # deletes those keys (absent ones are fine)
    def put(self, key: str, value: bytes, *, ttl_seconds: int | None = None) -> None: ...
    def scan(self, prefixes: Sequence[str] | None = None) -> Iterator[StoredItem]: ...  # keys starting so
    def describe(self) -> str: ...  # where it is, for messages (masked URL)
    def close(self) -> None: ...


class TableAdmin(Protocol):
    """Provisioning of DynamoDB result tables (see taskctl.backends.dynamodb)."""

    @classmethod
    def from_settings(cls, url: str, settings: Settings) -> TableAdmin: ...
    def describe_table(self, table: str) -> dict[str, Any]: ...  # DescribeTable's Table; NotFoundError if missing
    def describe_ttl(self, table: str) -> dict[str, Any]: ...  # TimeToLiveStatus, AttributeName
    def create_table(self, table: str, *, read: int, write: int, on_demand: bool) -> bool: ...  # False: existed
    def update_ttl(self, table: str, *, enabled: bool, attribute: str) -> dict[str, Any]: ...
    def delete_table(self, table: str) -> dict[str, Any]: ...  # DeleteTable's TableDescription
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
