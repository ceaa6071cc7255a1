"""The one renderer: table | plain | json | jsonl | csv | tsv, for every command.

Commands return a :class:`~taskctl.models.Model`, a :class:`~taskctl.models.Listing` (or any iterable of
models), an :class:`~taskctl.models.Outcome`, or plain JSON-able data. JSON: an object for one-thing commands,
an array for lists, snake_case keys, Decimal as a number, bytes as base64, datetimes ISO-8601 UTC.
Lists stream: rows are written as they come (a rich table on a terminal is the one exception).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime as dt
import enum
import io
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from itertools import islice
from typing import Any, TextIO

from taskctl.errors import ExitCode
from taskctl.models import Listing, Model, Outcome

FORMATS = ("table", "plain", "json", "jsonl", "csv", "tsv")  # the same tuple as taskctl.cli.FORMATS
STATE_STYLES = {
    "SUCCESS": "green",
    "FAILURE": "bold red",
    "REVOKED": "magenta",
    "REJECTED": "red",
    "PENDING": "dim",
    "RECEIVED": "cyan",
    "STARTED": "yellow",
    "RETRY": "yellow",
    "IGNORED": "dim",
    "ACTIVE": "green",
    "CREATING": "yellow",
    "UPDATING": "yellow",
    "DELETING": "red",
    "ENABLED": "green",
    "DISABLED": "dim",
    "ENABLING": "yellow",
    "DISABLING": "yellow",
    "pass": "green",
    "warn": "yellow",
    "fail": "bold red",
}
_STATE_COLUMNS = {"state", "status", "ttl_status", "result"}


def default_format(stream: TextIO | None = None) -> str:
    s = stream or sys.stdout
    try:
        return "table" if s.isatty() else "plain"
    except (AttributeError, ValueError):
        return "plain"


def jsonable(value: Any) -> Any:
    """Convert a value to what json.dumps accepts, the documented way."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Model):
        return jsonable(value.to_json())
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return repr(value)


def dumps(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(jsonable(value), indent=indent, ensure_ascii=False, sort_keys=False)


def cell(value: Any) -> str:
    """A value as one cell of plain/csv/table output."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | int | float):
        return str(jsonable(value))
    if isinstance(value, str):
        return value.replace("\n", "\\n").replace("\t", " ")
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(cell(v) for v in value) if value else "-"
    if isinstance(value, dt.datetime):
        return str(jsonable(value))
    if isinstance(value, Model):
        return dumps(value)
    return dumps(value)


class Renderer:
    def __init__(
        self,
        fmt: str | None = None,
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        width: int | None = None,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.fmt = fmt or default_format(self.out)
        self.width = width

    # -- entry point -------------------------------------------------------------------------------------
    def render(self, value: Any) -> ExitCode:
        """Print VALUE in this renderer's format; return the exit code it carries."""
        if isinstance(value, Outcome):
            self.render(value.value)
            if value.message:
                self.out.flush()
                print(value.message, file=self.err)
            return value.exit_code
        if value is None:
            return ExitCode.OK
        if isinstance(value, Model):
            rows = value.flat_rows() if self.fmt not in ("json", "table") else None
            if rows is not None:
                self._render_list(rows, None)
            else:
                self._render_object(value)
        elif isinstance(value, Listing):
            self._render_list(iter(value.items), value.model)
            if value.summary and self.fmt == "table":
                print(value.summary, file=self.err)
        elif isinstance(value, Iterator | list | tuple) and not isinstance(value, str | bytes):
            self._render_list(iter(value), None)
        else:
            self._write(dumps(value, indent=2 if self.fmt in ("json", "table") else None) + "\n")
        self.out.flush()
        return ExitCode.OK

    def _write(self, text: str) -> None:
        self.out.write(text)

    # -- one object -----------------------------------------------------------------------------------------
    def _render_object(self, obj: Model) -> None:
        fmt = self.fmt
        if fmt == "json":
            self._write(dumps(obj, indent=2) + "\n")
        elif fmt == "jsonl":
            self._write(dumps(obj) + "\n")
        elif fmt in ("csv", "tsv"):
            self._render_list(iter([obj]), type(obj))
        elif fmt == "table":
            tree_lines = getattr(obj, "tree_lines", None)
            console = self._console()
            if callable(tree_lines):
                from rich.text import Text

                for segments in tree_lines():
                    console.print(Text.assemble(*[(t, STATE_STYLES.get(st, st) if st else "") for t, st in segments]))
            else:
                from rich.table import Table

                t = Table(show_header=False, box=None, pad_edge=False)
                t.add_column(style="bold")
                t.add_column()
                for key, val in self._object_pairs(obj):
                    t.add_row(key, self._styled(key, val))
                console.print(t)
        else:  # plain: "key  value" lines, for awk '$1=="status"{print $2}'
            pairs = list(self._object_pairs(obj))
            width = max((len(k) for k, _ in pairs), default=0)
            for key, val in pairs:
                self._write(f"{key.ljust(width)}  {val}\n")

    def _object_pairs(self, obj: Model) -> Iterator[tuple[str, str]]:
        data = jsonable(obj.to_json())
        for key, val in data.items():
            if isinstance(val, dict) and val and all(not isinstance(v, dict | list) for v in val.values()):
                for k2, v2 in val.items():
                    yield f"{key}.{k2}", cell(v2)
            elif isinstance(val, list) and val and all(isinstance(v, dict) for v in val):
                yield key, ",".join(":".join(cell(x) for x in v.values()) for v in val)
            elif isinstance(val, list) and key == "problems":
                yield key, "; ".join(str(v) for v in val) if val else "-"
            else:
                yield key, cell(val)

    # -- lists ------------------------------------------------------------------------------------------------
    def _render_list(self, items: Iterator[Model] | Iterable[Model], model: type[Model] | None) -> None:
        it = iter(items)
        fmt = self.fmt
        if fmt == "json":
            self._write("[")
            first = True
            for item in it:
                self._write(("\n  " if first else ",\n  ") + dumps(item))
                first = False
                self.out.flush()
            self._write("\n]\n" if not first else "]\n")
            return
        if fmt == "jsonl":
            for item in it:
                self._write(dumps(item) + "\n")
                self.out.flush()
            return
        first_batch = list(islice(it, 1))
        if model is None:
            if not first_batch:
                return
            model = type(first_batch[0])
        columns = getattr(model, "columns", ()) or ()
        rest: Iterator[Any] = it

        def rows() -> Iterator[Any]:
            yield from first_batch
            yield from rest

        if not columns:
            for item in rows():
                self._write(dumps(item) + "\n")
            return
        headers = [c.upper() for c in columns]
        if fmt in ("csv", "tsv"):
            buf = io.StringIO()
            w = csv.writer(buf, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
            w.writerow([c for c in columns])
            self._write(buf.getvalue())
            for item in rows():
                buf.seek(0)
                buf.truncate()
                cells = self._cells(item, columns)
                w.writerow(["" if c == "-" else c for c in cells])
                self._write(buf.getvalue())
            return
        if fmt == "table":
            from rich.table import Table

            t = Table(show_header=True, header_style="bold")
            for h in headers:
                t.add_column(h, overflow="fold")
            for item in rows():
                cells = self._cells(item, columns)
                t.add_row(*[self._styled(c, v) for c, v in zip(columns, cells, strict=True)])
            self._console().print(t)
            return
        # plain: aligned on the first 200 rows; later rows keep those widths (stable columns, streaming)
        head = [*first_batch, *islice(rest, 199)]
        widths = [len(h) for h in headers]
        head_cells = [self._cells(i, columns) for i in head]
        for cs in head_cells:
            widths = [max(w, len(c)) for w, c in zip(widths, cs, strict=True)]

        def line(cs: list[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cs, widths, strict=True)).rstrip() + "\n"

        self._write(line(headers))
        for cs in head_cells:
            self._write(line(cs))
        self.out.flush()
        for item in rest:
            self._write(line(self._cells(item, columns)))

    @staticmethod
    def _cells(item: Any, columns: Iterable[str]) -> list[str]:
        if isinstance(item, Model):
            values = item.cells()
            return [cell(values.get(c)) for c in columns]
        if isinstance(item, Mapping):
            return [cell(item.get(c)) for c in columns]
        return [cell(getattr(item, c, None)) for c in columns]

    def _console(self) -> Any:
        from rich.console import Console

        return Console(file=self.out, width=self.width, soft_wrap=False, highlight=False)

    @staticmethod
    def _styled(column: str, value: str) -> Any:
        from rich.text import Text

        style = STATE_STYLES.get(value) if column in _STATE_COLUMNS or column.endswith("status") else None
        if value in ("true", "false") and column in ("celery_compatible", "found", "ok"):
            style = "green" if value == "true" else "red"
        return Text(value, style=style or "")


def render(value: Any, fmt: str | None = None, *, out: TextIO | None = None) -> ExitCode:
    return Renderer(fmt, out=out).render(value)


def render_error(err: Any, fmt: str | None, *, stream: TextIO | None = None) -> None:
    """Errors: one line on stderr (plus a hint line); JSON on stderr under -o json/jsonl."""
    s = stream or sys.stderr
    if fmt in ("json", "jsonl"):
        s.write(json.dumps({"error": err.to_json()}, ensure_ascii=False) + "\n")
        return
    s.write(f"error: {err.message}\n")
    if getattr(err, "hint", None):
        s.write(f"hint: {err.hint}\n")


def install_event_handlers(*, quiet: bool, verbose: bool, stderr: TextIO | None = None) -> None:
    """Route taskctl.events to stderr: warnings unless --quiet, notes with --verbose, progress on a tty."""
    from contextlib import contextmanager

    from taskctl import events

    err = stderr or sys.stderr

    def warn(msg: str) -> None:
        if not quiet:
            print(f"warning: {msg}", file=err)

    def note(msg: str) -> None:
        if verbose and not quiet:
            print(msg, file=err)

    is_tty = False
    try:
        is_tty = err.isatty()
    except (AttributeError, ValueError):
        pass

    @contextmanager
    def progress(description: str, total: int | None) -> Iterator[Any]:
        if quiet or not is_tty:
            yield events._NullProgress()
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

        cols: list[Any] = [
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
        ]
        with Progress(*cols, console=Console(file=err), transient=True) as p:
            task = p.add_task(description, total=total)

            class Handle:
                def advance(self, n: int = 1) -> None:
                    p.advance(task, n)

                def update(
                    self,
                    *,
                    total: int | None = None,
                    completed: int | None = None,
                    description: str | None = None,
                ) -> None:
                    kw: dict[str, Any] = {}
                    if total is not None:
                        kw["total"] = total
                    if completed is not None:
                        kw["completed"] = completed
                    if description is not None:
                        kw["description"] = description
                    p.update(task, **kw)

            yield Handle()

    events.install(warn=warn, note=note, progress=progress)
