"""What a broker message means to Celery.

Pure and without I/O (layer 0). A :class:`RawMessage` is what any kombu transport delivered: body bytes exactly
as published, content type and encoding, application headers, the other AMQP properties, and where it was
published (exchange, routing key). :func:`decode` reads it as

- a Celery task message, protocol 2 (celery-formats §5.1: ``task``/``id`` headers, body ``[args, kwargs, embed]``)
  or protocol 1 (§5.3: everything in a body dict);
- an RPC result message (§4.2: task id = ``correlation_id``, body = result meta);
- a remote-control request or reply (§6.2, §6.3);
- anything else as content type, size and the first bytes.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskctl.formats.message_body import BodyError, _line, decode_body_bounded, decompress, preview


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
