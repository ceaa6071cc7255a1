"""Table descriptions: what `table describe|list|create` return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from taskctl.models.base import Model


@dataclass(frozen=True)
class KeyAttr(Model):
    name: str
    type: str
    key: str


@dataclass(frozen=True)
class TableInfo(Model):
    """A DynamoDB table as Celery's DynamoDB backend sees it."""

    columns: ClassVar[tuple[str, ...]] = (
        "table",
        "status",
        "billing_mode",
        "read_capacity",
        "write_capacity",
        "celery_compatible",
        "item_count",
        "size_bytes",
        "ttl_status",
        "ttl_attribute",
    )
    #: the documented JSON: TTL as one ``ttl`` object, and ``deleted`` (table delete) read from ``extra``
    json_fields: ClassVar[dict[str, str | dict[str, str]]] = {
        "table": "table",
        "status": "status",
        "billing_mode": "billing_mode",
        "read_capacity": "read_capacity",
        "write_capacity": "write_capacity",
        "key_schema": "key_schema",
        "celery_compatible": "celery_compatible",
        "problems": "problems",
        "item_count": "item_count",
        "size_bytes": "size_bytes",
        "ttl": {"status": "ttl_status", "attribute": "ttl_attribute"},
        "item_sizes": {
            "sampled": "sampled_items",
            "near_limit": "near_limit_items",
            "largest_bytes": "largest_item_bytes",
            "largest_key": "largest_item_key",
        },
        "created": "created",
        "changed": "changed",
        "dry_run": "dry_run",
        "deleted": "extra.deleted",
    }

    table: str
    status: str
    billing_mode: str
    read_capacity: int | None
    write_capacity: int | None
    key_schema: tuple[KeyAttr, ...]
    celery_compatible: bool
    problems: tuple[str, ...]
    item_count: int | None
    size_bytes: int | None
    ttl_status: str | None
    ttl_attribute: str | None
    created: bool | None = None
    changed: bool | None = None
    dry_run: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: `table describe`'s bounded sample (None: not sampled): items read, how many of them are at least
    #: 300 KiB (near DynamoDB's 400 KB item limit, past which Celery cannot store a result), the largest
    sampled_items: int | None = None
    near_limit_items: int | None = None
    largest_item_bytes: int | None = None
    largest_item_key: str | None = None
