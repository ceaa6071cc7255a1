"""JSON text for every value a command returns: one generic conversion, written without recursion.

A model becomes an object of its fields (or the layout it declares as data: ``json_fields``, ``json_value``);
Decimal becomes a number, bytes base64, datetimes ISO-8601 UTC, enums their value. The writer keeps its own
stack instead of recursing (``json.dumps`` recurses, and a 10,000-level result tree or stored value would end
in RecursionError), and it caps the indentation depth: indenting every level of a 5,000-link chain made
``-o json`` quadratic in size (651 MB). Deeper levels are written at the cap's indentation, still valid JSON.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import math
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from taskctl.models import Model

#: levels below this are written at the same indentation: output stays linear in the size of a deep tree
MAX_INDENT_DEPTH = 32
#: Decimal and int values with more digits than this are written as strings (bounded time: 1E+999999999)
MAX_DIGITS = 4000
_PLAIN = (str, int, float, bool, type(None), Mapping, list, tuple)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def json_view(model: Model) -> Any:
    """The JSON shape of one model, one level deep (its values are converted by the writer)."""
    cls = type(model)
    if cls.json_value is not None:
        return getattr(model, cls.json_value)
    spec = cls.json_fields
    if spec is None:
        return {name: getattr(model, name) for name in _field_names(cls)}
    out: dict[str, Any] = {}
    for key, source in spec.items():
        if isinstance(source, str):
            out[key] = _read(model, source)
        else:
            out[key] = {k: _read(model, src) for k, src in source.items()}
    return out


def _read(model: Model, source: str) -> Any:
    name, dot, key = source.partition(".")
    value = getattr(model, name)
    if dot:
        return value.get(key) if isinstance(value, Mapping) else None
    return value


def _number(value: Decimal | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than Python prints: keep it, as a string
            return json.dumps(hex(value))
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return json.dumps("NaN" if math.isnan(value) else ("-Infinity" if value < 0 else "Infinity"))
    if not value.is_finite():
        return json.dumps("NaN" if value.is_nan() else ("-Infinity" if value < 0 else "Infinity"))
    if value.adjusted() > MAX_DIGITS or value.adjusted() < -MAX_DIGITS:
        return json.dumps(str(value))
    if value == value.to_integral_value():
        return str(int(value))
    f = float(value)
    return repr(f) if math.isfinite(f) else json.dumps(str(value))


def convert(value: Any) -> Any:
    """One value, one level deep, as JSON sees it: a Mapping, a list/tuple, or an atom (str, int, ...)."""
    while True:
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, Model):
            value = json_view(value)
        elif isinstance(value, Decimal):
            return value
        elif isinstance(value, bytes | bytearray | memoryview):
            return base64.b64encode(bytes(value)).decode("ascii")
        elif isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC)
            return value.isoformat()
        elif isinstance(value, dt.date):
            return value.isoformat()
        elif isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, set | frozenset):
            return list(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {name: getattr(value, name) for name in _field_names(type(value))}
        else:
            return repr(value)


def _atom(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return _number(value)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return json.dumps(key, ensure_ascii=False)
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(json.dumps(key))
    return json.dumps(str(key), ensure_ascii=False)


def iter_json(value: Any, *, indent: int | None = None) -> Iterator[str]:
    """VALUE as JSON text, in pieces, depth-first with an explicit stack (no recursion, linear in the size).

    ``indent=None`` gives json.dumps' compact form (``", "``, ``": "``), else one key or item a line.
    A container that contains itself is written as ``{"__cycle__": true}`` where it repeats.
    """
    item_sep = ", " if indent is None else ","
    # a frame: [iterator over items, is a mapping, depth of its items, first item still to come, id]
    frames: list[list[Any]] = []
    open_ids: set[int] = set()

    def pad(depth: int) -> str:
        return "" if indent is None else "\n" + " " * (indent * min(depth, MAX_INDENT_DEPTH))

    def begin(v: Any, depth: int) -> str:
        v = convert(v)
        if isinstance(v, Mapping):
            if not v:
                return "{}"
            if id(v) in open_ids:
                return '{"__cycle__": true}'
            open_ids.add(id(v))
            frames.append([iter(v.items()), True, depth, True, id(v)])
            return "{"
        if isinstance(v, list | tuple):
            if not v:
                return "[]"
            if id(v) in open_ids:
                return '{"__cycle__": true}'
            open_ids.add(id(v))
            frames.append([iter(v), False, depth, True, id(v)])
            return "["
        return _atom(v)

    yield begin(value, 1)
    end: Any = object()
    while frames:
        frame = frames[-1]
        nxt: Any = next(frame[0], end)
        depth = frame[2]
        if nxt is end:
            frames.pop()
            open_ids.discard(frame[4])
            yield pad(depth - 1) + ("}" if frame[1] else "]")
            continue
        head = pad(depth) if frame[3] else item_sep + pad(depth)
        frame[3] = False
        if frame[1]:
            k, v = nxt
            yield head + _key(k) + ": " + begin(v, depth + 1)
        else:
            yield head + begin(nxt, depth + 1)


def dumps(value: Any, *, indent: int | None = None) -> str:
    """VALUE as one JSON text (any depth)."""
    return "".join(iter_json(value, indent=indent))


def compact(value: Any, limit: int | None = None) -> str:
    """VALUE as compact JSON; with LIMIT, stop writing once that many characters are out (bounded time)."""
    if limit is None:
        return dumps(value)
    out: list[str] = []
    size = 0
    for piece in iter_json(value):
        out.append(piece)
        size += len(piece)
        if size > limit:
            break
    return "".join(out)
