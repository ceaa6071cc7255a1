"""The contracts every adapter implements. Commands ask for a capability, never for a type.

Capabilities are class attributes documented with ``#:``. Every SDK exception is translated into a
``TaskctlError`` inside the adapter (see taskctl.errors for the exit codes).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from taskctl.config import Settings


class ResultStore(Protocol):
    """Where Celery keeps result meta, addressed by Celery's full keys (``celery-task-meta-<id>``)."""

    #: items can carry an expiry that the server enforces late (DynamoDB ``ttl``)
    supports_ttl: ClassVar[bool]
    #: the store can be listed (scan)
    supports_scan: ClassVar[bool]
    #: a client waiting on a result can be woken by a publish (Redis pub/sub)
    supports_pubsub: ClassVar[bool]

    @classmethod
    def from_settings(cls, url: str, settings: Settings) -> ResultStore: ...
    def get_many(self, keys: Sequence[str]) -> dict[str, Any]: ...  # key -> StoredItem for keys present
    def delete_many(self, keys: Sequence[str]) -> int: ...  # deletes what exists, returns count sent
    def put(self, key: str, value: bytes, *, ttl_seconds: int | None = None) -> None: ...
    def scan(self, prefix: str | None = None) -> Iterator[Any]: ...  # StoredItem as found
    def close(self) -> None: ...


class TableAdmin(Protocol):
    """Provisioning of DynamoDB result tables (see taskctl.backends.dynamodb)."""

    @classmethod
    def from_settings(cls, url: str, settings: Settings) -> TableAdmin: ...


class Broker(Protocol):
    """Queues over kombu (see taskctl.backends.broker)."""

    @classmethod
    def from_settings(cls, url: str, settings: Settings) -> Broker: ...
