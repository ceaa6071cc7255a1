"""The one renderer: table | plain | json | jsonl | csv | tsv | markdown, for every command.

Commands return a :class:`~taskctl.models.Model`, a :class:`~taskctl.models.Listing` (or any iterable of
models), an :class:`~taskctl.models.Outcome`, or plain JSON-able data. JSON: an object for one-thing commands,
an array for lists, snake_case keys, every key always present; written by :mod:`taskctl.output.jsontext`.
Text cells (escaped, cut for people, never for csv/tsv) come from :mod:`taskctl.output.cells`.

Lists stream: rows are written as they come. The coloured terminal table is rich's (it folds cells to the
terminal width and colours states); tabulate draws the plain ``key  value`` view of one object and markdown
pipe tables. The plain list is aligned here, on its first 200 rows, because tabulate needs every row before it
prints the first and ``result list`` over a big table must start at once. This module alone imports rich
and tabulate, inside the functions that draw.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from typing import Any, TextIO

from taskctl.errors import ExitCode
from taskctl.formats.output import FORMATS
from taskctl.models import Listing, Model, Outcome, ResultTree, TreeRow
from taskctl.output.cells import (
    CELL_LIMIT,
    STATE_COLUMNS,
    STATE_STYLES,
    cell,
    escape,
    object_pairs,
    row_cells,
)
from taskctl.output.jsontext import dumps, iter_json
from taskctl.output.tree import tree_lines

__all__ = [
    "FORMATS",
    "STATE_STYLES",
    "Renderer",
    "cell",
    "default_format",
    "dumps",
    "install_event_handlers",
    "render",
    "render_error",
]

#: the longest cell in each text format; None: never cut (scripts parse csv and tsv)
LIMITS: dict[str, int | None] = {"table": CELL_LIMIT, "plain": CELL_LIMIT, "markdown": CELL_LIMIT}
#: plain and markdown columns are aligned on this many first rows; later rows stream with those widths
HEAD_ROWS = 200
_WRITE_CHUNK = 1 << 16


def default_format(stream: TextIO | None = None) -> str:
    s = stream or sys.stdout
    try:
        return "table" if s.isatty() else "plain"
    except (AttributeError, ValueError):
        return "plain"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


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
                print(escape(value.message), file=self.err)
            return value.exit_code
        if value is None:
            return ExitCode.OK
        fmt = self.fmt
        if isinstance(value, ResultTree) and fmt not in ("json", "table"):
            self._render_list(value.rows(), TreeRow)
        elif isinstance(value, ResultTree) and fmt == "table":
            self._render_tree(value)
        elif isinstance(value, Model):
            self._render_object(value)
        elif isinstance(value, Listing):
            self._render_list(iter(value.items), value.model)
            if value.summary and fmt == "table":
                print(escape(value.summary), file=self.err)
        elif isinstance(value, Iterator | list | tuple) and not isinstance(value, str | bytes):
            self._render_list(iter(value), None)
        else:
            self._write_json(value, indent=2 if fmt in ("json", "table") else None)
        self.out.flush()
        return ExitCode.OK

    def _write(self, text: str) -> None:
        self.out.write(text)

    def _write_json(self, value: Any, *, indent: int | None) -> None:
        """VALUE as JSON and a newline, written in chunks as the pieces come (any depth, linear time)."""
        buf: list[str] = []
        size = 0
        for piece in iter_json(value, indent=indent):
            buf.append(piece)
            size += len(piece)
            if size >= _WRITE_CHUNK:
                self._write("".join(buf))
                buf.clear()
                size = 0
        buf.append("\n")
        self._write("".join(buf))

    # -- one object -----------------------------------------------------------------------------------------
    def _render_object(self, obj: Model) -> None:
        fmt = self.fmt
        if fmt == "json":
            self._write_json(obj, indent=2)
        elif fmt == "jsonl":
            self._write_json(obj, indent=None)
        elif fmt in ("csv", "tsv"):
            self._render_list(iter([obj]), type(obj))
        elif fmt == "table":
            from rich.table import Table

            t = Table(show_header=False, box=None, pad_edge=False)
            t.add_column(style="bold")
            t.add_column()
            for key, val in object_pairs(obj):
                t.add_row(key, self._styled(key, val))
            self._console().print(t)
        else:
            from tabulate import tabulate

            pairs = list(object_pairs(obj))
            if fmt == "markdown":
                rows = [[_md(k), _md(v)] for k, v in pairs]
                text = tabulate(rows, ["field", "value"], tablefmt="github", disable_numparse=True)
            else:  # plain: "key  value" lines, for awk '$1=="status"{print $2}'
                text = tabulate(pairs, tablefmt="plain", disable_numparse=True, preserve_whitespace=True)
                text = "\n".join(line.rstrip() for line in text.splitlines())
            self._write(text + "\n" if text else "")

    def _render_tree(self, tree: ResultTree) -> None:
        from rich.text import Text

        console = self._console()
        if console.color_system is None:  # no colour (not a terminal): the same text, without rich's cost
            for segments in tree_lines(tree):
                self._write("".join(t for t, _ in segments) + "\n")
            return
        batch = Text()
        for n, segments in enumerate(tree_lines(tree), 1):
            if batch:
                batch.append("\n")
            for t, st in segments:
                batch.append(t, STATE_STYLES.get(st, st) if st else None)
            if n % 500 == 0:  # rich prints a few hundred lines at once far faster than one by one
                console.print(batch, soft_wrap=True)
                batch = Text()
        if batch:
            console.print(batch, soft_wrap=True)

    # -- lists ------------------------------------------------------------------------------------------------
    def _render_list(self, items: Iterable[Any], model: type[Model] | None) -> None:
        it = iter(items)
        fmt = self.fmt
        if fmt == "json":
            # the first item before the "[": an error before any row (an unreachable broker) leaves stdout empty
            head = list(islice(it, 1))
            self._write("[")
            first = True
            for item in chain(head, it):
                self._write("\n  " if first else ",\n  ")
                self._write(dumps(item))
                first = False
                self.out.flush()
            self._write("\n]\n" if not first else "]\n")
            return
        if fmt == "jsonl":
            for item in it:
                self._write_json(item, indent=None)
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
                self._write_json(item, indent=None)
            return
        limit = LIMITS.get(fmt)
        if fmt in ("csv", "tsv"):
            buf = io.StringIO()
            w = csv.writer(buf, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
            w.writerow(columns)
            self._write(buf.getvalue())
            for item in rows():
                buf.seek(0)
                buf.truncate()
                w.writerow(["" if c == "-" else c for c in row_cells(item, columns, limit=None, sep=",")])
                self._write(buf.getvalue())
            return
        if fmt == "table":
            from rich.table import Table

            t = Table(show_header=True, header_style="bold")
            for c in columns:
                t.add_column(c.upper(), overflow="fold")
            for item in rows():
                cells = row_cells(item, columns, limit=limit)
                t.add_row(*[self._styled(c, v) for c, v in zip(columns, cells, strict=True)])
            self._console().print(t)
            return
        head = [*first_batch, *islice(rest, HEAD_ROWS - 1)]
        head_cells = [row_cells(i, columns, limit=limit) for i in head]
        if fmt == "markdown":
            from tabulate import tabulate

            md_rows = [[_md(c) for c in cs] for cs in head_cells]
            self._write(tabulate(md_rows, list(columns), tablefmt="github", disable_numparse=True) + "\n")
            self.out.flush()
            for item in rest:  # pipe tables need no alignment: later rows stream as they come
                self._write("| " + " | ".join(_md(c) for c in row_cells(item, columns, limit=limit)) + " |\n")
            return
        # plain: aligned on the first rows; later rows keep those widths (stable columns, streaming)
        headers = [c.upper() for c in columns]
        widths = [len(h) for h in headers]
        for cs in head_cells:
            widths = [max(w, len(c)) for w, c in zip(widths, cs, strict=True)]

        def line(cs: list[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cs, widths, strict=True)).rstrip() + "\n"

        self._write(line(headers))
        for cs in head_cells:
            self._write(line(cs))
        self.out.flush()
        for item in rest:
            self._write(line(row_cells(item, columns, limit=limit)))

    def _console(self) -> Any:
        from rich.console import Console

        return Console(file=self.out, width=self.width, soft_wrap=False, highlight=False)

    @staticmethod
    def _styled(column: str, value: str) -> Any:
        from rich.text import Text

        style = STATE_STYLES.get(value) if column in STATE_COLUMNS or column.endswith("status") else None
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
    s.write(f"error: {escape(str(err.message))}\n")
    if getattr(err, "hint", None):
        s.write(f"hint: {escape(str(err.hint))}\n")


def install_event_handlers(*, quiet: bool, verbose: bool, stderr: TextIO | None = None) -> None:
    """Route taskctl.events to stderr: warnings unless --quiet, notes with --verbose, progress on a tty."""
    from contextlib import contextmanager

    from taskctl import events

    err = stderr or sys.stderr

    def warn(msg: str) -> None:
        if not quiet:
            print(f"warning: {escape(msg)}", file=err)

    def note(msg: str) -> None:
        if verbose and not quiet:
            print(escape(msg), file=err)

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
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
        ]
        with Progress(*cols, console=Console(file=err), transient=True) as p:
            task = p.add_task(escape(description), total=total)

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
                        kw["description"] = escape(description)
                    p.update(task, **kw)

            yield Handle()

    events.install(warn=warn, note=note, progress=progress)
