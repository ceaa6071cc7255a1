"""Task and group meta as Celery reads it: states, children (result tuples), exceptions, progress, and plain
JSON-ready copies of any decoded value.

Pure: no I/O, stdlib only. The readers never raise on odd values (a stored result is untrusted): what cannot be
read is said in ``TaskMeta.problem`` or shown as a bounded text.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from taskctl.formats.bounded import MAX_INT_BITS, check_scalar
from taskctl.formats.result_refs import GroupRef, TaskRef, flatten_ids, parse_refs, parse_result_tuple
from taskctl.formats.safepickle import PickledGlobal, PickledObject
from taskctl.formats.times import parse_iso

READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
EXCEPTION_STATES = frozenset({"RETRY", "FAILURE", "REVOKED"})


@dataclass(frozen=True)
class ExceptionInfo:
    type: str
    message: str
    module: str | None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "module": self.module}

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


def _str_of_args(exc_type: str, args: Any) -> str:
    """What ``str(exc)`` shows for an exception built from ARGS (KeyError shows its repr)."""
    if isinstance(args, str):
        return _text(args)
    if not isinstance(args, list | tuple):
        return _short(args)
    if len(args) == 0:
        return ""
    if len(args) == 1:
        a = args[0]
        if exc_type.rsplit(".", 1)[-1] == "KeyError":
            return _short(a)
        return _text(a) if isinstance(a, str) else _short(a)
    return _short(tuple(args))


def _short(value: Any, limit: int = 10_000) -> str:
    """``repr`` that never raises and never passes LIMIT characters."""
    try:
        text = repr(to_plain(value)) if isinstance(value, PickledObject | PickledGlobal) else repr(value)
    except Exception:  # past Python's int digit limit, RecursionError, a failing __repr__
        try:
            text = repr(to_plain(value, max_depth=20))
        except Exception:
            text = object.__repr__(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def exception_info(value: Any) -> ExceptionInfo | None:
    """An exception as Celery stored it: the ``exc_type`` dict, a safe-pickle placeholder or a real exception.
    Never raises; every text in it is bounded."""
    try:
        return _exception_info(value)
    except Exception as exc:
        return ExceptionInfo("?", f"<exception cannot be read: {type(exc).__name__}>", None)


def _exception_info(value: Any) -> ExceptionInfo | None:
    if isinstance(value, BaseException):
        t = type(value)
        return ExceptionInfo(t.__qualname__, _text(value), t.__module__)
    if isinstance(value, PickledObject):
        name = value.name or "?"
        args = value.get("args", [])
        if name == "celery.utils.serialization.UnpickleableExceptionWrapper" and len(args) >= 3:
            return ExceptionInfo(_text(args[1], 200), _str_of_args(_text(args[1]), args[2]), _text(args[0], 200))
        module, _, typ = name.rpartition(".")
        return ExceptionInfo(typ, _str_of_args(typ, args), module or None)
    if isinstance(value, Mapping) and "exc_type" in value:
        typ = _text(value.get("exc_type"), 200)
        exc_module = value.get("exc_module")
        return ExceptionInfo(
            typ, _str_of_args(typ, value.get("exc_message")), _text(exc_module, 200) if exc_module else None
        )
    return None


@dataclass
class TaskMeta:
    """One task's stored meta, read as Celery reads it."""

    task_id: str
    status: str
    result: Any
    traceback: str | None
    children: tuple[TaskRef | GroupRef, ...]
    date_done: str | None
    group_id: str | None = None
    parent_id: str | None = None
    name: str | None = None
    args: Any = None
    kwargs: Any = None
    worker: str | None = None
    retries: int | None = None
    queue: str | None = None
    stamps: dict[str, Any] = field(default_factory=dict)
    #: what could not be read of the meta (the rest is as stored)
    problem: str | None = None

    @property
    def exception(self) -> ExceptionInfo | None:
        if self.status in EXCEPTION_STATES:
            return exception_info(self.result)
        return None

    @property
    def child_ids(self) -> list[str]:
        return flatten_ids(self.children)

    @property
    def progress(self) -> tuple[int, int] | None:
        """Celery's PROGRESS pattern: a custom state whose meta carries ``current`` and ``total``."""
        r = self.result
        if self.status in READY_STATES or self.status in EXCEPTION_STATES or not isinstance(r, Mapping):
            return None
        cur, tot = r.get("current", r.get("done")), r.get("total")
        if not (isinstance(cur, int | float) and isinstance(tot, int | float)) or isinstance(cur, bool):
            return None
        if not (_showable_number(cur) and _showable_number(tot)):
            return None  # 1e999, NaN, a 5,000-digit int: not a progress anyone can show
        return int(cur), int(tot)


def _showable_number(v: int | float) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    return v.bit_length() <= MAX_INT_BITS


def _text(v: Any, limit: int = 10_000) -> str:
    """``str(v)`` that never raises (a huge int, a nested value past the recursion limit, a real object whose
    ``__str__`` fails) and never passes LIMIT characters."""
    try:
        if isinstance(v, int) and not _showable_number(v):
            text = f"<int of about {int(v.bit_length() * 0.30103) + 1} digits>"
        else:
            text = v if isinstance(v, str) else str(v)
    except Exception:
        text = f"<unprintable {type(v).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _opt_str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        return v[:10_000].decode("utf-8", "replace")
    return _text(v)


def _date_str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    return _text(v, 100)


_META_FIELDS = frozenset(
    {"status", "result", "traceback", "children", "date_done", "task_id", "group_id", "parent_id", "name", "args"}
    | {"kwargs", "worker", "retries", "queue", "stamped_headers"}
)


def parse_task_meta(value: Any, task_id: str) -> TaskMeta | None:
    """Read a decoded meta dict; None when it is not shaped like task meta. Never raises."""
    if not isinstance(value, Mapping) or "status" not in value:
        return None
    try:
        return _parse_task_meta(value, task_id)
    except Exception as exc:  # a Mapping whose methods fail (a real object from an unsafe pickle), ...
        return TaskMeta(task_id, "PENDING", None, None, (), None, problem=f"meta cannot be read: {type(exc).__name__}")


def _parse_task_meta(value: Mapping[str, Any], task_id: str) -> TaskMeta:
    refs = parse_refs(value.get("children") or ())
    problem = None
    retries = value.get("retries")
    stamps: dict[str, Any] = {}
    stamped = value.get("stamped_headers")
    if stamped and isinstance(stamped, list | tuple):
        stamps = {k: value[k] for k in stamped if isinstance(k, str) and k in value and k not in _META_FIELDS}
    return TaskMeta(
        task_id=_opt_str(value.get("task_id")) or task_id,
        status=_opt_str(value.get("status")) or "PENDING",
        result=value.get("result"),
        traceback=_opt_str(value.get("traceback")),
        children=tuple(refs),
        date_done=_date_str(value.get("date_done")),
        group_id=_opt_str(value.get("group_id")),
        parent_id=_opt_str(value.get("parent_id")),
        name=_opt_str(value.get("name")),
        args=value.get("args"),
        kwargs=value.get("kwargs"),
        worker=_opt_str(value.get("worker")),
        retries=retries if isinstance(retries, int) and not isinstance(retries, bool) else None,
        queue=_opt_str(value.get("queue")),
        stamps=stamps,
        problem=problem,
    )


def parse_group_meta(value: Any) -> GroupRef | None:
    """Group meta is only ``{"result": GroupResult.as_tuple()}`` (§1.6)."""
    if not isinstance(value, Mapping) or "result" not in value:
        return None
    ref = parse_result_tuple(value["result"])
    return ref if isinstance(ref, GroupRef) else None


#: ``date_done`` in any of Celery's spellings as an aware UTC datetime (:func:`taskctl.formats.times.parse_iso`)
parse_date_done = parse_iso


def to_plain(value: Any, *, max_depth: int = 200) -> Any:
    """A JSON-ready copy: placeholders become dicts, tuples lists, sets lists, UUID/Decimal/datetime strings or
    numbers; cycles become ``{"__cycle__": true}``; huge ints ``{"__int_hex__": "0x…"}``. Never recurses
    without bound."""
    if value is None or isinstance(value, bool | str) or (type(value) is int and value.bit_length() < 13000):
        return value
    active: set[int] = set()

    def conv(v: Any, depth: int) -> Any:
        if v is None or isinstance(v, bool | str):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else check_scalar(v)[0]  # JSON output cannot hold NaN/Infinity
        if isinstance(v, int):
            return v if v.bit_length() < 13000 else {"__int_hex__": hex(v)}
        if isinstance(v, bytes | bytearray | memoryview):
            return bytes(v)
        if isinstance(v, Decimal):
            return check_scalar(v)[0]  # 1E+999999999 or sNaN would hang or fail whoever turns it into a number
        if isinstance(v, dt.datetime | dt.date | dt.time):
            return v.isoformat()
        if isinstance(v, dt.timedelta):
            return v.total_seconds()
        if isinstance(v, uuid.UUID):
            return str(v)
        if depth > max_depth:
            return {"__truncated__": True}
        if id(v) in active:
            return {"__cycle__": True}
        if isinstance(v, BaseException):
            info = exception_info(v)
            return info.to_json() if info else repr(v)
        if isinstance(v, Mapping | list | tuple | set | frozenset):
            active.add(id(v))
            try:
                if isinstance(v, Mapping):
                    out: dict[str, Any] = {}
                    for k, x in v.items():
                        key = k if isinstance(k, str) else json.dumps(conv(k, depth + 1), default=str)
                        out[key] = conv(x, depth + 1)
                    return out
                items = sorted(v, key=repr) if isinstance(v, set | frozenset) else v
                return [conv(x, depth + 1) for x in items]
            finally:
                active.discard(id(v))
        try:
            return repr(v)
        except Exception:
            return object.__repr__(v)

    return conv(value, 0)


def is_pickled_placeholder(value: Any) -> bool:
    return isinstance(value, PickledObject | PickledGlobal)
