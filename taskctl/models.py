"""Frozen dataclasses the operations return. Each declares its columns once; every output format reads them.

``columns`` name the attributes shown by table/plain/csv/tsv output, in order; ``to_json`` is the stable JSON
object documented in the README (by default every dataclass field). Renderers live in ``taskctl.output``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from taskctl.errors import ExitCode


class Model:
    """Base for every value a command returns."""

    #: attributes shown as columns (table, plain, csv, tsv), in order
    columns: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def cells(self) -> dict[str, Any]:
        """Values for the columns; override to format a cell differently from its JSON value."""
        return {c: getattr(self, c) for c in self.columns}

    def flat_rows(self) -> Iterable[Model] | None:
        """For nested values (trees): the rows shown by jsonl/plain/csv/tsv. None: show the object itself."""
        return None


@dataclass
class Listing:
    """A list of models of one class: streams in every format and keeps headers when empty."""

    model: type[Model]
    items: Iterable[Model]
    #: printed to stderr after the rows on a terminal (e.g. counts per state)
    summary: str | None = None

    def __iter__(self) -> Iterator[Model]:
        return iter(self.items)


@dataclass
class Outcome:
    """A value to print plus a non-zero exit code (e.g. `--check` found a problem, or ids not found)."""

    value: Any
    exit_code: ExitCode = ExitCode.OK
    #: one line for stderr explaining the exit code
    message: str | None = None


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
