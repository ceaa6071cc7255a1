"""kombu's SQS names and message envelope, both ways (pure: no client).

kombu sends a message as the base64 of its JSON envelope; a body that is not one is kept as its bytes."""

from __future__ import annotations

import base64
import binascii
import json
import re
import string
import uuid
from typing import Any

from taskctl.formats.message import RawMessage

#: kombu's CHARS_REPLACE_TABLE: '.' -> '-', punctuation other than '-' and '_' -> '_'
CHARS_REPLACE_TABLE = {ord(c): 0x5F for c in string.punctuation if c not in "-_."}
CHARS_REPLACE_TABLE[0x2E] = 0x2D
#: SQS returns, sends and deletes at most ten messages a request
SQS_BATCH = 10
#: a SendMessageBatch request may carry at most this many bytes of bodies (the classic SQS limit)
BATCH_BYTES = 256 * 1024
#: seconds a drain, move or requeue keeps received messages hidden before it deletes them
#: kombu's virtual-transport keys in ``properties`` that are envelope, not message
VIRTUAL_ENVELOPE = ("body_encoding", "delivery_tag", "delivery_info")
B64_RE = re.compile(rb"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")


def entity_name(name: str) -> str:
    """A queue name as kombu makes it legal for SQS (``my.queue`` -> ``my-queue``)."""
    if name.endswith(".fifo"):
        return name[: -len(".fifo")].translate(CHARS_REPLACE_TABLE) + ".fifo"
    return name.translate(CHARS_REPLACE_TABLE)


def _b64_or_raw(raw: bytes) -> bytes:
    """kombu's ``_optional_b64_decode``: the decoded bytes where RAW is canonical base64 of UTF-8 text."""
    candidate = raw.strip()
    if not B64_RE.fullmatch(candidate):
        return raw
    try:
        decoded = base64.b64decode(candidate, validate=True)
    except (binascii.Error, ValueError):
        return raw
    if base64.b64encode(decoded).rstrip(b"=") != candidate.rstrip(b"="):
        return raw
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    return decoded


def decode_envelope(body: str, receive_count: int = 1) -> RawMessage:
    """An SQS message body (as kombu's SQS transport writes it) as the message Celery published.

    Untrusted: anything that is not kombu's envelope is returned as the body itself, never an error.
    """
    text_bytes = _b64_or_raw(body.encode("utf-8", "surrogateescape"))
    redelivered = receive_count > 1
    try:
        from kombu.utils.json import loads

        payload = loads(text_bytes.decode("utf-8"))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, RecursionError, UnicodeError, OverflowError):
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("properties"), dict):
        return RawMessage(body=text_bytes, redelivered=redelivered)
    props = dict(payload["properties"])
    found = props.get("delivery_info")
    info: dict[str, Any] = found if isinstance(found, dict) else {}
    raw_body = payload.get("body")
    try:
        if isinstance(raw_body, str) and props.get("body_encoding") == "base64":
            data = base64.b64decode(raw_body)
        elif isinstance(raw_body, str):
            data = raw_body.encode("utf-8", "surrogateescape")
        elif isinstance(raw_body, bytes):
            data = raw_body
        else:
            data = b"" if raw_body is None else json.dumps(raw_body).encode()
    except (binascii.Error, ValueError, TypeError, RecursionError):
        return RawMessage(body=text_bytes, redelivered=redelivered)
    headers = payload.get("headers")
    ctype, cenc = payload.get("content-type"), payload.get("content-encoding")
    return RawMessage(
        body=data,
        content_type=ctype if isinstance(ctype, str) else None,
        content_encoding=cenc if isinstance(cenc, str) else None,
        headers=dict(headers) if isinstance(headers, dict) else {},
        properties={k: v for k, v in props.items() if k not in VIRTUAL_ENVELOPE},
        exchange=str(info.get("exchange") or ""),
        routing_key=str(info.get("routing_key") or ""),
        redelivered=redelivered,
    )


def encode_envelope(raw: RawMessage, exchange: str, routing_key: str, *, b64: bool = True) -> str:
    """RAW as the body kombu's SQS transport sends (``Channel._put``): its virtual JSON, base64 by default."""
    from kombu.utils.json import dumps

    props = {k: v for k, v in (raw.properties or {}).items() if k not in VIRTUAL_ENVELOPE}
    props.setdefault("priority", 0)
    props["body_encoding"] = "base64"
    props["delivery_tag"] = str(uuid.uuid4())
    props["delivery_info"] = {"exchange": exchange, "routing_key": routing_key}
    payload = {
        "body": base64.b64encode(raw.body).decode("ascii"),
        "content-encoding": raw.content_encoding,
        "content-type": raw.content_type,
        "headers": dict(raw.headers or {}),
        "properties": props,
    }
    text: str = dumps(payload)  # type: ignore[no-untyped-call]
    return base64.b64encode(text.encode("utf-8")).decode("ascii") if b64 else text
