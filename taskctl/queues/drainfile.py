"""Drain files and lines: appended, fsynced on commit; a line for any message, even one that cannot be decoded.

A drain line holds the decoded fields and the complete original message (body base64, headers, properties),
so `queue publish` can put it back byte-exact. A hostile message (100,000 nested JSON levels, undecodable bytes,
headers too deep to encode) still gets a line: its body as raw bytes and the problem in ``error``.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from taskctl.errors import UsageError
from taskctl.formats.message import RawMessage, encode_value, matches_task

#: what decoding a hostile message can raise (100,000 nested JSON levels, bad bytes, huge numbers)
POISON = (RecursionError, ValueError, TypeError, UnicodeError, OverflowError, KeyError)


class LineFile:
    """Drain lines appended to a file (never truncated), fsynced on commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.fh: IO[bytes] = path.open("ab")
        except OSError as exc:
            raise UsageError(f"cannot open {path} for appending: {exc.strerror}") from None
        # a killed earlier run may have left half a line: start on a fresh line (publish skips the fragment)
        if self.fh.tell() > 0:
            with path.open("rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    self.fh.write(b"\n")

    def write(self, record: dict[str, Any]) -> None:
        self.fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")

    def write_line(self, line: bytes) -> None:
        self.fh.write(line)

    def commit(self) -> None:
        """Flush and fsync; an OSError (a full disk) propagates, so nothing more is acked."""
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        try:
            self.commit()
        except OSError:
            pass  # already reported by the transfer; the lines not synced were not acked
        finally:
            try:
                self.fh.close()
            except OSError:
                pass


def raw_record(raw: RawMessage, queue: str, problem: str) -> dict[str, Any]:
    """A drain line for a message that cannot be decoded: the body as base64 bytes, nothing interpreted."""
    try:
        headers = encode_value(raw.headers or {})
        props = encode_value(raw.properties or {})
        json.dumps([headers, props])
    except POISON:
        headers, props = {}, {}
        problem += "; headers not kept (too deep to encode)"
    return {
        "queue": queue,
        "kind": "other",
        "task_id": None,
        "task": None,
        "state": None,
        "size": len(raw.body),
        "error": problem,
        "message": {
            "exchange": raw.exchange,
            "routing_key": raw.routing_key,
            "redelivered": raw.redelivered,
            "content_type": raw.content_type,
            "content_encoding": raw.content_encoding,
            "headers": headers,
            "properties": props,
            "body_encoding": "base64",
            "body": base64.b64encode(raw.body).decode("ascii"),
        },
    }


def problem_of(exc: BaseException) -> str:
    return f"undecodable ({type(exc).__name__}): kept as raw bytes"


def safe_select(task: str | None) -> Callable[[RawMessage], bool] | None:
    """The --task filter; a message whose name cannot be read does not match (it stays in the queue)."""
    if not task:
        return None

    def select(raw: RawMessage) -> bool:
        try:
            return matches_task(raw, task)
        except POISON:
            return False

    return select


def json_line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
