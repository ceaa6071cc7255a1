"""`result tree` and `result show`/`wait`: what is stored for ids and below them, as models."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from taskctl import events
from taskctl.errors import ExitCode, UsageError
from taskctl.models import GroupNode, Listing, Outcome, ResultNode, ResultTree, TaskResult
from taskctl.results.read import FAILED_STATES, Options, Reader, need_ids, task_row
from taskctl.results.walk import Node, Walker, climb, state_of

if TYPE_CHECKING:
    from taskctl.config import Settings


def show(settings: Settings, ids: Sequence[str], *, missing_ok: bool = False, opts: Options | None = None) -> Outcome:
    """Stored results of IDS in the order given; ids with nothing stored are PENDING with found=false."""
    need_ids(ids)
    with Reader(settings, opts) as reader:
        fetched = reader.fetch(ids)
    now = time.time()
    rows = [task_row(i, fetched.get(i), now) for i in ids]
    missing = sum(1 for r in rows if not r.found)
    listing = Listing(model=TaskResult, items=rows)
    if missing and not missing_ok:
        return Outcome(
            listing,
            ExitCode.NOT_FOUND,
            f"{missing} of {len(rows)} ids have no stored result (shown as PENDING); --missing-ok exits 0",
        )
    return Outcome(listing)


def _freeze(walker: Walker, root: Node) -> ResultNode | GroupNode:
    """Frozen models, children first (no recursion: chains can be thousands of links long)."""
    now = time.time()
    built: dict[int, ResultNode | GroupNode] = {}
    order: list[Node] = []
    stack = [root]
    while stack:
        n = stack.pop()
        order.append(n)
        stack.extend(n.children)
    for n in reversed(order):
        kids = tuple(built[id(c)] for c in n.children)
        if n.kind == "group":
            built[id(n)] = GroupNode(group_id=n.id, via=n.via, repeat=n.repeat, children=kids)
            continue
        first = walker.tasks.get(n.id, n)
        f = first.fetched if first.fetched is not None else n.fetched
        row = task_row(n.id, f, now)
        built[id(n)] = ResultNode(
            task_id=n.id,
            state=row.state,
            found=row.found,
            name=row.name,
            result=row.result if row.undecodable is None else {"__undecodable__": row.undecodable},
            exception=row.exception,
            via=n.via,
            cycle=n.cycle,
            repeat=n.repeat,
            expired=row.expired,
            serializer=row.serializer,
            children=kids,
        )
    return built[id(root)]


def tree(
    settings: Settings,
    task_id: str,
    *,
    up: bool = False,
    deep: bool = False,
    depth: int | None = None,
    check: bool = False,
    opts: Options | None = None,
) -> Outcome:
    """Everything Celery recorded below TASK_ID (with --up: below its root), one batched read per level."""
    if depth is not None and depth < 0:
        raise UsageError("--depth must be 0 or more")
    with Reader(settings, opts) as reader:
        root_id = climb(reader, task_id) if up else task_id
        walker = Walker(reader, max_depth=depth, deep=deep)
        root = walker.walk(root_id)
    counts: dict[str, int] = {}
    bad = 0
    for n in walker.task_nodes():
        s = state_of(n)
        counts[s] = counts.get(s, 0) + 1
        bad += s in FAILED_STATES
    result = ResultTree(root=_freeze(walker, root), counts=counts, levels=walker.rounds)
    if check and bad:
        return Outcome(
            result, ExitCode.FAILED, f"{bad} of {len(walker.tasks)} tasks in the tree are FAILURE or REVOKED"
        )
    root_found = root.kind == "group" or root.fetched is not None
    if not root_found and not root.children:
        return Outcome(result, ExitCode.NOT_FOUND, f"no stored result for {root_id}")
    return Outcome(result)


def wait(
    settings: Settings,
    task_id: str,
    *,
    timeout: float | None = None,
    interval: float = 0.5,
    opts: Options | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Poll until the task is ready: exit 0 on SUCCESS, 1 on FAILURE/REVOKED, 124 when TIMEOUT passes."""
    if interval <= 0:
        raise UsageError("--interval must be more than 0")
    deadline = None if timeout is None else clock() + timeout
    with Reader(settings, opts) as reader, events.progress(f"waiting for {task_id}", None) as bar:
        while True:
            f = reader.fetch([task_id]).get(task_id)
            row = task_row(task_id, f, time.time())
            prog = f.meta.progress if f is not None and f.meta is not None else None
            if prog is not None:
                bar.update(total=prog[1], completed=prog[0], description=f"{task_id} {row.state}")
            else:
                bar.update(description=f"{task_id} {row.state}")
            if row.state == "SUCCESS":
                return Outcome(row)
            if row.state in FAILED_STATES or row.state in ("REJECTED", "IGNORED"):
                why = row.result_text() if row.exception else row.state
                return Outcome(row, ExitCode.FAILED, f"task {task_id} ended {row.state}: {why}")
            if deadline is not None and clock() >= deadline:
                return Outcome(
                    row, ExitCode.WAIT_TIMEOUT, f"gave up after {timeout:g}s: task {task_id} is still {row.state}"
                )
            pause = interval if deadline is None else max(0.0, min(interval, deadline - clock()))
            sleep(pause)
