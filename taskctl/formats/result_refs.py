"""Celery's result tuples (celery-formats §1.5): ``[[id, parent], None]`` an AsyncResult, ``[[id, parent],
[members…]]`` a GroupResult. Read and written with an explicit stack: a chain recorded by its last task nests one
level per link, so stored ``children`` can nest thousands deep. Pure, stdlib only, never raises.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TaskRef:
    task_id: str
    #: a chain's last task carries its predecessors: the chain starts at the top-most parent
    parent: TaskRef | GroupRef | None = None


@dataclass(frozen=True)
class GroupRef:
    group_id: str
    members: tuple[TaskRef | GroupRef, ...]
    #: a group member that is a chain: its first task ("parent" in the tuple)
    parent: TaskRef | GroupRef | None = None


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

    Shared (pickle-memo) nodes are read once and a node that contains itself is dropped, so hostile nesting
    costs time linear in its size.
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


def parse_result_tuple(node: Any) -> Ref | None:
    """One result tuple (a group's stored ``result``, one of ``children``) as a ref; None when not one."""
    refs = parse_refs([node])
    return refs[0] if refs else None


#: the ids of refs, group members flattened in order
flatten_ids = ref_ids


def as_tuple(ref: Ref) -> Any:
    """REF in Celery's tuple form (``AsyncResult.as_tuple()``), built without recursion."""
    done: dict[int, Any] = {}
    stack: list[tuple[Ref, bool]] = [(ref, False)]
    while stack:
        r, ready = stack.pop()
        if id(r) in done:
            continue
        if not ready:
            stack.append((r, True))
            if r.parent is not None:
                stack.append((r.parent, False))
            if isinstance(r, GroupRef):
                stack.extend((m, False) for m in r.members)
            continue
        parent = done[id(r.parent)] if r.parent is not None else None
        if isinstance(r, TaskRef):
            done[id(r)] = [[r.task_id, parent], None]
        else:
            done[id(r)] = [[r.group_id, parent], [done[id(m)] for m in r.members]]
    return done[id(ref)]
