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

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "table": self.table,
            "status": self.status,
            "billing_mode": self.billing_mode,
            "read_capacity": self.read_capacity,
            "write_capacity": self.write_capacity,
            "key_schema": [k.to_json() for k in self.key_schema],
            "celery_compatible": self.celery_compatible,
            "problems": list(self.problems),
            "item_count": self.item_count,
            "size_bytes": self.size_bytes,
            "ttl": {"status": self.ttl_status, "attribute": self.ttl_attribute},
        }
        if self.created is not None:
            out["created"] = self.created
        if self.changed is not None:
            out["changed"] = self.changed
        if self.dry_run:
            out["dry_run"] = True
        out.update(self.extra)
        return out
