"""Celery's result tuples (celery-formats §1.5) read with an explicit stack: children can nest thousands deep."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from taskctl.formats.result import GroupRef, TaskMeta, TaskRef, parse_task_meta

Ref = TaskRef | GroupRef


def _tuple_shape(node: Any) -> bool:
    """``[[id, parent], None]`` (a result) or ``[[id, parent], [members...]]`` (a group), as Celery stores them."""
    if not isinstance(node, list | tuple) or len(node) != 2:
        return False
    head, members = node
    if not isinstance(head, list | tuple) or len(head) != 2 or not isinstance(head[0], str):
        return False
    return members is None or isinstance(members, list | tuple)


def parse_refs(raw: Any) -> tuple[Ref, ...]:
    """Celery's result tuples (§1.5) as refs, read with an explicit stack.

    The same reading as ``formats.result.parse_result_tuple``, which recurses: a chain recorded by its last task
    nests one level per link, so stored ``children`` can nest thousands deep. Shared (pickle-memo) nodes are read
    once and a node that contains itself is dropped, so hostile nesting costs time linear in its size.
    """
    if not isinstance(raw, list | tuple):
        return ()
    done: dict[int, Ref] = {}
    active: set[int] = set()
    stack: list[tuple[Any, bool]] = [(n, False) for n in reversed(raw)]
    while stack:
        node, ready = stack.pop()
        key = id(node)
        if ready:
            active.discard(key)
            (ident, parent_raw), members = node
            parent = done.get(id(parent_raw)) if parent_raw is not None else None
            if members is None:
                done[key] = TaskRef(ident, parent)
            else:
                kids = tuple(r for m in members if (r := done.get(id(m))) is not None)
                done[key] = GroupRef(ident, kids, parent)
            continue
        if key in done or key in active:
            continue
        if isinstance(node, str):
            done[key] = TaskRef(node)
            continue
        if not _tuple_shape(node):
            continue
        active.add(key)
        stack.append((node, True))
        head, members = node
        if members is not None:
            stack.extend((m, False) for m in reversed(members))
        if head[1] is not None:
            stack.append((head[1], False))
    return tuple(r for n in raw if (r := done.get(id(n))) is not None)


def parse_ref(raw: Any) -> Ref | None:
    """One result tuple (a group's stored ``result``) as a ref."""
    refs = parse_refs([raw])
    return refs[0] if refs else None


def ref_ids(refs: Iterable[Ref]) -> list[str]:
    """Task ids of REFS, group members flattened in order (each group object expanded once)."""
    out: list[str] = []
    seen: set[int] = set()
    stack: list[Ref] = list(refs)[::-1]
    while stack:
        r = stack.pop()
        if isinstance(r, TaskRef):
            out.append(r.task_id)
        elif id(r) not in seen:
            seen.add(id(r))
            stack.extend(reversed(r.members))
    return out


def task_meta(value: Any, task_id: str) -> TaskMeta | None:
    """``formats.result.parse_task_meta`` with ``children`` read by :func:`parse_refs` (no recursion)."""
    if not isinstance(value, Mapping) or "status" not in value:
        return None
    meta = parse_task_meta({k: v for k, v in value.items() if k != "children"}, task_id)
    if meta is not None:
        meta.children = parse_refs(value.get("children"))
    return meta
