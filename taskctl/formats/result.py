"""Result meta exactly as Celery 5.0–5.7 stores it: keys, serializers, 5.7 compression, exceptions, children.

Pure: no I/O, stdlib only (msgpack and yaml are imported inside the functions that need them). Decoding never
raises: a value that cannot be decoded comes back as :class:`Decoded` with ``error`` set, its size and first
bytes, so a caller can report it and carry on. Pickle is read with :mod:`taskctl.formats.safepickle` (imports
nothing, runs nothing) unless the caller passes ``unsafe_pickle=True``.
"""

from __future__ import annotations

import base64
import codecs
import datetime as dt
import json
import math
import pickle
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from taskctl.formats.bounded import MAX_INT_BITS, ValueTooLarge, bound, check_scalar
from taskctl.formats.compression import CELERY_COMPRESSED_MAGIC, compress, unwrap_celery
from taskctl.formats.compression import MAX_DECOMPRESSED as MAX_DECOMPRESSED
from taskctl.formats.loaders import load_json, load_msgpack, load_yaml
from taskctl.formats.safepickle import PickledGlobal, PickledObject, looks_like_pickle, safe_load_bounded
from taskctl.formats.times import parse_iso

TASK_PREFIX = "celery-task-meta-"
GROUP_PREFIX = "celery-taskset-meta-"
CHORD_PREFIX = "chord-unlock-"
KIND_PREFIXES = {"task": TASK_PREFIX, "group": GROUP_PREFIX, "chord-counter": CHORD_PREFIX}

READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
EXCEPTION_STATES = frozenset({"RETRY", "FAILURE", "REVOKED"})
SERIALIZERS = ("json", "msgpack", "yaml", "pickle")
SERIALIZER_ALIASES = {
    "application/json": "json",
    "application/x-msgpack": "msgpack",
    "application/x-yaml": "yaml",
    "application/x-python-serialize": "pickle",
}
COMPRESSED_MAGIC = CELERY_COMPRESSED_MAGIC
COMPRESSIONS = {
    "gzip": "application/x-gzip",
    "zlib": "application/x-gzip",
    "bzip2": "application/x-bz2",
    "bzip": "application/x-bz2",
    "lzma": "application/x-lzma",
    "xz": "application/x-lzma",
    "brotli": "application/x-brotli",
    "zstd": "application/zstd",
    "zstandard": "application/zstd",
}


class ResultFormatError(ValueError):
    """A value cannot be encoded the way Celery would store it."""


# -- keys ----------------------------------------------------------------------------------------------------


def global_prefixes(global_keyprefix: str | None) -> tuple[str, ...]:
    """What Celery prepends to every key: 5.5+ adds '_' unless the prefix ends in one of ': _ - .';
    5.4 and older always add '_'. Both spellings, newest first, when they differ."""
    if not global_keyprefix:
        return ("",)
    new = global_keyprefix if global_keyprefix[-1] in ":_-." else global_keyprefix + "_"
    old = global_keyprefix + "_"
    return (new,) if new == old else (new, old)


@dataclass(frozen=True)
class ParsedKey:
    kind: str  # task | group | chord-counter
    id: str
    prefix: str  # the global prefix part ("" without one)


@dataclass(frozen=True)
class KeyScheme:
    """Celery's key layout under one ``global_keyprefix`` (or none)."""

    global_keyprefix: str | None = None

    @property
    def prefixes(self) -> tuple[str, ...]:
        return global_prefixes(self.global_keyprefix)

    def keys(self, kind: str, ident: str) -> list[str]:
        return [p + KIND_PREFIXES[kind] + ident for p in self.prefixes]

    def task_keys(self, task_id: str) -> list[str]:
        return self.keys("task", task_id)

    def kind_prefixes(self, kinds: tuple[str, ...] = ("task", "group", "chord-counter")) -> list[str]:
        return [p + KIND_PREFIXES[k] for p in self.prefixes for k in kinds]

    def parse(self, key: str) -> ParsedKey | None:
        """The kind and id of KEY, or None when it is not one of Celery's keys under this prefix."""
        for p in sorted(self.prefixes, key=len, reverse=True):
            if not key.startswith(p):
                continue
            rest = key[len(p) :]
            for kind, kp in KIND_PREFIXES.items():
                if rest.startswith(kp) and len(rest) > len(kp):
                    return ParsedKey(kind, rest[len(kp) :], p)
        return None


def dynamodb_id(key: str) -> str:
    """The ``id`` Celery's DynamoDB backend writes: ``str()`` of the key as bytes, i.e. ``b'celery-task-meta-…'``
    (celery/celery#5455, unchanged up to 5.7)."""
    return str(key.encode("utf-8"))


def from_dynamodb_id(item_id: str) -> str:
    """The plain key inside a DynamoDB ``id`` (written by Celery with the b'…' wrapper, or by hand without)."""
    if len(item_id) >= 3 and item_id[0] == "b" and item_id[1] in "'\"" and item_id[-1] == item_id[1]:
        inner = item_id[2:-1]
        if "\\" not in inner:
            return inner
        try:  # the escapes of a bytes repr (\\xNN, \\\\, \\'); no ast: it is not thread-safe in 3.11
            raw: bytes = codecs.escape_decode(inner.encode("ascii"))[0]
            return raw.decode("utf-8", "backslashreplace")
        except (ValueError, UnicodeEncodeError):
            return item_id
    return item_id


# -- decoding ------------------------------------------------------------------------------------------------


@dataclass
class Decoded:
    """A stored value after decompression and deserialization (or the reason it could not be read)."""

    value: Any
    serializer: str | None
    compression: str | None = None
    error: str | None = None
    size: int = 0
    head: str = ""
    #: the configured serializer failed and sniffing found another one
    sniffed: bool = False
    #: parts of the value replaced by placeholders to keep it bounded (NaN, huge ints, cut nesting...)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def undecodable(self) -> dict[str, Any] | None:
        if self.error is None:
            return None
        return {"error": self.error, "size": self.size, "head": self.head, "compression": self.compression}


def head_of(raw: bytes, n: int = 32) -> str:
    """The first bytes, printable: Python bytes-literal notation without the b'' wrapper."""
    text = repr(raw[:n])[2:-1]
    return text + ("…" if len(raw) > n else "")


def decompress(raw: bytes) -> tuple[bytes, str | None]:
    """Undo Celery 5.7's in-band compression (``\\x00celery-compressed\\x00<ctype>\\x00<body>``), capped at
    :data:`MAX_DECOMPRESSED` (see :mod:`taskctl.formats.compression`). Raises ValueError."""
    return unwrap_celery(raw)


def _kombu_object_hook(obj: dict[str, Any]) -> Any:
    """kombu ≥5.3's ``{"__type__", "__value__"}`` wrappers; unknown types stay as they are."""
    if obj.keys() != {"__type__", "__value__"}:
        return obj
    t, v = obj["__type__"], obj["__value__"]
    try:
        if t == "bytes" and isinstance(v, str):
            return v.encode("utf-8")
        if t == "base64" and isinstance(v, str):
            return base64.b64decode(v)
        if t == "datetime" and isinstance(v, str):
            return dt.datetime.fromisoformat(v)
        if t == "date" and isinstance(v, str):
            return dt.date.fromisoformat(v)
        if t == "time" and isinstance(v, str):
            return dt.time.fromisoformat(v)
        if t == "decimal" and isinstance(v, str | int | float):
            return Decimal(str(v))
        if t == "uuid" and isinstance(v, dict) and isinstance(v.get("hex"), str):
            return uuid.UUID(hex=v["hex"])
    except (ValueError, ArithmeticError, TypeError):
        return obj
    return obj


def _load_json(data: bytes) -> tuple[Any, list[str]]:
    text = data.decode("utf-8")
    if '"__type__"' not in text:  # no kombu wrapper anywhere: skip the per-object hook (and the walk)
        return load_json(text)
    value, problems = load_json(text, object_hook=_kombu_object_hook)
    value, more = bound(value)  # a wrapped decimal may be 1E+999999999
    return value, problems + more


def sniff(data: bytes) -> str:
    """Guess the serializer from the first bytes (celery-formats §2.3); only a fallback."""
    if not data:
        return "json"
    first = data[0]
    if first in b"{[":
        return "json"
    if looks_like_pickle(data):
        return "pickle"
    if 0x80 <= first <= 0x8F or first in (0xDE, 0xDF):
        return "msgpack"
    return "yaml"


def normalize_serializer(name: str | None) -> str | None:
    if not name:
        return None
    n = name.strip().lower()
    n = SERIALIZER_ALIASES.get(n, n)
    if n not in SERIALIZERS:
        raise ResultFormatError(f"unknown serializer {name!r} (use one of: {', '.join(SERIALIZERS)})")
    return n


def _deserialize(data: bytes, serializer: str, unsafe_pickle: bool) -> tuple[Any, list[str]]:
    """The value and what had to be replaced to keep it bounded."""
    if serializer == "json":
        return _load_json(data)
    if serializer == "msgpack":
        return load_msgpack(data)
    if serializer == "yaml":
        return load_yaml(data.decode("utf-8"))
    if serializer == "pickle":
        if not unsafe_pickle:
            return safe_load_bounded(data)
        try:
            return bound(pickle.loads(data))
        except ValueTooLarge as exc:
            raise ValueError(str(exc)) from None
    raise ValueError(f"unknown serializer {serializer!r}")


def decode_payload(raw: bytes | str | None, serializer: str | None = None, *, unsafe_pickle: bool = False) -> Decoded:
    """Decode one stored value. SERIALIZER is what Celery was configured with (None: sniff). Never raises:
    what cannot be read is ``error``, what was replaced by placeholders to keep the value bounded ``problem``."""
    try:
        return _decode_payload(raw, serializer, unsafe_pickle)
    except Exception as exc:  # a last guard: stored data is untrusted and one bad item never stops a command
        data = raw.encode("utf-8", "replace") if isinstance(raw, str) else bytes(raw or b"")
        return Decoded(None, None, error=f"cannot decode: {type(exc).__name__}", size=len(data), head=head_of(data))


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decode_payload(raw: bytes | str | None, serializer: str | None, unsafe_pickle: bool) -> Decoded:
    if raw is None:
        return Decoded(None, None, error="no value stored", size=0, head="")
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    raw = bytes(raw)
    size, head = len(raw), head_of(raw)
    try:
        data, compression = decompress(raw)
    except Exception as exc:  # zlib.error, lzma.LZMAError, OSError, ValueError
        return Decoded(None, None, error=f"cannot decompress: {exc}", size=size, head=head, compression=None)
    try:
        wanted = normalize_serializer(serializer)
    except ResultFormatError as exc:
        return Decoded(None, None, compression, error=str(exc), size=size, head=head)
    order = [wanted] if wanted else []
    guess = sniff(data)
    if guess not in order:
        order.append(guess)
    first_error: str | None = None
    for i, name in enumerate(order):
        try:
            value, problems = _deserialize(data, name, unsafe_pickle)
        except RecursionError:
            err = f"not valid {name}: nested too deeply"
        except MemoryError:
            err = f"not valid {name}: too large to read"
        except Exception as exc:  # every decoder has its own error types; none may end the run
            err = f"not valid {name}: {type(exc).__name__}: {_one_line(str(exc))}"
        else:
            problem = "; ".join(problems) if problems else None
            return Decoded(
                value, name, compression, size=size, head=head, sniffed=bool(wanted) and i > 0, problem=problem
            )
        first_error = first_error or err
    return Decoded(None, None, compression, error=first_error, size=size, head=head)


# -- meta ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskRef:
    task_id: str
    #: a chain's last task carries its predecessors: the chain starts at the top-most parent
    parent: TaskRef | GroupRef | None = None


@dataclass(frozen=True)
class GroupRef:
    group_id: str
    members: tuple[TaskRef | GroupRef, ...]
    #: a group member that is a chain: its first task ("parent" in the tuple)
    parent: TaskRef | GroupRef | None = None


def parse_result_tuple(node: Any) -> TaskRef | GroupRef | None:
    """``[[id, parent], None]`` is an AsyncResult, ``[[id, parent], [members…]]`` a GroupResult (§1.5)."""
    if isinstance(node, str):
        return TaskRef(node)
    if not isinstance(node, list | tuple) or len(node) != 2:
        return None
    head, members = node
    if not isinstance(head, list | tuple) or len(head) != 2 or not isinstance(head[0], str):
        return None
    if members is None:
        parent_ref = parse_result_tuple(head[1]) if head[1] is not None else None
        return TaskRef(head[0], parent_ref)
    if isinstance(members, list | tuple):
        parsed = [parse_result_tuple(m) for m in members]
        parent = parse_result_tuple(head[1]) if head[1] is not None else None
        return GroupRef(head[0], tuple(p for p in parsed if p is not None), parent)
    return None


def flatten_ids(refs: Iterator[TaskRef | GroupRef] | tuple[TaskRef | GroupRef, ...] | list[Any]) -> list[str]:
    out: list[str] = []
    for r in refs:
        if isinstance(r, TaskRef):
            out.append(r.task_id)
        elif isinstance(r, GroupRef):
            out.extend(flatten_ids(r.members))
    return out


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
    children_raw = value.get("children") or ()
    refs: list[TaskRef | GroupRef] = []
    problem = None
    if isinstance(children_raw, list | tuple):
        try:
            for c in children_raw:
                r = parse_result_tuple(c)
                if r is not None:
                    refs.append(r)
        except RecursionError:
            problem = "children nest too deeply to read"
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


# -- plain, JSON-ready values --------------------------------------------------------------------------------


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


def decode_meta(raw: bytes, serializer: str | None = None, *, unsafe_pickle: bool = False) -> dict[str, Any]:
    """Stored meta as a plain dict; an OperationError (exit 1) names why it cannot be read."""
    from taskctl.errors import OperationError

    dec = decode_payload(raw, serializer, unsafe_pickle=unsafe_pickle)
    if not dec.ok:
        raise OperationError(f"stored result cannot be decoded: {dec.error} ({dec.size} bytes: {dec.head})")
    if not isinstance(dec.value, Mapping):
        raise OperationError(f"stored value is not result meta ({dec.size} bytes: {dec.head})")
    return dict(dec.value)


# -- encoding (what taskctl writes) --------------------------------------------------------------------------


class _CeleryException:
    """An exception taskctl writes into pickled meta by name, without importing its module."""

    def __init__(self, module: str, name: str, args: tuple[Any, ...]) -> None:
        self.module, self.name, self.args = module, name, args


class _GlobalName:
    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # save_reduce insists on a callable; never called
        raise TypeError("a name, not a function")


_PurePickler: Any = pickle._Pickler


class _Pickler(_PurePickler):  # type: ignore[misc]
    """The pure-Python pickler, writing exception classes by name (no import of celery needed)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _CeleryException):
            return (_GlobalName(obj.module, obj.name), obj.args)
        if isinstance(obj, _GlobalName):
            return obj.name
        return NotImplemented

    def save_global(self, obj: Any, name: Any = None) -> None:
        if isinstance(obj, _GlobalName):
            self.write(pickle.GLOBAL + obj.module.encode("utf-8") + b"\n" + obj.name.encode("utf-8") + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _kombu_json_default(o: Any) -> Any:
    if isinstance(o, bytes):
        try:
            return {"__type__": "bytes", "__value__": o.decode("utf-8")}
        except UnicodeDecodeError:
            return {"__type__": "base64", "__value__": base64.b64encode(o).decode("ascii")}
    if isinstance(o, dt.datetime):
        return {"__type__": "datetime", "__value__": o.isoformat()}
    if isinstance(o, dt.date):
        return {"__type__": "date", "__value__": o.isoformat()}
    if isinstance(o, dt.time):
        return {"__type__": "time", "__value__": o.isoformat()}
    if isinstance(o, Decimal):
        return {"__type__": "decimal", "__value__": str(o)}
    if isinstance(o, uuid.UUID):
        return {"__type__": "uuid", "__value__": {"hex": o.hex}}
    raise ResultFormatError(f"cannot store a {type(o).__name__} as json")


def _for_serializer(value: Any, serializer: str) -> Any:
    """Exception placeholders become Celery's exc dict for every serializer but pickle."""
    if isinstance(value, _CeleryException):
        if serializer == "pickle":
            return value
        return {"exc_type": value.name, "exc_message": list(value.args), "exc_module": value.module}
    if isinstance(value, dict):
        return {k: _for_serializer(v, serializer) for k, v in value.items()}
    return value


def encode_payload(meta: Mapping[str, Any], serializer: str = "json", compression: str | None = None) -> bytes:
    """Serialize META as Celery's backend would (and compress it the 5.7 way when asked)."""
    s = normalize_serializer(serializer) or "json"
    value = _for_serializer(dict(meta), s)
    if s == "json":
        data = json.dumps(value, default=_kombu_json_default).encode("utf-8")
    elif s == "msgpack":
        import msgpack

        data = bytes(msgpack.packb(value, use_bin_type=True))
    elif s == "yaml":
        import yaml

        data = yaml.safe_dump(value).encode("utf-8")
    else:
        import io

        buf = io.BytesIO()
        _Pickler(buf, protocol=4).dump(value)
        data = buf.getvalue()
    if compression:
        ctype = COMPRESSIONS.get(compression.lower(), compression)
        if ctype not in ("application/x-gzip", "application/x-bz2", "application/x-lzma"):
            raise ResultFormatError(f"taskctl cannot write {compression!r} compression (use gzip, bzip2 or lzma)")
        body = compress(data, ctype)
        data = COMPRESSED_MAGIC + ctype.encode("ascii") + b"\x00" + body
    return data


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def revoked_meta(
    task_id: str,
    reason: str = "revoked",
    *,
    previous: TaskMeta | None = None,
    date_done: str | None = None,
) -> dict[str, Any]:
    """Meta for REVOKED as a worker writes it (``TaskRevokedError(reason)``), keeping what was known of the task.

    Key order as Celery writes it; pass the result to :func:`encode_payload`."""
    meta: dict[str, Any] = {
        "status": "REVOKED",
        "result": _CeleryException("celery.exceptions", "TaskRevokedError", (reason,)),
        "traceback": None,
        "children": [] if previous is None else [_as_tuple(c) for c in previous.children],
        "date_done": date_done or now_iso(),
    }
    if previous is not None:
        if previous.group_id:
            meta["group_id"] = previous.group_id
        if previous.parent_id:
            meta["parent_id"] = previous.parent_id
        if previous.name is not None:
            meta.update(
                name=previous.name,
                args=previous.args,
                kwargs=previous.kwargs,
                worker=previous.worker,
                retries=previous.retries,
                queue=previous.queue,
            )
    meta["task_id"] = task_id
    return meta


def _as_tuple(ref: TaskRef | GroupRef) -> Any:
    if isinstance(ref, TaskRef):
        return [[ref.task_id, _as_tuple(ref.parent) if ref.parent is not None else None], None]
    parent = _as_tuple(ref.parent) if ref.parent is not None else None
    return [[ref.group_id, parent], [_as_tuple(m) for m in ref.members]]
