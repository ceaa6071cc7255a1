"""Durations and sizes as the CLI spells them: 90, 90s, 5m, 2h, 7d (and 1.5h); 400000, 100KB, 1MiB, 1.5M."""

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


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "k": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gib": 1024**3,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str | int, *, option: str = "size") -> int:
    """Bytes in TEXT: KB/MB/GB are powers of 1000, K/KiB, M/MiB, G/GiB powers of 1024 (as du and ls -h)."""
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(text)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise UsageError(f"bad {option} {text!r}", hint="use bytes or a unit: 400000, 100KB, 390KiB, 1MiB")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def format_size(n: int) -> str:
    """N bytes for a person: 950 B, 350.0 KiB, 128.0 MiB (powers of 1024, as parse_size reads K, M, G)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable
