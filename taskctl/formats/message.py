"""Broker messages as Celery writes them: decode what a queue holds, build task messages, republish rules.

Every name callers use, in one place. The code lives in modules named for what they hold:

- :mod:`~taskctl.formats.message_body`: bodies by content type and ``compression`` header (bounded, pickle safe);
- :mod:`~taskctl.formats.message_decode`: :class:`RawMessage` and what it means to Celery (:func:`decode`);
- :mod:`~taskctl.formats.message_records`: the drain file (:func:`to_record`/:func:`from_record`, drain lines);
- :mod:`~taskctl.formats.message_build`: task messages as ``AMQP.as_task_v2`` builds them, the §5.5 republish rules.
"""

from __future__ import annotations

from taskctl.formats.message_body import (
    JSON,
    LARGE_BODY,
    MSGPACK,
    PICKLE,
    PREVIEW_BYTES,
    YAML,
    BodyError,
    decode_body,
    decode_body_bounded,
    decompress,
    preview,
)
from taskctl.formats.message_build import (
    REPR_MAXSIZE,
    anon_nodename,
    build_task_message,
    for_republish,
    is_expired,
    parse_time,
    republish_problems,
    saferepr,
)
from taskctl.formats.message_decode import DecodedMessage, RawMessage, decode, matches_task, task_name
from taskctl.formats.message_records import (
    LineEncoder,
    _tag,
    _task_record,
    decode_value,
    drain_line,
    drain_record,
    encode_value,
    from_record,
    message_json,
    message_key,
    to_record,
)

__all__ = [
    "JSON",
    "LARGE_BODY",
    "MSGPACK",
    "PICKLE",
    "PREVIEW_BYTES",
    "REPR_MAXSIZE",
    "YAML",
    "BodyError",
    "DecodedMessage",
    "LineEncoder",
    "RawMessage",
    "_tag",
    "_task_record",
    "anon_nodename",
    "build_task_message",
    "decode",
    "decode_body",
    "decode_body_bounded",
    "decode_value",
    "decompress",
    "drain_line",
    "drain_record",
    "encode_value",
    "for_republish",
    "from_record",
    "is_expired",
    "matches_task",
    "message_json",
    "message_key",
    "parse_time",
    "preview",
    "republish_problems",
    "saferepr",
    "task_name",
    "to_record",
]
