"""Result meta as taskctl writes it (a revoke): Celery's serializers and 5.7 compression, exceptions pickled by
name without importing their modules.

Pure: no I/O, stdlib only (msgpack and yaml are imported inside the functions that need them).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import pickle
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from taskctl.formats.compression import compress
from taskctl.formats.result_meta import TaskMeta
from taskctl.formats.result_payload import COMPRESSED_MAGIC, COMPRESSIONS, ResultFormatError, normalize_serializer
from taskctl.formats.result_refs import as_tuple


class _CeleryException:
    """An exception taskctl writes into pickled meta by name, without importing its module."""

    def __init__(self, module: str, name: str, args: tuple[Any, ...]) -> None:
        self.module, self.name, self.args = module, name, args


class _GlobalName:
    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # save_reduce insists on a callable; never called
        raise TypeError("a name, not a function")


_PurePickler: Any = pickle._Pickler


class _Pickler(_PurePickler):  # type: ignore[misc]
    """The pure-Python pickler, writing exception classes by name (no import of celery needed)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _CeleryException):
            return (_GlobalName(obj.module, obj.name), obj.args)
        if isinstance(obj, _GlobalName):
            return obj.name
        return NotImplemented

    def save_global(self, obj: Any, name: Any = None) -> None:
        if isinstance(obj, _GlobalName):
            self.write(pickle.GLOBAL + obj.module.encode("utf-8") + b"\n" + obj.name.encode("utf-8") + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _kombu_json_default(o: Any) -> Any:
    if isinstance(o, bytes):
        try:
            return {"__type__": "bytes", "__value__": o.decode("utf-8")}
        except UnicodeDecodeError:
            return {"__type__": "base64", "__value__": base64.b64encode(o).decode("ascii")}
    if isinstance(o, dt.datetime):
        return {"__type__": "datetime", "__value__": o.isoformat()}
    if isinstance(o, dt.date):
        return {"__type__": "date", "__value__": o.isoformat()}
    if isinstance(o, dt.time):
        return {"__type__": "time", "__value__": o.isoformat()}
    if isinstance(o, Decimal):
        return {"__type__": "decimal", "__value__": str(o)}
    if isinstance(o, uuid.UUID):
        return {"__type__": "uuid", "__value__": {"hex": o.hex}}
    raise ResultFormatError(f"cannot store a {type(o).__name__} as json")


def _for_serializer(value: Any, serializer: str) -> Any:
    """Exception placeholders become Celery's exc dict for every serializer but pickle."""
    if isinstance(value, _CeleryException):
        if serializer == "pickle":
            return value
        return {"exc_type": value.name, "exc_message": list(value.args), "exc_module": value.module}
    if isinstance(value, dict):
        return {k: _for_serializer(v, serializer) for k, v in value.items()}
    return value


def encode_payload(meta: Mapping[str, Any], serializer: str = "json", compression: str | None = None) -> bytes:
    """Serialize META as Celery's backend would (and compress it the 5.7 way when asked)."""
    s = normalize_serializer(serializer) or "json"
    value = _for_serializer(dict(meta), s)
    if s == "json":
        data = json.dumps(value, default=_kombu_json_default).encode("utf-8")
    elif s == "msgpack":
        import msgpack

        data = bytes(msgpack.packb(value, use_bin_type=True))
    elif s == "yaml":
        import yaml

        data = yaml.safe_dump(value).encode("utf-8")
    else:
        import io

        buf = io.BytesIO()
        _Pickler(buf, protocol=4).dump(value)
        data = buf.getvalue()
    if compression:
        ctype = COMPRESSIONS.get(compression.lower(), compression)
        if ctype not in ("application/x-gzip", "application/x-bz2", "application/x-lzma"):
            raise ResultFormatError(f"taskctl cannot write {compression!r} compression (use gzip, bzip2 or lzma)")
        body = compress(data, ctype)
        data = COMPRESSED_MAGIC + ctype.encode("ascii") + b"\x00" + body
    return data


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def revoked_meta(
    task_id: str,
    reason: str = "revoked",
    *,
    previous: TaskMeta | None = None,
    date_done: str | None = None,
) -> dict[str, Any]:
    """Meta for REVOKED as a worker writes it (``TaskRevokedError(reason)``), keeping what was known of the task.

    Key order as Celery writes it; pass the result to :func:`encode_payload`."""
    meta: dict[str, Any] = {
        "status": "REVOKED",
        "result": _CeleryException("celery.exceptions", "TaskRevokedError", (reason,)),
        "traceback": None,
        "children": [] if previous is None else [as_tuple(c) for c in previous.children],
        "date_done": date_done or now_iso(),
    }
    if previous is not None:
        if previous.group_id:
            meta["group_id"] = previous.group_id
        if previous.parent_id:
            meta["parent_id"] = previous.parent_id
        if previous.name is not None:
            meta.update(
                name=previous.name,
                args=previous.args,
                kwargs=previous.kwargs,
                worker=previous.worker,
                retries=previous.retries,
                queue=previous.queue,
            )
    meta["task_id"] = task_id
    return meta
