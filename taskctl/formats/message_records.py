"""The drain file: one JSON line per message with the complete original (body as base64, typed header values
tagged), read back byte-exact; and what identifies a message for de-duplication.

Pure and without I/O (layer 0).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from taskctl.formats.message_body import JSON
from taskctl.formats.message_decode import DecodedMessage, RawMessage, _str, decode


def message_key(raw: RawMessage) -> str:
    """What identifies a message for de-duplication: task id, else message id, else a digest of its bytes."""
    h = raw.headers or {}
    p = raw.properties or {}
    for value in (h.get("id"), p.get("message_id"), p.get("correlation_id")):
        if value:
            return f"id:{value}"
    if raw.content_type in (JSON, None):
        try:
            body = json.loads(raw.body)
            if isinstance(body, dict) and body.get("id"):
                return f"id:{body['id']}"
        except (ValueError, UnicodeDecodeError):
            pass
    digest = hashlib.sha256()
    digest.update(raw.body)
    digest.update(json.dumps(encode_value(raw.headers), sort_keys=True).encode())
    return "sha256:" + digest.hexdigest()


_PLAIN = frozenset({str, int, float, bool, type(None)})


def encode_value(value: Any) -> Any:
    """AMQP table values as JSON, tagging what JSON cannot hold so :func:`decode_value` restores the type."""
    t = type(value)
    if t in _PLAIN:
        return value
    if t is dict:
        return {
            k if type(k) is str else str(k): (v if type(v) in _PLAIN else encode_value(v)) for k, v in value.items()
        }
    if t is list:
        return [v if type(v) in _PLAIN else encode_value(v) for v in value]
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, Mapping):
        return {str(k): encode_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    return repr(value)


def decode_value(value: Any) -> Any:
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((k, v),) = value.items()
            if k == "$bytes" and isinstance(v, str):
                return base64.b64decode(v)
            if k == "$datetime" and isinstance(v, str):
                return dt.datetime.fromisoformat(v)
            if k == "$decimal" and isinstance(v, str):
                return Decimal(v)
        return {k: decode_value(v) for k, v in value.items()}
    return value


def message_json(raw: RawMessage) -> dict[str, Any]:
    """The complete original message as JSON: enough to publish it again byte-exact."""
    return {
        "exchange": raw.exchange,
        "routing_key": raw.routing_key,
        "redelivered": raw.redelivered,
        "content_type": raw.content_type,
        "content_encoding": raw.content_encoding,
        "headers": encode_value(raw.headers or {}),
        "properties": encode_value(raw.properties or {}),
        "body_encoding": "base64",
        "body": base64.b64encode(raw.body).decode("ascii"),
    }


def to_record(raw: RawMessage, *, queue: str, decoded: DecodedMessage | None = None) -> dict[str, Any]:
    """One drain line: the decoded fields, then the complete original message under ``message``."""
    d = decoded or decode(raw)
    return {"queue": queue, **d.to_json(), "message": message_json(raw)}


def from_record(record: Mapping[str, Any]) -> RawMessage:
    """The message of a drain line (or of a bare ``message`` object). Raises ValueError on a bad record."""
    m = record.get("message", record)
    if not isinstance(m, Mapping) or "body" not in m:
        raise ValueError("no 'message' with a 'body'")
    enc = m.get("body_encoding", "base64")
    try:
        body = base64.b64decode(m["body"], validate=True) if enc == "base64" else str(m["body"]).encode("utf-8")
    except (binascii.Error, TypeError) as exc:
        raise ValueError(f"body is not base64: {exc}") from None
    headers = decode_value(m.get("headers") or {})
    props = decode_value(m.get("properties") or {})
    if not isinstance(headers, dict) or not isinstance(props, dict):
        raise ValueError("headers and properties must be objects")
    return RawMessage(
        body=body,
        content_type=m.get("content_type"),
        content_encoding=m.get("content_encoding"),
        headers=headers,
        properties=props,
        exchange=str(m.get("exchange") or ""),
        routing_key=str(m.get("routing_key") or ""),
        redelivered=bool(m.get("redelivered", False)),
    )


def _tag(value: Any) -> Any:
    """``json`` default hook: the same tags as :func:`encode_value`, for values JSON cannot hold."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    return repr(value)


#: a drain line's encoder; no cycle check: a record is built from what a transport decoded off the wire, which
#: cannot be cyclic (the check is a dict insert per container and made lines 60% slower)
_encode_line = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_tag, check_circular=False).encode


def drain_record(raw: RawMessage, queue: str, decoded: DecodedMessage | None = None) -> dict[str, Any]:
    """A drain line: what identifies the message (kind, task id, task name, state, size, decode error), then
    the complete original message under ``message``. Arguments and everything else are in the message."""
    d = decoded or decode(raw)
    return {
        "queue": queue,
        "kind": d.kind,
        "task_id": d.task_id,
        "task": d.task,
        "state": d.state,
        "size": d.size,
        "error": d.error,
        "message": message_json(raw),
    }


def _task_record(raw: RawMessage, queue: str) -> dict[str, Any]:
    """:func:`drain_record` of a protocol-2 task message, from its headers alone (the body is not decoded)."""
    h = raw.headers
    return {
        "queue": queue,
        "kind": "task",
        "task_id": _str(h["id"]),
        "task": _str(h["task"]),
        "state": None,
        "size": len(raw.body),
        "error": None,
        "message": {
            "exchange": raw.exchange,
            "routing_key": raw.routing_key,
            "redelivered": raw.redelivered,
            "content_type": raw.content_type,
            "content_encoding": raw.content_encoding,
            "headers": h,
            "properties": raw.properties,
            "body_encoding": "base64",
            "body": base64.b64encode(raw.body).decode("ascii"),
        },
    }


class LineEncoder:
    """Drain lines (:func:`drain_record` as one JSON line) for one queue, with the constant parts encoded once.

    Drain writes one per message, so the common case, a protocol-2 task message whose headers say all the line
    needs, is built without decoding the body, from pieces: what every message of the queue shares is encoded
    once, the ids, headers, properties and body per message, with the JSON settings and value tags of
    :func:`encode_value` (one public ``json.JSONEncoder``). Other messages get :func:`drain_record`.
    """

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self._json = _encode_line
        self._head = '{"queue":' + self._json(queue) + ',"kind":"task","task_id":'
        self._middles: dict[tuple[str, str, bool, str | None, str | None], str] = {}

    def _middle(self, key: tuple[str, str, bool, str | None, str | None]) -> str:
        ex, rk, redelivered, ctype, cenc = (self._json(v) for v in key)
        middle = (
            f',"error":null,"message":{{"exchange":{ex},"routing_key":{rk},"redelivered":{redelivered},'
            f'"content_type":{ctype},"content_encoding":{cenc},'
        )
        if len(self._middles) < 64:
            self._middles[key] = middle
        return middle

    def line(self, raw: RawMessage) -> bytes:
        h = raw.headers
        if "task" not in h or "id" not in h:
            return (_encode_line(drain_record(raw, self.queue)) + "\n").encode("utf-8")
        encode = self._json
        key = (raw.exchange, raw.routing_key, raw.redelivered, raw.content_type, raw.content_encoding)
        middle = self._middles.get(key) or self._middle(key)
        task_id, task = _str(h["id"]), _str(h["task"])
        body = raw.body
        return "".join(
            (
                self._head,
                "null" if task_id is None else encode(task_id),
                ',"task":',
                "null" if task is None else encode(task),
                ',"state":null,"size":',
                str(len(body)),
                middle,
                # one encoder call for both (each call sets up the C encoder): '"headers":{...},"properties":{...}'
                encode({"headers": h, "properties": raw.properties})[1:-1],
                ',"body_encoding":"base64","body":"',
                binascii.b2a_base64(body, newline=False).decode("ascii"),
                '"}}\n',
            )
        ).encode("utf-8")


def drain_line(raw: RawMessage, queue: str) -> bytes:
    """One drain line (newline included); a drain of many messages keeps one :class:`LineEncoder`."""
    return LineEncoder(queue).line(raw)
