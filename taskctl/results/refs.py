"""Task meta with its ``children`` read by the one result-tuple reader (``formats.result_refs``, no recursion)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskctl.formats.result import TaskMeta, parse_task_meta
from taskctl.formats.result_refs import Ref, parse_ref, parse_refs, ref_ids

__all__ = ["Ref", "parse_ref", "parse_refs", "ref_ids", "task_meta"]


def task_meta(value: Any, task_id: str) -> TaskMeta | None:
    """``formats.result.parse_task_meta``; kept as the results package's one entry to it."""
    if not isinstance(value, Mapping) or "status" not in value:
        return None
    return parse_task_meta(value, task_id)
