"""The JSON, msgpack and YAML loaders that results and messages share, each returning a bounded value and the
problems found (see :mod:`taskctl.formats.bounded`).

JSON needs no walk afterwards: it has no shared references, so hooks that run only where a number could be
hostile (NaN, Infinity, ``1e999``, a 5,000-digit int) are enough. msgpack and YAML values are walked by
:func:`~taskctl.formats.bounded.bound`; YAML is read with a ``yaml.SafeLoader`` that also refuses more than
:data:`MAX_YAML_ALIASES` aliases (an alias bomb is a few hundred bytes that expand to billions of nodes).
msgpack and yaml are imported inside the functions (optional extras).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any

from taskctl.formats.bounded import MAX_INT_BITS, bound, placeholder

__all__ = ["MAX_YAML_ALIASES", "load_json", "load_msgpack", "load_yaml"]

#: a YAML document with more aliases than this is refused
MAX_YAML_ALIASES = 10_000
#: ints of more digits than this become placeholders (about MAX_INT_BITS bits)
_MAX_INT_DIGITS = int(MAX_INT_BITS * 0.30103)
#: what makes a JSON number worth a closer look: a 3-digit exponent or a long run of digits
_RISKY_NUMBER = re.compile(r"[eE][+-]?\d{3}|\d{300}")


def load_json(text: str, *, object_hook: Callable[[dict[str, Any]], Any] | None = None) -> tuple[Any, list[str]]:
    """``json.loads`` whose numbers are all finite and showable. Raises ValueError (RecursionError past about
    a thousand levels of nesting: callers report it)."""
    problems: list[str] = []

    def constant(name: str) -> Any:
        problems.append(f"float {name} replaced (JSON cannot hold it)")
        return placeholder(f"float {name}")

    kw: dict[str, Any] = {"parse_constant": constant}
    if object_hook is not None:
        kw["object_hook"] = object_hook
    if _RISKY_NUMBER.search(text):

        def parse_float(s: str) -> Any:
            f = float(s)
            if math.isfinite(f):
                return f
            problems.append(f"number {s[:20]} replaced (out of float range)")
            return placeholder(f"number {s[:20]}")

        def parse_int(s: str) -> Any:
            if len(s) <= _MAX_INT_DIGITS:
                return int(s)
            problems.append(f"int of {len(s)} digits replaced")
            return placeholder(f"int of {len(s)} digits")

        kw.update(parse_float=parse_float, parse_int=parse_int)
    value = json.loads(text, **kw)
    return value, _dedupe(problems)


def load_msgpack(data: bytes) -> tuple[Any, list[str]]:
    """msgpack as Celery writes it (str keys, bin as bytes), bounded. Raises ValueError when not installed."""
    try:
        import msgpack
    except ImportError:
        raise ValueError("msgpack value: install 'taskctl[msgpack]' to read it") from None
    return bound(msgpack.unpackb(data, raw=False, strict_map_key=False))


def load_yaml(text: str) -> tuple[Any, list[str]]:
    """YAML through ``yaml.SafeLoader`` with a cap on aliases, bounded. Raises ValueError when not installed."""
    try:
        import yaml  # noqa: F401  (the loader class is built from it)
    except ImportError:
        raise ValueError("yaml value: install 'taskctl[yaml]' to read it") from None
    loader = _yaml_loader()(text)
    try:
        value = loader.get_single_data()
    finally:
        loader.dispose()
    value, problems = bound(value)
    return value, _dedupe(loader.problems) + problems


@cache
def _yaml_loader() -> Any:
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        """SafeLoader that counts aliases and turns ints too long to build into placeholders."""

        aliases = 0

        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self.problems: list[str] = []

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_YAML_ALIASES:
                    raise ValueError(f"more than {MAX_YAML_ALIASES:,} YAML aliases (an alias bomb?)")
            return super().compose_node(parent, index)

        def construct_yaml_int(self, node: Any) -> Any:
            try:
                return super().construct_yaml_int(node)
            except ValueError:
                what = f"int of {len(str(node.value))} characters"
                self.problems.append(what + " replaced")
                return placeholder(what)

    BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)
    return BoundedLoader


def _dedupe(problems: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    for p in problems:
        seen[p] = seen.get(p, 0) + 1
    out = [p if n == 1 else f"{p} ({n}×)" for p, n in list(seen.items())[:5]]
    return out + ([f"and {len(seen) - 5} more kinds of problem"] if len(seen) > 5 else [])
