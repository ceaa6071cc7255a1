"""Frozen dataclasses the operations return. Each declares its columns once; every output format reads them.

``columns`` name the attributes shown by table/plain/csv/tsv output, in order; ``to_json`` is the stable JSON
object documented in the README (by default every dataclass field). Renderers live in ``taskctl.output``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
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
