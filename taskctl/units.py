"""Durations as the CLI spells them: 90, 90s, 5m, 2h, 7d (and 1.5h)."""

from __future__ import annotations

import re

from taskctl.errors import UsageError

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)


def parse_duration(text: str | float | int, *, option: str = "duration") -> float:
    """Seconds in TEXT; a usage error (exit 2) names the option when it cannot be read."""
    if isinstance(text, int | float):
        return float(text)
    m = _RE.match(text)
    if not m:
        raise UsageError(f"bad {option} {text!r}", hint="use seconds or a unit: 90, 90s, 5m, 2h, 7d")
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


def format_duration(seconds: float) -> str:
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"
