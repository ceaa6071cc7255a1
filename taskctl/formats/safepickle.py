"""A pickle reader that imports nothing and runs nothing: :class:`pickle.Unpickler` with a ``find_class`` that
returns inert placeholders, the standard library's documented way to restrict unpickling.

Only the opcodes that name a callable (GLOBAL, STACK_GLOBAL, INST, OBJ, REDUCE, NEWOBJ, BUILD, PERSID, EXT*) can
make ``pickle.loads`` run code; here each name becomes a placeholder that says what the real unpickler *would*
call::

    >>> safe_loads(pickle.dumps(ValueError("bad 2")))
    {'__pickle_global__': 'builtins.ValueError', 'args': ['bad 2']}

Plain data (dict, list, tuple, set, frozenset, str, bytes, int, float, bool, None) decodes to itself. A few
pure-data standard types are rebuilt without calling anything the pickle names: ``datetime``/``date``/
``time``/``timedelta``/``timezone``, ``Decimal``, ``UUID``, ``OrderedDict`` (as dict), ``set``/``frozenset``,
``bytearray`` and Python 2 style ``_codecs.encode`` bytes.

Bounded on hostile input: before the C unpickler runs, one pass over the opcodes (lengths only,
:mod:`taskctl.formats.picklescan`) refuses memo indices and declared lengths the data cannot hold (a 9-byte
``LONG_BINPUT 2**27`` makes CPython allocate 2 GB) and more than :data:`MAX_OPCODES` opcodes; after it, :func:`taskctl.formats.bounded.bound` refuses a value
whose shared references expand past its budget ("billion laughs") and replaces huge ints, NaN and the like.

API: :func:`safe_loads` (raises :class:`PickleDecodeError`, a ValueError, on corrupt or oversized data),
:func:`safe_load_bounded` (also returns the problems found), the placeholder types :class:`PickledGlobal` and
:class:`PickledObject`, and :func:`looks_like_pickle`.
"""

from __future__ import annotations

import _compat_pickle
import datetime as dt
import io
import json
import pickle
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from taskctl.formats.bounded import ValueTooLarge, bound, check_scalar
from taskctl.formats.picklescan import MAX_OPCODES, PickleDecodeError, check_opcodes

__all__ = [
    "MAX_OPCODES",
    "MAX_PICKLE_BYTES",
    "PickleDecodeError",
    "PickledGlobal",
    "PickledObject",
    "looks_like_pickle",
    "safe_load_bounded",
    "safe_loads",
]

#: a pickle larger than this is refused unread
MAX_PICKLE_BYTES = 64 * 1024 * 1024


class PickledGlobal(dict[str, Any]):
    """A reference to a module-level name (class or function) that was not imported."""

    def __init__(self, name: str) -> None:
        super().__init__({"__pickle_global__": name})

    @property
    def name(self) -> str:
        return str(self["__pickle_global__"])

    __hash__ = object.__hash__  # type: ignore[assignment]


class PickledObject(dict[str, Any]):
    """What a call would have built: ``{"__pickle_global__": "os.system", "args": [...]}`` plus, when the
    pickle carries them, ``kwargs``, ``state`` (BUILD), ``items`` (dict items) and ``listitems``.

    The unpickler treats it as the object it stands for: SETITEM, APPEND and BUILD on it are recorded."""

    def __init__(self, callable_: Any, args: list[Any], kwargs: dict[Any, Any] | None = None) -> None:
        if isinstance(callable_, PickledGlobal):
            init: dict[str, Any] = {"__pickle_global__": callable_.name}
        else:
            init = {"__pickle_global__": None, "__pickle_callable__": callable_}
        init["args"] = args
        if kwargs:
            init["kwargs"] = kwargs
        super().__init__(init)

    @property
    def name(self) -> str | None:
        n = self.get("__pickle_global__")
        return n if isinstance(n, str) else None

    __hash__ = object.__hash__  # type: ignore[assignment]

    # -- what the unpickler calls on the object this stands for (SETITEM(S), APPEND(S), BUILD, REDUCE)
    def __setitem__(self, key: Any, value: Any) -> None:
        self.setdefault("items", []).append([key, value])

    def append(self, value: Any) -> None:
        self.setdefault("listitems", []).append(value)

    def extend(self, values: Any) -> None:
        self.setdefault("listitems", []).extend(values)

    def __setstate__(self, state: Any) -> None:
        old = self.get("state")
        if isinstance(old, dict) and isinstance(state, dict):
            old.update(state)
        else:
            dict.__setitem__(self, "state", state)

    def __call__(self, *args: Any, **kwargs: Any) -> PickledObject:
        return PickledObject(self, list(args), kwargs or None)


def looks_like_pickle(data: bytes) -> bool:
    """Protocol 2+ pickles start with PROTO (0x80) and a protocol number."""
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def _qualname(module: str, name: str) -> str:
    """Python 2 names as Python 3's unpickler maps them (fix_imports)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _rebuild(name: str | None, args: list[Any]) -> Any:
    """Pure-data standard types rebuilt by taskctl's own code; anything else stays a placeholder."""
    try:
        if name in ("builtins.set", "builtins.frozenset") and len(args) <= 1:
            items = args[0] if args else []
            return set(items) if name == "builtins.set" else frozenset(items)
        if name == "builtins.bytearray":
            if not args:
                return b""
            if len(args) == 1 and isinstance(args[0], bytes | list):
                return bytes(args[0])
            if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin-1", "latin1"):
                return args[0].encode("latin-1")
        if (
            name == "_codecs.encode"
            and len(args) == 2
            and isinstance(args[0], str)
            and args[1] in ("latin1", "latin-1")
        ):
            return args[0].encode("latin-1")
        if name == "collections.OrderedDict" and not args:
            return {}
        if name == "decimal.Decimal" and len(args) == 1 and isinstance(args[0], str):
            return Decimal(args[0])
        if name == "datetime.timedelta" and 1 <= len(args) <= 3 and all(type(a) is int for a in args):
            return dt.timedelta(*args)
        if name == "datetime.timezone" and args and isinstance(args[0], dt.timedelta):
            if len(args) == 2 and isinstance(args[1], str):
                return dt.timezone(args[0], args[1])
            return dt.timezone(args[0])
        if name in ("datetime.datetime", "datetime.date", "datetime.time") and args and isinstance(args[0], bytes):
            tz = args[1] if len(args) > 1 else None
            if len(args) > 2 or (tz is not None and not isinstance(tz, dt.tzinfo)):
                return None
            cls = {"datetime.datetime": dt.datetime, "datetime.date": dt.date, "datetime.time": dt.time}[name]
            build: Any = cls  # the pickle constructors take the packed bytes state
            if cls is dt.date:
                return build(args[0]) if tz is None else None
            return build(args[0], tz) if tz is not None else build(args[0])
    except (TypeError, ValueError, OverflowError, InvalidOperation):
        return None
    return None


def _call(callable_: Any, args: Any, kwargs: dict[Any, Any] | None = None) -> Any:
    arglist = list(args) if isinstance(args, tuple | list) else [args]
    name = callable_.name if isinstance(callable_, PickledGlobal) else None
    if not kwargs:
        rebuilt = _rebuild(name, arglist)
        if rebuilt is not None:
            return rebuilt
    return PickledObject(callable_, arglist, kwargs)


class _Global:
    """What ``find_class`` returns: a class (NEWOBJ insists on one) whose construction builds the placeholder."""

    __slots__ = ()
    _name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _call(PickledGlobal(cls._name), args, kwargs or None)


#: placeholder classes by name, made once (a class costs far more than the lookup)
_GLOBALS: dict[str, type[_Global]] = {}


class _Unpickler(pickle.Unpickler):
    """The C unpickler with nothing importable: every global is a :class:`_Global` placeholder class."""

    def __init__(self, data: bytes) -> None:
        # Python 2 str (STRING opcodes) decoded as ASCII, the rest escaped rather than refused
        super().__init__(io.BytesIO(data), fix_imports=False, encoding="ascii", errors="backslashreplace")

    #: whether a placeholder needs finishing by the walk (a UUID's state; a bare global fails the C check)
    named = False

    def find_class(self, module: str, name: str) -> Any:
        qual = _qualname(module, name)
        if qual == "uuid.UUID":
            self.named = True
        cls = _GLOBALS.get(qual)
        if cls is None:
            if len(_GLOBALS) >= 512:  # bounded: hostile pickles may name any number of globals
                _GLOBALS.clear()
            cls = _GLOBALS[qual] = type(qual, (_Global,), {"__slots__": (), "_name": qual})
        return cls

    def persistent_load(self, pid: Any) -> Any:
        return {"__pickle_persistent_id__": pid}


def _finish(v: Any) -> Any:
    """Load-time placeholders as the reader returns them (applied to every node by :func:`bound`)."""
    if isinstance(v, type) and issubclass(v, _Global):
        return PickledGlobal(v._name)
    if type(v) is PickledObject and v.get("__pickle_global__") == "uuid.UUID":
        state = v.get("state")
        if isinstance(state, dict) and type(state.get("int")) is int and len(v) == 3 and not v["args"]:
            try:
                return uuid.UUID(int=state["int"])
            except ValueError:
                return v
    return v


#: below this size a pickle that shares no container is checked at C speed (json's encoder) before the walk
_FAST_CHECK_BYTES = 4 * 1024 * 1024
_LEAVES = (bytes, bytearray, dt.datetime, dt.date, dt.time, dt.timedelta, dt.tzinfo, uuid.UUID)


def _leaf_or_refuse(o: Any) -> Any:
    if isinstance(o, set | frozenset):
        return list(o)
    if isinstance(o, _LEAVES) or (isinstance(o, Decimal) and check_scalar(o)[1] is None):
        return None
    raise TypeError("needs the walk")


def _plainly_bounded(value: Any) -> bool:
    """Whether VALUE (known to share nothing) holds no NaN/Infinity, no int past Python's digit limit, no
    unusual type and no nesting deep enough to trouble a renderer: one pass of the C JSON encoder."""
    try:
        json.dumps(value, allow_nan=False, default=_leaf_or_refuse)
    except (ValueError, TypeError, RecursionError, OverflowError):
        return False
    return True


def safe_load_bounded(data: bytes | bytearray | memoryview) -> tuple[Any, list[str]]:
    """Decode DATA like ``pickle.loads`` without importing or calling anything it names, bounded in time and
    memory; also returns what was replaced by placeholders. Raises :class:`PickleDecodeError`."""
    raw = bytes(data)
    if not raw:
        raise PickleDecodeError("empty pickle")
    if len(raw) > MAX_PICKLE_BYTES:
        raise PickleDecodeError(f"pickle of {len(raw):,} bytes is larger than {MAX_PICKLE_BYTES:,}")
    shares = check_opcodes(raw)
    unpickler = _Unpickler(raw)
    try:
        value = unpickler.load()
    except RecursionError:
        raise PickleDecodeError("pickle nests too deeply") from None
    except MemoryError:
        raise PickleDecodeError("pickle needs more memory than it can justify") from None
    except Exception as exc:  # UnpicklingError, EOFError, TypeError, ValueError, KeyError, ...
        raise PickleDecodeError(f"not a valid pickle: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not shares and not unpickler.named and len(raw) <= _FAST_CHECK_BYTES and _plainly_bounded(value):
        return value, []
    try:
        return bound(value, convert=_finish)
    except ValueTooLarge as exc:
        raise PickleDecodeError(f"pickle {exc}") from None


def safe_loads(data: bytes | bytearray | memoryview) -> Any:
    """Decode DATA like ``pickle.loads`` without importing or calling anything it names."""
    return safe_load_bounded(data)[0]
