"""Broker messages as Celery writes them: decode what a queue holds, build task messages, republish rules.

Pure and without I/O (layer 0). A :class:`RawMessage` is what any kombu transport delivered: body bytes exactly
as published, content type and encoding, application headers, the other AMQP properties, and where it was
published (exchange, routing key). :func:`decode` reads it as

- a Celery task message, protocol 2 (celery-formats §5.1: ``task``/``id`` headers, body ``[args, kwargs, embed]``)
  or protocol 1 (§5.3: everything in a body dict);
- an RPC result message (§4.2: task id = ``correlation_id``, body = result meta);
- a remote-control request or reply (§6.2, §6.3);
- anything else as content type, size and the first bytes.

Pickle bodies are never unpickled: they go through :mod:`taskctl.formats.safepickle` (imports nothing, runs
nothing) when it is present, else they show as "pickled, N bytes". :func:`to_record`/:func:`from_record` are the
drain file format (one JSON object per line, body as base64, typed header values tagged), and
:func:`for_republish`/:func:`republish_problems` apply the §5.5 rules.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fnmatch
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from taskctl.formats.loaders import load_json, load_msgpack, load_yaml
from taskctl.formats.times import parse_iso

JSON = "application/json"
PICKLE = "application/x-python-serialize"
MSGPACK = "application/x-msgpack"
YAML = "application/x-yaml"
PREVIEW_BYTES = 64
#: Celery truncates argsrepr/kwargsrepr to this (``AMQP.argsrepr_maxsize``)
REPR_MAXSIZE = 1024
#: task messages at or above this size get a note: oversized messages are a common operational problem
LARGE_BODY = 256 * 1024


@dataclass(frozen=True)
class RawMessage:
    """One message as published: body bytes verbatim plus everything needed to publish it again."""

    body: bytes
    content_type: str | None = None
    content_encoding: str | None = None
    #: AMQP application headers (Celery's task headers)
    headers: dict[str, Any] = field(default_factory=dict)
    #: the other AMQP basic properties: delivery_mode, priority, correlation_id, reply_to, expiration, ...
    properties: dict[str, Any] = field(default_factory=dict)
    exchange: str = ""
    routing_key: str = ""
    redelivered: bool = False


@dataclass(frozen=True)
class DecodedMessage:
    """What a message means to Celery; ``kind`` says which fields apply."""

    #: task | result | control | control-reply | other
    kind: str
    size: int
    content_type: str | None
    protocol: int | None = None
    task_id: str | None = None
    task: str | None = None
    args: Any = None
    kwargs: Any = None
    argsrepr: str | None = None
    kwargsrepr: str | None = None
    eta: str | None = None
    expires: str | None = None
    retries: int | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    reply_to: str | None = None
    #: RPC results: the state (SUCCESS, FAILURE, ...), result value or exception dict, traceback
    state: str | None = None
    result: Any = None
    traceback: str | None = None
    date_done: str | None = None
    #: remote control: method name and arguments (requests), or the replying worker names
    method: str | None = None
    arguments: Any = None
    #: why the body could not be read (the message itself is kept as is)
    error: str | None = None
    #: first bytes of a body that is not a known Celery message, or could not be decoded
    preview: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields that apply to this kind (stable keys per kind, see docs/queue.md)."""
        out: dict[str, Any] = {"kind": self.kind, "task_id": self.task_id}
        if self.kind == "task":
            out.update(
                task=self.task,
                protocol=self.protocol,
                args=self.args,
                kwargs=self.kwargs,
                argsrepr=self.argsrepr,
                kwargsrepr=self.kwargsrepr,
                eta=self.eta,
                expires=self.expires,
                retries=self.retries,
                root_id=self.root_id,
                parent_id=self.parent_id,
                group=self.group,
                reply_to=self.reply_to,
            )
        elif self.kind == "result":
            out.update(state=self.state, result=self.result, traceback=self.traceback, date_done=self.date_done)
        elif self.kind in ("control", "control-reply"):
            out.update(method=self.method, arguments=self.arguments)
        out.update(content_type=self.content_type, size=self.size, error=self.error, preview=self.preview)
        return out

    @property
    def summary(self) -> str:
        """One short line for tables: args or result, as a person reads them."""
        if self.error:
            return f"undecodable: {self.error}"
        if self.kind == "task":
            a = self.argsrepr if self.argsrepr is not None else _short(self.args)
            k = self.kwargsrepr if self.kwargsrepr is not None else _short(self.kwargs)
            return f"args={a} kwargs={k}"
        if self.kind == "result":
            return _short(self.result)
        if self.kind in ("control", "control-reply"):
            return f"{self.method or ''} {_short(self.arguments)}".strip()
        return self.preview or ""


def _short(value: Any, limit: int = 120) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- bodies -------------------------------------------------------------------------------------------------


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


# -- decode -------------------------------------------------------------------------------------------------


def _str(value: Any, limit: int = 10_000) -> str | None:
    """A header or body field as text; never raises, never longer than LIMIT (header values are untrusted)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if len(value) <= limit else value[: limit - 3] + "..."
    if isinstance(value, int) and value.bit_length() > 1000:
        return f"<int of about {int(value.bit_length() * 0.30103) + 1} digits>"
    return _line(value, limit)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def decode(raw: RawMessage) -> DecodedMessage:
    """Read RAW as Celery does; never raises for bad input (errors land in ``error``, and so do the parts of
    the body replaced by placeholders to keep it bounded)."""
    try:
        d = _decode(raw)
    except Exception as exc:  # a last guard: one bad message never stops a command over many
        return DecodedMessage(
            kind="other",
            size=len(raw.body),
            content_type=_str(raw.content_type),
            error=f"message cannot be read: {type(exc).__name__}: {_line(exc)}",
            preview=preview(raw.body),
        )
    return d


def _decode(raw: RawMessage) -> DecodedMessage:
    headers = raw.headers or {}
    props = raw.properties or {}
    size = len(raw.body)
    base: dict[str, Any] = {"size": size, "content_type": raw.content_type}
    body: Any = None
    error: str | None = None
    problems: list[str] = []
    data = raw.body
    try:
        if headers.get("compression"):
            data = decompress(data, _line(headers["compression"], 100))
        body, problems = decode_body_bounded(data, raw.content_type, raw.content_encoding)
    except BodyError as exc:
        error = str(exc)
    problem = ("body values replaced: " + "; ".join(problems)) if problems else None

    # protocol 2: the task header is what makes a task message
    if "task" in headers:
        tid = _str(headers.get("id")) or _str(props.get("correlation_id"))
        fields: dict[str, Any] = {
            "protocol": 2,
            "task_id": tid,
            "task": _str(headers.get("task")),
            "argsrepr": _str(headers.get("argsrepr")),
            "kwargsrepr": _str(headers.get("kwargsrepr")),
            "eta": _str(headers.get("eta")),
            "expires": _str(headers.get("expires")),
            "retries": _int(headers.get("retries")),
            "root_id": _str(headers.get("root_id")),
            "parent_id": _str(headers.get("parent_id")),
            "group": _str(headers.get("group")),
            "reply_to": _str(props.get("reply_to")) or None,
        }
        if "id" not in headers:
            error = error or "task message without an 'id' header"
        if error is None:
            if isinstance(body, list | tuple) and len(body) == 3:
                fields["args"], fields["kwargs"] = body[0], body[1]
            else:
                error = "task body is not [args, kwargs, embed]"
        error = error or problem
        return DecodedMessage(kind="task", **base, **fields, error=error, preview=preview(raw.body) if error else None)

    if error is None and isinstance(body, Mapping):
        # protocol 1: everything in the body
        if "task" in body and "id" in body:
            return DecodedMessage(
                kind="task",
                **base,
                protocol=1,
                task_id=_str(body.get("id")),
                task=_str(body.get("task")),
                args=body.get("args"),
                kwargs=body.get("kwargs"),
                eta=_str(body.get("eta")),
                expires=_str(body.get("expires")),
                retries=_int(body.get("retries")),
                group=_str(body.get("taskset") or body.get("group")),
                reply_to=_str(props.get("reply_to")) or None,
                error=problem,
            )
        if "status" in body and ("result" in body or "task_id" in body):
            return DecodedMessage(
                kind="result",
                **base,
                task_id=_str(props.get("correlation_id")) or _str(body.get("task_id")),
                state=_str(body.get("status")),
                result=body.get("result"),
                traceback=_str(body.get("traceback")),
                date_done=_str(body.get("date_done")),
                error=problem,
            )
        if "method" in body and "arguments" in body:
            return DecodedMessage(
                kind="control", **base, method=_str(body["method"]), arguments=body["arguments"], error=problem
            )
        if "ticket" in headers:
            return DecodedMessage(kind="control-reply", **base, method="reply", arguments=dict(body), error=problem)
    if error is None and "ticket" in headers:
        return DecodedMessage(kind="control-reply", **base, method="reply", arguments=body, error=problem)
    return DecodedMessage(
        kind="other",
        **base,
        task_id=_str(props.get("correlation_id")) or _str(props.get("message_id")),
        error=error or problem,
        preview=preview(raw.body),
    )


def task_name(raw: RawMessage) -> str | None:
    """The task name without decoding a protocol-2 body (header), else from a protocol-1 body."""
    name = (raw.headers or {}).get("task")
    if name is not None:
        return str(name)
    d = decode(raw)
    return d.task if d.kind == "task" else None


def matches_task(raw: RawMessage, pattern: str | None) -> bool:
    """Whether the message's task name matches the glob (no glob: everything matches)."""
    if not pattern:
        return True
    name = task_name(raw)
    return name is not None and fnmatch.fnmatchcase(name, pattern)


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


# -- drain file records ----------------------------------------------------------------------------------------


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


# -- republish (celery-formats §5.5) ------------------------------------------------------------------------------


def for_republish(raw: RawMessage) -> RawMessage:
    """RAW as it must be published again: byte-exact, except the AMQP ``expiration``, which is dropped.

    ``expiration`` is a relative TTL in milliseconds that restarts at enqueue time; copying it (as
    ``celery.contrib.migrate.republish`` does, 1000x too long) is never right.
    """
    if "expiration" not in (raw.properties or {}):
        return raw
    props = {k: v for k, v in raw.properties.items() if k != "expiration"}
    return replace(raw, properties=props)


#: an ISO-8601 header value as an aware UTC datetime (:func:`taskctl.formats.times.parse_iso`)
parse_time = parse_iso


def republish_problems(raw: RawMessage, now: dt.datetime | None = None) -> list[str]:
    """What makes a republished task not run as hoped: a past ``expires`` (the worker revokes it on arrival).

    A past ``eta`` is reported too, as information: the task then runs at once.
    """
    now = now or dt.datetime.now(dt.UTC)
    d = decode(raw)
    if d.kind != "task":
        return []
    out = []
    exp = parse_time(d.expires)
    if exp is not None and exp <= now:
        out.append(f"expires {d.expires} is in the past: a worker will store it as REVOKED (expired)")
    eta = parse_time(d.eta)
    if eta is not None and eta <= now:
        out.append(f"eta {d.eta} is in the past: it runs at once")
    return out


def is_expired(raw: RawMessage, now: dt.datetime | None = None) -> bool:
    exp = parse_time(decode(raw).expires)
    return exp is not None and exp <= (now or dt.datetime.now(dt.UTC))


# -- build (AMQP.as_task_v2) ----------------------------------------------------------------------------------------


def saferepr(value: Any, maxsize: int = REPR_MAXSIZE) -> str:
    """``repr`` truncated as Celery's argsrepr is; plain values read the same as celery.utils.saferepr."""
    text = repr(value)
    return text if len(text) <= maxsize else text[: maxsize - 3] + "..."


def anon_nodename() -> str:
    """``gen<pid>@<hostname>``, what Celery puts in ``origin`` (celery.utils.nodenames.anon_nodename)."""
    return f"gen{os.getpid()}@{socket.gethostname()}"


def build_task_message(
    name: str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    task_id: str,
    queue: str = "celery",
    eta: str | None = None,
    expires: str | None = None,
    retries: int = 0,
    group_id: str | None = None,
    group_index: int | None = None,
    root_id: str | None = None,
    parent_id: str | None = None,
    shadow: str | None = None,
    reply_to: str | None = None,
    time_limit: float | None = None,
    soft_time_limit: float | None = None,
    ignore_result: bool = False,
    origin: str | None = None,
    argsrepr: str | None = None,
    kwargsrepr: str | None = None,
    callbacks: list[Any] | None = None,
    errbacks: list[Any] | None = None,
    chain: list[Any] | None = None,
    chord: Any = None,
    stamped_headers: list[str] | None = None,
    stamps: Mapping[str, Any] | None = None,
    replaced_task_nesting: int = 0,
    priority: int | None = None,
    delivery_mode: int = 2,
) -> RawMessage:
    """A protocol-2 task message exactly as ``celery.app.amqp.AMQP.as_task_v2`` builds it, JSON-serialized.

    Published to the default exchange with routing key QUEUE, as Celery does for direct-routed queues.
    """
    args = list(args or ())
    kwargs = dict(kwargs or {})
    headers: dict[str, Any] = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": shadow,
        "eta": eta,
        "expires": expires,
        "group": group_id,
        "group_index": group_index,
        "retries": retries,
        "timelimit": [time_limit, soft_time_limit],
        "root_id": root_id or task_id,
        "parent_id": parent_id,
        "argsrepr": argsrepr if argsrepr is not None else saferepr(tuple(args)),
        "kwargsrepr": kwargsrepr if kwargsrepr is not None else saferepr(kwargs),
        "origin": origin or anon_nodename(),
        "ignore_result": ignore_result,
        "replaced_task_nesting": replaced_task_nesting,
        "stamped_headers": stamped_headers,
        "stamps": dict(stamps or {}),
    }
    embed = {"callbacks": callbacks, "errbacks": errbacks, "chain": chain, "chord": chord}
    # kombu's json serializer: json.dumps defaults (", " and ": " separators, ensure_ascii)
    body = json.dumps([args, kwargs, embed]).encode("utf-8")
    props: dict[str, Any] = {
        "correlation_id": task_id,
        "reply_to": reply_to or "",
        "delivery_mode": delivery_mode,
        "priority": priority if priority is not None else 0,
    }
    return RawMessage(
        body=body,
        content_type=JSON,
        content_encoding="utf-8",
        headers=headers,
        properties=props,
        exchange="",
        routing_key=queue,
    )


# -- the drain line, fast -------------------------------------------------------------------------------------------


def _tag(value: Any) -> Any:
    """``json`` default hook: the same tags as :func:`encode_value`, for values JSON cannot hold."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    return repr(value)


_encode_line = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_tag).encode


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
