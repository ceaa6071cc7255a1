"""Result meta exactly as Celery 5.0–5.7 stores it: keys, serializers, 5.7 compression, exceptions, children.

Every name callers use, in one place. The code lives in modules named for what they hold:

- :mod:`~taskctl.formats.result_keys`: key prefixes, ``global_keyprefix``, DynamoDB ids;
- :mod:`~taskctl.formats.result_payload`: decoding a stored value (compression, serializers): never raises;
- :mod:`~taskctl.formats.result_meta`: task and group meta, exceptions, progress, JSON-ready copies;
- :mod:`~taskctl.formats.result_encode`: what taskctl writes (revoked meta).
"""

from __future__ import annotations

from taskctl.formats.compression import MAX_DECOMPRESSED
from taskctl.formats.result_encode import _CeleryException, encode_payload, now_iso, revoked_meta
from taskctl.formats.result_keys import (
    CHORD_PREFIX,
    GROUP_PREFIX,
    KIND_PREFIXES,
    TASK_PREFIX,
    KeyScheme,
    ParsedKey,
    dynamodb_id,
    from_dynamodb_id,
    global_prefixes,
)
from taskctl.formats.result_meta import (
    EXCEPTION_STATES,
    READY_STATES,
    ExceptionInfo,
    TaskMeta,
    exception_info,
    is_pickled_placeholder,
    parse_date_done,
    parse_group_meta,
    parse_task_meta,
    to_plain,
)
from taskctl.formats.result_payload import (
    COMPRESSED_MAGIC,
    COMPRESSIONS,
    SERIALIZER_ALIASES,
    SERIALIZERS,
    Decoded,
    ResultFormatError,
    decode_meta,
    decode_payload,
    decompress,
    head_of,
    normalize_serializer,
    sniff,
)
from taskctl.formats.result_refs import GroupRef, TaskRef, flatten_ids, parse_result_tuple

__all__ = [
    "CHORD_PREFIX",
    "COMPRESSED_MAGIC",
    "COMPRESSIONS",
    "EXCEPTION_STATES",
    "GROUP_PREFIX",
    "KIND_PREFIXES",
    "MAX_DECOMPRESSED",
    "READY_STATES",
    "SERIALIZERS",
    "SERIALIZER_ALIASES",
    "TASK_PREFIX",
    "Decoded",
    "ExceptionInfo",
    "GroupRef",
    "KeyScheme",
    "ParsedKey",
    "ResultFormatError",
    "TaskMeta",
    "TaskRef",
    "_CeleryException",
    "decode_meta",
    "decode_payload",
    "decompress",
    "dynamodb_id",
    "encode_payload",
    "exception_info",
    "flatten_ids",
    "from_dynamodb_id",
    "global_prefixes",
    "head_of",
    "is_pickled_placeholder",
    "normalize_serializer",
    "now_iso",
    "parse_date_done",
    "parse_group_meta",
    "parse_result_tuple",
    "parse_task_meta",
    "revoked_meta",
    "sniff",
    "to_plain",
]
