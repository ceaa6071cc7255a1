"""Any decoded value made bounded: what a stored result or message holds is untrusted.

A decoder (json, msgpack, yaml, pickle) can hand back values that are cheap to hold but explode or fail later:
shared references that expand to billions of nodes when rendered (a pickle "billion laughs", a YAML alias bomb),
ints whose ``str`` costs quadratic time (or raises past Python's 4300-digit limit), decimals like
``1E+999999999`` or ``sNaN`` that hang or raise when turned into numbers, float NaN/Infinity that JSON output
cannot hold, nesting deeper than any renderer recurses. :func:`bound` walks the value once, iteratively, and
replaces each such part with a :func:`placeholder` (``{"__unreadable__": "float nan"}``), returning the problems
it found; a value whose expansion passes the budget is refused with :class:`ValueTooLarge`.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_BITS",
    "MAX_NODES",
    "ValueTooLarge",
    "bound",
    "check_scalar",
    "placeholder",
]

#: values nested deeper are cut: deep enough for the children of a 25,000-link chain (two levels a link; walks
#: and renderers are iterative), shallow enough that a hostile value's nesting stays a bounded amount of work
MAX_DEPTH = 50_000
#: the expanded size (each shared reference counted every time it is reached) of one value, in nodes; a string
#: counts one node per 64 characters. About 100 MB when rendered.
MAX_NODES = 2_000_000
#: ints past this many bits (about 3,900 digits) become placeholders: ``str`` of them is quadratic and Python
#: refuses past 4,300 digits
MAX_INT_BITS = 13_000
#: decimals whose exponent passes this are placeholders (``int()`` of ``1E+999999999`` never ends)
MAX_DECIMAL_EXPONENT = 4_000
_MAX_PROBLEMS = 5


class ValueTooLarge(ValueError):
    """The value expands past :data:`MAX_NODES` (shared references, e.g. a pickle or YAML alias bomb)."""


def placeholder(what: str) -> dict[str, str]:
    """What stands in for a part of a value that cannot be shown as it is."""
    return {"__unreadable__": what}


def check_scalar(v: Any) -> tuple[Any, str | None]:
    """(replacement, problem) of a scalar; the replacement is V itself when it is fine."""
    t = type(v)
    if t is float:
        if math.isfinite(v):
            return v, None
        what = "float nan" if math.isnan(v) else ("float inf" if v > 0 else "float -inf")
        return placeholder(what), f"{what} replaced (JSON cannot hold it)"
    if isinstance(v, int) and t is not bool:
        bits = v.bit_length()
        if bits <= MAX_INT_BITS:
            return v, None
        what = f"int of about {int(bits * 0.30103) + 1} digits"
        return placeholder(what), f"{what} replaced"
    if isinstance(v, float) and not math.isfinite(v):
        return placeholder(f"float {v!r}"), "non-finite float replaced"
    if isinstance(v, Decimal):
        if v.is_finite() and abs(v.adjusted()) <= MAX_DECIMAL_EXPONENT and len(v.as_tuple().digits) <= 4_000:
            return v, None
        text = str(v) if v.is_nan() or v.is_infinite() or abs(v.adjusted()) < 10**12 else "huge"
        text = text if len(text) <= 40 else text[:20] + "…" + text[-10:]
        return placeholder(f"decimal {text}"), f"decimal {text} replaced"
    return v, None


_CONTAINERS = (list, tuple, dict, set, frozenset)
_SMALL = 2**62
#: scalars that are always safe to show (and that no decoder's placeholder is)
_PLAIN = frozenset({bool, bytes, bytearray, dt.datetime, dt.date, dt.time, dt.timedelta, uuid.UUID})


def bound(
    value: Any,
    *,
    convert: Callable[[Any], Any] | None = None,
    max_nodes: int = MAX_NODES,
    max_depth: int = MAX_DEPTH,
) -> tuple[Any, list[str]]:
    """VALUE with every unbounded part replaced, and what was replaced. Raises :class:`ValueTooLarge`.

    CONVERT, when given, is applied to each node that is not a plain scalar before it is looked at (the pickle
    reader turns its load-time placeholders into the ones it returns). Lists, dicts and sets are changed in
    place; tuples and frozensets are rebuilt when a member changes. Shared references stay shared; their
    expansion is counted, each time they are reached.
    """
    problems: dict[str, int] = {}
    done: dict[int, tuple[Any, int]] = {}  # id -> (replacement, expanded size), for containers
    keep: list[Any] = []  # the originals, so that ids stay unique while we walk
    active: set[int] = set()

    def too_large() -> ValueTooLarge:
        return ValueTooLarge(f"value expands to more than {max_nodes:,} nodes (shared references)")

    def visit(node: Any, depth: int) -> tuple[Any, int, list[Any] | None]:
        """(replacement, size, frame to descend into or None) of a node that is not a plain scalar."""
        if convert is not None:
            node = convert(node)
        if isinstance(node, _CONTAINERS):
            got = done.get(id(node))
            if got is not None:
                return got[0], got[1], None
            if id(node) in active:
                return node, 1, None  # a cycle: renderers show it as such
            if depth >= max_depth:
                what = f"nested deeper than {max_depth} levels"
                problems[what + ": cut"] = problems.get(what + ": cut", 0) + 1
                return placeholder(what), 1, None
            if isinstance(node, dict):
                items: list[Any] = [*node, *node.values()]  # keys, then values
                kind = 1
            elif isinstance(node, list):
                items, kind = node, 0
            elif isinstance(node, tuple):
                items, kind = list(node), 2
            else:
                items, kind = list(node), 3
            active.add(id(node))
            keep.append(node)
            # a frame: original, its children, next child, {index: replacement}, size so far, depth, kind
            return node, 0, [node, items, 0, None, 1, depth, kind]
        t = type(node)
        if t is str or t is bytes:
            return node, 1 + (len(node) >> 6), None
        new, p = check_scalar(node)
        if p:
            problems[p] = problems.get(p, 0) + 1
        return new, 1, None

    t = type(value)
    if t is str or t is bytes or value is None or t is bool:
        return value, []
    root, _size, frame = visit(value, 0)
    stack = [frame] if frame is not None else []
    while stack:
        f = stack[-1]
        node, items, i, changes, size, depth, kind = f
        n = len(items)
        sub = None
        while i < n:
            child = items[i]
            i += 1
            t = type(child)
            if t is str:
                size += 1 + (len(child) >> 6)
                continue
            if t is int:
                if -_SMALL < child < _SMALL:
                    size += 1
                    continue
            elif t is float:
                if child - child == 0.0:  # finite
                    size += 1
                    continue
            elif child is None or t in _PLAIN:
                size += 1
                continue
            rep, csize, sub = visit(child, depth + 1)
            if sub is not None:
                f[2], f[3], f[4] = i - 1, changes, size
                stack.append(sub)
                break
            if rep is not child:
                if changes is None:
                    changes = {}
                changes[i - 1] = rep
            size += csize
            if size > max_nodes:
                raise too_large()
        if sub is not None:
            continue
        if size > max_nodes:
            raise too_large()
        stack.pop()
        active.discard(id(node))
        result = node if changes is None else _rebuilt(node, items, changes, kind)
        done[id(node)] = (result, size)
        if stack:
            parent = stack[-1]
            j = parent[2]
            parent[2] = j + 1
            if result is not node:
                if parent[3] is None:
                    parent[3] = {}
                parent[3][j] = result
            parent[4] += size
        else:
            root = result
    found = [_counted(p, c) for p, c in list(problems.items())[:_MAX_PROBLEMS]]
    if len(problems) > _MAX_PROBLEMS:
        found.append(f"and {len(problems) - _MAX_PROBLEMS} more kinds of problem")
    return root, found


def _rebuilt(node: Any, items: list[Any], changes: dict[int, Any], kind: int) -> Any:
    """NODE with the changed members: in place for lists, dicts and sets, a new tuple or frozenset."""
    new_items = [changes.get(j, x) for j, x in enumerate(items)]
    if kind == 0:
        node[:] = new_items
        return node
    if kind == 1:
        half = len(new_items) // 2
        dict.clear(node)
        for key, value in zip(new_items[:half], new_items[half:], strict=True):
            dict.__setitem__(node, key if _hashable(key) else repr(key), value)
        return node
    if kind == 2:
        return tuple(new_items)
    members = [m if _hashable(m) else repr(m) for m in new_items]
    if isinstance(node, frozenset):
        return frozenset(members)
    node.clear()
    node.update(members)
    return node


def _counted(problem: str, count: int) -> str:
    return problem if count == 1 else f"{problem} ({count}×)"


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True
