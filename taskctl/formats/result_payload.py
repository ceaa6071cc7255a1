"""Stored values read as Celery's backends wrote them: 5.7 compression, the four serializers (sniffed when the
configured one fails), kombu's JSON type wrappers.

Pure: no I/O, stdlib only (msgpack and yaml are imported inside the functions that need them). Decoding never
raises: a value that cannot be decoded comes back as :class:`Decoded` with ``error`` set, its size and first
bytes, so a caller can report it and carry on; parts replaced to keep a value bounded are named in ``problem``.
Pickle is read with :mod:`taskctl.formats.safepickle` (imports nothing, runs nothing) unless the caller passes
``unsafe_pickle=True``.
"""

from __future__ import annotations

import base64
import datetime as dt
import pickle
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from taskctl.formats.bounded import ValueTooLarge, bound
from taskctl.formats.compression import CELERY_COMPRESSED_MAGIC, unwrap_celery
from taskctl.formats.loaders import load_json, load_msgpack, load_yaml
from taskctl.formats.safepickle import looks_like_pickle, safe_load_bounded

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


def decode_meta(raw: bytes, serializer: str | None = None, *, unsafe_pickle: bool = False) -> dict[str, Any]:
    """Stored meta as a plain dict; an OperationError (exit 1) names why it cannot be read."""
    from taskctl.errors import OperationError

    dec = decode_payload(raw, serializer, unsafe_pickle=unsafe_pickle)
    if not dec.ok:
        raise OperationError(f"stored result cannot be decoded: {dec.error} ({dec.size} bytes: {dec.head})")
    if not isinstance(dec.value, Mapping):
        raise OperationError(f"stored value is not result meta ({dec.size} bytes: {dec.head})")
    return dict(dec.value)
