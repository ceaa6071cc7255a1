"""Message bodies as kombu serialized them: content types, the ``compression`` header, kombu's JSON wrappers.

Pure and without I/O (layer 0). Pickle bodies are never unpickled: they go through
:mod:`taskctl.formats.safepickle` (imports nothing, runs nothing). Every value comes back bounded (see
:mod:`taskctl.formats.bounded`); what cannot be read is a :class:`BodyError` with a one-line reason.
"""

from __future__ import annotations

import uuid
from typing import Any

from taskctl.formats.loaders import load_json, load_msgpack, load_yaml

JSON = "application/json"
PICKLE = "application/x-python-serialize"
MSGPACK = "application/x-msgpack"
YAML = "application/x-yaml"
PREVIEW_BYTES = 64
#: task messages at or above this size get a note: oversized messages are a common operational problem
LARGE_BODY = 256 * 1024


class BodyError(ValueError):
    """The body cannot be decoded; the message is kept raw."""


def preview(body: bytes, n: int = PREVIEW_BYTES) -> str:
    """The first bytes, printable: text as text, anything else escaped."""
    head = body[:n]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = repr(head)[2:-1]
    return text + ("..." if len(body) > n else "")


def decompress(body: bytes, compression: str) -> bytes:
    """Undo kombu's ``compression`` header (task_compression), capped (:mod:`taskctl.formats.compression`)."""
    from taskctl.formats.compression import DecompressionError, codec_of
    from taskctl.formats.compression import decompress as guarded

    if codec_of(compression) is None:
        raise BodyError(f"unknown compression {compression!r}")
    try:
        return guarded(body, compression)
    except DecompressionError as exc:
        raise BodyError(f"cannot decompress {compression} body: {exc}") from None


def _unwrap_kombu_json(obj: dict[str, Any]) -> Any:
    """kombu's ``{"__type__", "__value__"}`` wrappers (celery-formats §2.4), shown as their plain values."""
    if set(obj) == {"__type__", "__value__"}:
        t, v = obj["__type__"], obj["__value__"]
        if t == "uuid" and isinstance(v, dict):
            return str(uuid.UUID(**v)) if "hex" in v else v
        if t == "base64" and isinstance(v, str):
            return {"base64": v}
        return v
    return obj


def decode_body(body: bytes, content_type: str | None, content_encoding: str | None = None) -> Any:
    """Deserialize BODY by its content type; pickle only through the safe reader. Raises BodyError."""
    return decode_body_bounded(body, content_type, content_encoding)[0]


def decode_body_bounded(
    body: bytes, content_type: str | None, content_encoding: str | None = None
) -> tuple[Any, list[str]]:
    """:func:`decode_body` and what was replaced by placeholders to keep the value bounded. Raises BodyError."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in ("application/json", "json", ""):
        if not ctype and body[:1] not in (b"{", b"["):
            raise BodyError("no content type")
        try:
            return load_json(body.decode(_codec(content_encoding)), object_hook=_unwrap_kombu_json)
        except RecursionError:
            raise BodyError("body is not valid JSON (nested too deeply)") from None
        except (UnicodeDecodeError, LookupError, ValueError) as exc:
            raise BodyError(f"body is not valid JSON ({exc.__class__.__name__}: {_line(exc)})") from None
    if ctype == PICKLE:
        from taskctl.formats.safepickle import safe_load_bounded  # runs nothing: pickle is never unpickled here

        try:
            return safe_load_bounded(body)
        except Exception as exc:
            raise BodyError(f"pickled, {len(body)} bytes, not readable safely: {_line(exc)}") from None
    if ctype == MSGPACK:
        try:
            import msgpack  # noqa: F401  (only to say what is missing)
        except ImportError:
            raise BodyError(f"msgpack, {len(body)} bytes (install taskctl[msgpack] to decode)") from None
        try:
            return load_msgpack(body)
        except Exception as exc:
            raise BodyError(f"body is not valid msgpack: {_line(exc)}") from None
    if ctype == YAML:
        try:
            import yaml  # noqa: F401  (only to say what is missing)
        except ImportError:
            raise BodyError(f"yaml, {len(body)} bytes (install taskctl[yaml] to decode)") from None
        try:
            return load_yaml(body.decode(_codec(content_encoding)))
        except Exception as exc:
            raise BodyError(f"body is not valid YAML: {_line(exc)}") from None
    if ctype.startswith("text/"):
        try:
            return body.decode(_codec(content_encoding)), []
        except (UnicodeDecodeError, LookupError) as exc:
            raise BodyError(f"text body not decodable: {_line(exc)}") from None
    raise BodyError(f"unknown content type {_line(content_type)!r}")


def _line(value: Any, limit: int = 80) -> str:
    """One short line of an error or a value for a message (never raises)."""
    try:
        text = " ".join(str(value).split())
    except Exception:
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _codec(encoding: str | None) -> str:
    if not encoding or encoding in ("binary", "utf-8", "utf8"):
        return "utf-8"
    return encoding
