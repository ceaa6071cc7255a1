"""Frozen dataclasses the operations return. Each declares its columns once; every output format reads them.

``columns`` name the attributes shown by table/plain/csv/tsv/markdown output, in order. The JSON object is every
dataclass field under its own name, always present (null when empty), unless the class declares another layout
as data (``json_fields``, ``json_value``). Models know nothing of rendering: that is ``taskctl.output``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from taskctl.errors import ExitCode


class Model:
    """Base for every value a command returns."""

    #: attributes shown as columns (table, plain, csv, tsv, markdown), in order
    columns: ClassVar[tuple[str, ...]] = ()
    #: the JSON object when it is not every field under its own name: JSON key -> field name, ``"field.key"``
    #: for one key of a dict field, or a {key: field} mapping for an object made of several fields. Every key is
    #: always written (null when empty), so the schema never changes from one row to the next.
    json_fields: ClassVar[Mapping[str, str | Mapping[str, str]] | None] = None
    #: the JSON is this one field's value instead of an object of fields (a drained line is its record)
    json_value: ClassVar[str | None] = None


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
