"""A pickle reader that imports nothing and runs nothing.

Pickle is a small stack machine; only the opcodes that name a callable (GLOBAL, STACK_GLOBAL, INST, OBJ,
REDUCE, NEWOBJ, BUILD, PERSID, EXT*) can make ``pickle.loads`` run code. This reader interprets every opcode
with :mod:`pickletools` (which only parses) and turns those into inert placeholders that say what the real
unpickler *would* call::

    >>> safe_loads(pickle.dumps(ValueError("bad 2")))
    {'__pickle_global__': 'builtins.ValueError', 'args': ['bad 2']}

Plain data (dict, list, tuple, set, frozenset, str, bytes, int, float, bool, None) decodes to itself. A few
pure-data standard types are rebuilt without calling anything the pickle names: ``datetime``/``date``/
``time``/``timedelta``/``timezone``, ``Decimal``, ``UUID``, ``OrderedDict`` (as dict), ``set``/``frozenset``,
``bytearray`` and Python 2 style ``_codecs.encode`` bytes.

API: :func:`safe_loads` (raises :class:`PickleDecodeError`, a ValueError, on corrupt data), the placeholder
types :class:`PickledGlobal` and :class:`PickledObject`, and :func:`looks_like_pickle`.
"""

from __future__ import annotations

import _compat_pickle
import datetime as dt
import pickletools
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["PickleDecodeError", "PickledGlobal", "PickledObject", "looks_like_pickle", "safe_loads"]


class PickleDecodeError(ValueError):
    """The bytes are not a well-formed pickle."""


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
    pickle carries them, ``kwargs``, ``state`` (BUILD), ``items`` (dict items) and ``listitems``."""

    def __init__(self, callable_: Any, args: list[Any], kwargs: dict[Any, Any] | None = None) -> None:
        super().__init__()
        if isinstance(callable_, PickledGlobal):
            self["__pickle_global__"] = callable_.name
        else:
            self["__pickle_global__"] = None
            self["__pickle_callable__"] = callable_
        self["args"] = args
        if kwargs:
            self["kwargs"] = kwargs

    @property
    def name(self) -> str | None:
        n = self.get("__pickle_global__")
        return n if isinstance(n, str) else None

    __hash__ = object.__hash__  # type: ignore[assignment]


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


class _Mark:
    pass


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


def safe_loads(data: bytes | bytearray | memoryview) -> Any:
    """Decode DATA like ``pickle.loads`` without importing or calling anything it names."""
    try:
        return _Machine(bytes(data)).run()
    except PickleDecodeError:
        raise
    except RecursionError:
        raise PickleDecodeError("pickle nests too deeply") from None
    except Exception as exc:  # pickletools raises ValueError, the machine IndexError/KeyError/TypeError
        raise PickleDecodeError(f"not a valid pickle: {type(exc).__name__}: {exc}") from None


class _Machine:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}

    def pop_mark(self) -> list[Any]:
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def run(self) -> Any:
        if not self.data:
            raise PickleDecodeError("empty pickle")
        for op, arg, _pos in pickletools.genops(self.data):
            name = op.name
            handler = _HANDLERS.get(name)
            if handler is not None:
                handler(self, arg)
            elif name == "STOP":
                if len(self.stack) != 1 or self.metastack:
                    raise PickleDecodeError("pickle stops with an unbalanced stack")
                return self.stack.pop()
            else:
                raise PickleDecodeError(f"unsupported pickle opcode {name}")
        raise PickleDecodeError("pickle ends without STOP")

    # -- helpers used by the handler table
    def push(self, value: Any) -> None:
        self.stack.append(value)

    def setitems(self, target: Any, pairs: list[Any]) -> None:
        if len(pairs) % 2:
            raise PickleDecodeError("odd number of dict items")
        if isinstance(target, dict) and not isinstance(target, PickledGlobal | PickledObject):
            for i in range(0, len(pairs), 2):
                target[pairs[i]] = pairs[i + 1]
        elif isinstance(target, PickledObject):
            items = target.setdefault("items", [])
            for i in range(0, len(pairs), 2):
                items.append([pairs[i], pairs[i + 1]])
        else:
            raise PickleDecodeError(f"SETITEM on {type(target).__name__}")

    def appends(self, target: Any, values: list[Any]) -> None:
        if isinstance(target, list):
            target.extend(values)
        elif isinstance(target, PickledObject):
            target.setdefault("listitems", []).extend(values)
        else:
            raise PickleDecodeError(f"APPEND on {type(target).__name__}")

    def build(self, state: Any) -> None:
        inst = self.stack[-1]
        if isinstance(inst, PickledObject):
            if inst.name == "uuid.UUID" and isinstance(state, dict) and isinstance(state.get("int"), int):
                try:
                    rebuilt = uuid.UUID(int=state["int"])
                except ValueError:
                    rebuilt = None
                if rebuilt is not None:
                    self.stack[-1] = rebuilt
                    for k, v in list(self.memo.items()):
                        if v is inst:
                            self.memo[k] = rebuilt
                    return
            if "state" in inst and isinstance(inst["state"], dict) and isinstance(state, dict):
                inst["state"].update(state)
            else:
                inst["state"] = state
        elif isinstance(inst, dict) and isinstance(state, dict):
            inst.update(state)
        else:
            raise PickleDecodeError(f"BUILD on {type(inst).__name__}")


def _op_global(m: _Machine, arg: Any) -> None:
    module, _, name = str(arg).partition(" ")
    m.push(PickledGlobal(_qualname(module, name)))


def _op_stack_global(m: _Machine, arg: Any) -> None:
    name = m.stack.pop()
    module = m.stack.pop()
    if not isinstance(name, str) or not isinstance(module, str):
        raise PickleDecodeError("STACK_GLOBAL needs two strings")
    m.push(PickledGlobal(_qualname(module, name)))


def _op_reduce(m: _Machine, arg: Any) -> None:
    args = m.stack.pop()
    func = m.stack.pop()
    m.push(_call(func, args))


def _op_newobj(m: _Machine, arg: Any) -> None:
    args = m.stack.pop()
    cls = m.stack.pop()
    m.push(_call(cls, args))


def _op_newobj_ex(m: _Machine, arg: Any) -> None:
    kwargs = m.stack.pop()
    args = m.stack.pop()
    cls = m.stack.pop()
    m.push(_call(cls, args, kwargs if isinstance(kwargs, dict) else {"__kwargs__": kwargs}))


def _op_inst(m: _Machine, arg: Any) -> None:
    module, _, name = str(arg).partition(" ")
    args = m.pop_mark()
    m.push(_call(PickledGlobal(_qualname(module, name)), args))


def _op_obj(m: _Machine, arg: Any) -> None:
    items = m.pop_mark()
    if not items:
        raise PickleDecodeError("OBJ without a class")
    m.push(_call(items[0], items[1:]))


def _op_mark(m: _Machine, arg: Any) -> None:
    m.metastack.append(m.stack)
    m.stack = []


def _op_put(m: _Machine, arg: Any) -> None:
    m.memo[int(arg)] = m.stack[-1]


def _op_memoize(m: _Machine, arg: Any) -> None:
    m.memo[len(m.memo)] = m.stack[-1]


def _op_get(m: _Machine, arg: Any) -> None:
    m.push(m.memo[int(arg)])


def _op_setitem(m: _Machine, arg: Any) -> None:
    value = m.stack.pop()
    key = m.stack.pop()
    m.setitems(m.stack[-1], [key, value])


def _op_setitems(m: _Machine, arg: Any) -> None:
    items = m.pop_mark()
    m.setitems(m.stack[-1], items)


def _op_append(m: _Machine, arg: Any) -> None:
    value = m.stack.pop()
    m.appends(m.stack[-1], [value])


def _op_appends(m: _Machine, arg: Any) -> None:
    items = m.pop_mark()
    m.appends(m.stack[-1], items)


def _op_additems(m: _Machine, arg: Any) -> None:
    items = m.pop_mark()
    target = m.stack[-1]
    if not isinstance(target, set):
        raise PickleDecodeError("ADDITEMS on a non-set")
    target.update(items)


def _op_dict(m: _Machine, arg: Any) -> None:
    items = m.pop_mark()
    d: dict[Any, Any] = {}
    m.setitems(d, items)
    m.push(d)


def _op_build(m: _Machine, arg: Any) -> None:
    state = m.stack.pop()
    m.build(state)


def _op_string(m: _Machine, arg: Any) -> None:
    # Python 2 str: Python 3 decodes it as ASCII by default; keep undecodable ones as bytes
    if isinstance(arg, bytes):
        try:
            m.push(arg.decode("ascii"))
        except UnicodeDecodeError:
            m.push(arg)
    else:
        m.push(arg)


def _op_int(m: _Machine, arg: Any) -> None:
    m.push(arg)


def _op_pop(m: _Machine, arg: Any) -> None:
    if m.stack:
        m.stack.pop()
    else:
        m.pop_mark()


def _op_pop_mark(m: _Machine, arg: Any) -> None:
    m.pop_mark()


_HANDLERS: dict[str, Any] = {
    "PROTO": lambda m, a: None,
    "FRAME": lambda m, a: None,
    "MARK": _op_mark,
    "POP": _op_pop,
    "POP_MARK": _op_pop_mark,
    "DUP": lambda m, a: m.push(m.stack[-1]),
    "INT": _op_int,
    "BININT": _op_int,
    "BININT1": _op_int,
    "BININT2": _op_int,
    "LONG": _op_int,
    "LONG1": _op_int,
    "LONG4": _op_int,
    "NONE": lambda m, a: m.push(None),
    "NEWTRUE": lambda m, a: m.push(True),
    "NEWFALSE": lambda m, a: m.push(False),
    "FLOAT": lambda m, a: m.push(float(a)),
    "BINFLOAT": lambda m, a: m.push(float(a)),
    "STRING": _op_string,
    "BINSTRING": _op_string,
    "SHORT_BINSTRING": _op_string,
    "BINBYTES": lambda m, a: m.push(bytes(a)),
    "SHORT_BINBYTES": lambda m, a: m.push(bytes(a)),
    "BINBYTES8": lambda m, a: m.push(bytes(a)),
    "BYTEARRAY8": lambda m, a: m.push(bytes(a)),
    "UNICODE": lambda m, a: m.push(str(a)),
    "BINUNICODE": lambda m, a: m.push(str(a)),
    "SHORT_BINUNICODE": lambda m, a: m.push(str(a)),
    "BINUNICODE8": lambda m, a: m.push(str(a)),
    "EMPTY_LIST": lambda m, a: m.push([]),
    "APPEND": _op_append,
    "APPENDS": _op_appends,
    "LIST": lambda m, a: m.push(m.pop_mark()),
    "EMPTY_TUPLE": lambda m, a: m.push(()),
    "TUPLE": lambda m, a: m.push(tuple(m.pop_mark())),
    "TUPLE1": lambda m, a: m.push((m.stack.pop(),)),
    "TUPLE2": lambda m, a: m.push(tuple(reversed([m.stack.pop(), m.stack.pop()]))),
    "TUPLE3": lambda m, a: m.push(tuple(reversed([m.stack.pop(), m.stack.pop(), m.stack.pop()]))),
    "EMPTY_DICT": lambda m, a: m.push({}),
    "DICT": _op_dict,
    "SETITEM": _op_setitem,
    "SETITEMS": _op_setitems,
    "EMPTY_SET": lambda m, a: m.push(set()),
    "ADDITEMS": _op_additems,
    "FROZENSET": lambda m, a: m.push(frozenset(m.pop_mark())),
    "GET": _op_get,
    "BINGET": _op_get,
    "LONG_BINGET": _op_get,
    "PUT": _op_put,
    "BINPUT": _op_put,
    "LONG_BINPUT": _op_put,
    "MEMOIZE": _op_memoize,
    "GLOBAL": _op_global,
    "STACK_GLOBAL": _op_stack_global,
    "REDUCE": _op_reduce,
    "NEWOBJ": _op_newobj,
    "NEWOBJ_EX": _op_newobj_ex,
    "INST": _op_inst,
    "OBJ": _op_obj,
    "BUILD": _op_build,
    "PERSID": lambda m, a: m.push({"__pickle_persistent_id__": a}),
    "BINPERSID": lambda m, a: m.push({"__pickle_persistent_id__": m.stack.pop()}),
    "EXT1": lambda m, a: m.push(PickledGlobal(f"copyreg.extension[{a}]")),
    "EXT2": lambda m, a: m.push(PickledGlobal(f"copyreg.extension[{a}]")),
    "EXT4": lambda m, a: m.push(PickledGlobal(f"copyreg.extension[{a}]")),
    "NEXT_BUFFER": lambda m, a: m.push({"__pickle_out_of_band_buffer__": True}),
    "READONLY_BUFFER": lambda m, a: None,
}
