"""Text cells: what a model's columns show in table, plain, markdown, csv and tsv output.

Stored data is untrusted: every text cell has its terminal control characters escaped (``\\x1b``, ``\\r``,
``\\u202e`` ...), so a task name cannot move the cursor, recolour the terminal or reverse the text; JSON keeps
the exact string. Cells for people (table, plain, markdown) cut long stored values (results) as before; csv
and tsv never cut.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from taskctl.models import BrokerQueue, Model, RpcResult, StoredGroup, TaskResult, TreeRow
from taskctl.output.jsontext import compact, convert
from taskctl.units import format_duration

#: colours of states and statuses in the terminal table (rich style names)
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
STATE_COLUMNS = frozenset({"state", "status", "ttl_status", "result"})

#: a result cut to this many characters in table and plain output (a tree line: TREE_LIMIT)
CELL_LIMIT = 80
TREE_LIMIT = 60


def _escapes() -> dict[int, str]:
    table = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
    table.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
    # bidirectional controls and line separators reorder or break what follows them on a terminal
    for c in (0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        table[c] = f"\\u{c:04x}"
    return table


_ESCAPES = _escapes()
_NEEDS_ESCAPE = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_ESCAPES)) + "]")


def escape(text: str) -> str:
    """TEXT safe to print on a terminal: C0/C1 controls, DEL and bidi controls as backslash escapes."""
    # the search runs in C; most text has nothing to escape and is returned as it is
    return text.translate(_ESCAPES) if _NEEDS_ESCAPE.search(text) else text


def cut(text: str, limit: int | None) -> str:
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def cell(value: Any, *, sep: str = ", ") -> str:
    """A value as one escaped text cell; None is "-"; lists joined with SEP; anything nested as compact JSON."""
    t = type(value)
    if t is str:
        return escape(value)
    if value is None:
        return "-"
    if t is bool:
        return "true" if value else "false"
    if t is int and value.bit_length() < 10_000:  # longer ints: compact() writes what Python cannot print
        return str(value)
    if isinstance(value, int | float | Decimal | dt.date):
        return compact(value).strip('"')
    if isinstance(value, list | tuple | set | frozenset):
        if not value:
            return "-"
        if all(isinstance(v, str | int | float | bool | Decimal) or v is None for v in value):
            return sep.join(cell(v) for v in value)
    return escape(compact(value))


def value_text(value: Any, limit: int | None) -> str:
    """A stored value (a result) in one cell: strings as they are, anything else as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return cut(escape(value), limit)
    return cut(escape(compact(value, limit)), limit)


def exception_text(exc: Mapping[str, Any]) -> str:
    """``Type: message`` as Celery's exception is shown in a table."""
    return f"{exc.get('type')}: {exc.get('message')}" if exc.get("message") else str(exc.get("type"))


def _task_result(r: TaskResult, limit: int | None) -> dict[str, Any]:
    out = _fields(r)
    if r.undecodable:
        u = r.undecodable
        out["result"] = f"<undecodable: {u.get('size')} bytes, {u.get('head')}>"
    elif r.exception:
        out["result"] = exception_text(r.exception)
    else:
        text = value_text(r.result, limit)
        out["result"] = f"pickle: {text}" if r.serializer == "pickle" and r.result is not None else text
    if r.expired:
        out["state"] = f"{r.state} (expired)"
    return out


def _stored_group(g: StoredGroup, limit: int | None) -> dict[str, Any]:
    out = _fields(g)
    out["members"] = len(g.members) if g.kind == "group" else None
    return out


def _broker_queue(q: BrokerQueue, limit: int | None) -> dict[str, Any]:
    out = _fields(q)
    out["idle"] = format_duration(q.idle_seconds) if q.idle_seconds is not None else None
    out["expires"] = format_duration(q.expires) if q.expires is not None else None
    return out


def _rpc_result(r: RpcResult, limit: int | None) -> dict[str, Any]:
    out = _fields(r)
    res = r.result
    if isinstance(res, dict) and "exc_type" in res:
        msg = res.get("exc_message")
        if isinstance(msg, list):
            msg = ", ".join(str(m) for m in msg)
        out["result"] = f"{res.get('exc_type')}: {msg}"
    elif r.error:
        out["result"] = r.error
    else:
        out["result"] = value_text(res, limit)
    return out


def _tree_row(r: TreeRow, limit: int | None) -> dict[str, Any]:
    out = _fields(r)
    if r.exception:
        out["result"] = exception_text(r.exception)
    else:
        out["result"] = value_text(r.result, None if limit is None else min(limit, TREE_LIMIT))
    return out


def _fields(item: Model) -> dict[str, Any]:
    return {c: getattr(item, c, None) for c in item.columns}


#: models whose cells differ from their field values (counts, durations, one-line exceptions, cut results)
_VIEWS: dict[type, Callable[[Any, int | None], dict[str, Any]]] = {
    TaskResult: _task_result,
    StoredGroup: _stored_group,
    BrokerQueue: _broker_queue,
    RpcResult: _rpc_result,
    TreeRow: _tree_row,
}


def row_cells(item: Any, columns: Iterable[str], *, limit: int | None, sep: str = ", ") -> list[str]:
    """One row: an escaped text cell per column; LIMIT cuts stored values (results), never names or details."""
    if isinstance(item, Model):
        view = _VIEWS.get(type(item))
        values = view(item, limit) if view else _fields(item)
        return [cell(values.get(c), sep=sep) for c in columns]
    if isinstance(item, Mapping):
        return [cell(item.get(c), sep=sep) for c in columns]
    return [cell(getattr(item, c, None), sep=sep) for c in columns]


def object_pairs(obj: Any, *, sep: str = ", ") -> Iterable[tuple[str, str]]:
    """A one-thing result as (key, text) lines: nested objects as ``key.sub``, lists of objects as ``a:b:c``."""
    data = convert(obj)
    if not isinstance(data, Mapping):
        yield "value", cell(data, sep=sep)
        return
    for key, raw in data.items():
        val = convert(raw)
        k = escape(str(key))
        if (
            isinstance(val, Mapping)
            and val
            and all(not isinstance(convert(v), Mapping | list | tuple) for v in val.values())
        ):
            for k2, v2 in val.items():
                yield f"{k}.{escape(str(k2))}", cell(convert(v2), sep=sep)
        elif isinstance(val, list | tuple) and val and all(isinstance(convert(v), Mapping) for v in val):
            yield k, sep.join(":".join(cell(convert(x)) for x in convert(v).values()) for v in val)
        elif isinstance(val, list | tuple) and key == "problems":
            yield k, "; ".join(cell(v) for v in val) if val else "-"
        else:
            yield k, cell(val, sep=sep)
