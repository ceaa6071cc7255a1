"""The one ISO-8601 time parser for what Celery, kombu and RabbitMQ write (``date_done``, ``eta``/``expires``
headers, the management API's ``idle_since``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

__all__ = ["parse_iso"]


def parse_iso(value: Any) -> dt.datetime | None:
    """VALUE as an aware datetime in UTC; None when absent or unreadable. Never raises.

    Accepts ISO-8601 text with ``T`` or a space between date and time and ``Z`` or an offset (naive means UTC,
    as Celery up to 5.3 wrote ``date_done``), ASCII bytes of the same, or a datetime."""
    if isinstance(value, dt.datetime):
        t = value
    else:
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("ascii", "replace")
        if not isinstance(value, str) or not value or len(value) > 64:
            return None
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            t = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
    if t.tzinfo is None or t.utcoffset() is None:
        return t.replace(tzinfo=dt.UTC)
    try:
        return t.astimezone(dt.UTC)
    except (OverflowError, ValueError):  # year 1 with a positive offset, year 9999 with a negative one
        return None
