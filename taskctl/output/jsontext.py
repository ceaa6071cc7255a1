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
from json.encoder import encode_basestring as _encode_str  # json.dumps' own C string encoder
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


_LAYOUTS: dict[type, list[tuple[str, str, str | None] | tuple[str, list[tuple[str, str, str | None]]]]] = {}


def _layout(cls: type[Model]) -> list[Any]:
    """The class's json_fields, parsed once: (key, field, key in a dict field) or (key, [sub keys])."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        spec = cls.json_fields or {}

        def one(key: str, source: str) -> tuple[str, str, str | None]:
            name, dot, sub = source.partition(".")
            return key, name, sub if dot else None

        layout = _LAYOUTS[cls] = [
            one(k, src) if isinstance(src, str) else (k, [one(k2, s2) for k2, s2 in src.items()])
            for k, src in spec.items()
        ]
    return layout


def _read(model: Model, name: str, sub: str | None) -> Any:
    value = getattr(model, name)
    if sub is None:
        return value
    return value.get(sub) if isinstance(value, Mapping) else None


def json_view(model: Model) -> Any:
    """The JSON shape of one model, one level deep (its values are converted by the writer)."""
    cls = type(model)
    if cls.json_value is not None:
        return getattr(model, cls.json_value)
    if cls.json_fields is None:
        return {name: getattr(model, name) for name in _field_names(cls)}
    out: dict[str, Any] = {}
    for entry in _layout(cls):
        if len(entry) == 3:
            out[entry[0]] = _read(model, entry[1], entry[2])
        else:
            out[entry[0]] = {k: _read(model, name, sub) for k, name, sub in entry[1]}
    return out


def _number_value(value: Decimal) -> int | float | str:
    if not value.is_finite():
        return "NaN" if value.is_nan() else ("-Infinity" if value < 0 else "Infinity")
    if value.adjusted() > MAX_DIGITS or value.adjusted() < -MAX_DIGITS:
        return str(value)
    if value == value.to_integral_value():
        return int(value)
    f = float(value)
    return f if math.isfinite(f) else str(value)


def _float_value(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("-Infinity" if value < 0 else "Infinity")


def _atom(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return _encode_str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than Python prints: keep it, as a string
            return _encode_str(hex(value))
    if isinstance(value, float):
        f = _float_value(value)
        return repr(f) if isinstance(f, float) else _encode_str(f)
    n = _number_value(value)
    return _encode_str(n) if isinstance(n, str) else _atom(n)


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


def _key(key: Any) -> str:
    if isinstance(key, str):
        return _encode_str(key)
    if key is None or isinstance(key, bool | int | float):
        return _encode_str(json.dumps(key))
    return _encode_str(str(key))


class _Nested(Exception):
    """A model inside a value: the C encoder stops and the stack writer takes over (trees can be deep)."""


def _c_default(value: Any) -> Any:
    if isinstance(value, Model):
        raise _Nested
    if isinstance(value, Decimal):
        return _number_value(value)
    return convert(value)


#: the C encoder, for values without models in them: several times faster than the stack writer
_C_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_c_default)


def _fast(value: Any) -> str | None:
    """VALUE encoded by the C encoder, or None where the stack writer must do it (deep, a model, NaN, ...)."""
    try:
        return _C_ENCODER.encode(value)
    except _Nested:
        return None
    except (RecursionError, ValueError, TypeError):
        return ""


def iter_json(value: Any, *, indent: int | None = None) -> Iterator[str]:
    """VALUE as JSON text, in pieces, depth-first with an explicit stack (no recursion, linear in the size).

    ``indent=None`` gives json.dumps' compact form (``", "``, ``": "``), else one key or item a line.
    Compact values without models inside go through the C encoder; where it gives up (a model inside, too
    deep, NaN, a huge int, a cycle) the stack writer goes on, and below a value too deep or odd for the C
    encoder it does not try again. A container that contains itself is written as ``{"__cycle__": true}``.
    """
    item_sep = ", " if indent is None else ","
    # a frame: [iterator over items, is a mapping, depth of its items, first item still to come, id, try C]
    frames: list[list[Any]] = []
    open_ids: set[int] = set()

    pads = [""] * (MAX_INDENT_DEPTH + 1)
    if indent is not None:
        pads = ["\n" + " " * (indent * d) for d in range(MAX_INDENT_DEPTH + 1)]

    def pad(depth: int) -> str:
        return pads[depth if depth < MAX_INDENT_DEPTH else MAX_INDENT_DEPTH]

    def begin(v: Any, depth: int, try_c: bool) -> str:
        t = type(v)
        if t is str:
            return _encode_str(v)
        if v is None or t is bool or t is int or t is float:
            return _atom(v)
        if t is not dict and t is not list and t is not tuple:
            v = convert(v)
            if not isinstance(v, Mapping | list | tuple):
                return _atom(v)
        if not v:
            return "{}" if isinstance(v, Mapping) else "[]"
        if try_c and indent is None:
            text = _fast(v)
            if text:
                return text
            try_c = text is None
        if id(v) in open_ids:
            return '{"__cycle__": true}'
        open_ids.add(id(v))
        if isinstance(v, Mapping):
            frames.append([iter(v.items()), True, depth, True, id(v), try_c])
            return "{"
        frames.append([iter(v), False, depth, True, id(v), try_c])
        return "["

    yield begin(value, 1, True)
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
            yield head + (_encode_str(k) if type(k) is str else _key(k)) + ": " + begin(v, depth + 1, frame[5])
        else:
            yield head + begin(nxt, depth + 1, frame[5])


def dumps(value: Any, *, indent: int | None = None) -> str:
    """VALUE as one JSON text (any depth)."""
    return "".join(iter_json(value, indent=indent))


def compact(value: Any, limit: int | None = None) -> str:
    """VALUE as compact JSON; with LIMIT, the stack writer stops once that many characters are out."""
    if type(value) in (dict, list):
        text = _fast(value)  # one C call for the common case: a result without models, not too deep
        if text:
            return text
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
