"""`result tree` and `result show`/`wait`: what is stored for ids and below them, as models."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taskctl import events
from taskctl.errors import ExitCode, UsageError
from taskctl.models import GroupNode, Listing, Outcome, ResultNode, ResultTree, TaskResult, TreeRow
from taskctl.results.read import FAILED_STATES, Fetched, Options, Reader, need_ids, task_row
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


@dataclass
class _Tally:
    """What the exit code of `result tree` depends on, filled in by whichever walk ran."""

    root_id: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    bad: int = 0
    tasks: int = 0
    root_found: bool = False
    root_children: bool = False
    levels: int = 0
    done: bool = False

    def add(self, state: str) -> None:
        self.counts[state] = self.counts.get(state, 0) + 1
        self.bad += state in FAILED_STATES
        self.tasks += 1


class _LazyTree(ResultTree):
    """A ResultTree whose rows() walk while they print (jsonl, plain, csv, tsv: memory for a level and the ids
    seen, not the tree; rows come level by level, each after its parent). ``root`` (json, table), which needs
    the whole nested tree, walks it all on first use."""

    _full: Callable[[], ResultTree]
    _rows: Callable[[], Iterator[TreeRow]]
    _built: ResultTree | None

    def __init__(self, full: Callable[[], ResultTree], rows: Callable[[], Iterator[TreeRow]]) -> None:
        object.__setattr__(self, "_full", full)
        object.__setattr__(self, "_rows", rows)
        object.__setattr__(self, "_built", None)

    def _tree(self) -> ResultTree:
        if self._built is None:
            object.__setattr__(self, "_built", self._full())
        assert self._built is not None
        return self._built

    @property
    def root(self) -> ResultNode | GroupNode:
        return self._tree().root

    @property
    def counts(self) -> dict[str, int]:
        return self._tree().counts

    @property
    def levels(self) -> int:
        return self._tree().levels

    def rows(self) -> Iterator[TreeRow]:
        if self._built is not None:
            return self._built.rows()
        return self._rows()


class _LateOutcome(Outcome):
    """An Outcome whose exit code is known once the tree is printed (the renderer reads it after the rows)."""

    def __init__(self, value: ResultTree, tally: _Tally, check: bool) -> None:
        self.value = value
        self._tally = tally
        self._check = check

    def _why(self) -> tuple[ExitCode, str | None]:
        t = self._tally
        if not t.done:  # read before the tree was printed (a library caller): walk it now
            _ = self.value.root
        if self._check and t.bad:
            return ExitCode.FAILED, f"{t.bad} of {t.tasks} tasks in the tree are FAILURE or REVOKED"
        if not t.root_found and not t.root_children:
            return ExitCode.NOT_FOUND, f"no stored result for {t.root_id}"
        return ExitCode.OK, None

    @property  # read after the value is printed
    def exit_code(self) -> ExitCode:  # type: ignore[override]
        return self._why()[0]

    @property
    def message(self) -> str | None:  # type: ignore[override]
        return self._why()[1]


def _tree_row(n: Node, f: Fetched | None, now: float) -> TreeRow:
    parent = n.parent.id if n.parent is not None else None
    if n.kind == "group":
        return TreeRow(n.depth, "group", n.id, parent, None, None, None, None, None, n.via, False, n.repeat)
    row = task_row(n.id, f, now)
    result = row.result if row.undecodable is None else {"__undecodable__": row.undecodable}
    return TreeRow(
        n.depth, "task", n.id, parent, row.state, row.name, row.found, result, row.exception, n.via, n.cycle, n.repeat
    )


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
    """Everything Celery recorded below TASK_ID (with --up: below its root), one batched read per level.

    Nothing is read until the result is printed: row formats stream the walk, json and table build the tree."""
    if depth is not None and depth < 0:
        raise UsageError("--depth must be 0 or more")
    tally = _Tally(root_id=task_id)

    def full() -> ResultTree:
        with Reader(settings, opts) as reader:
            root_id = tally.root_id = climb(reader, task_id) if up else task_id
            walker = Walker(reader, max_depth=depth, deep=deep)
            root = walker.walk(root_id)
        tally.counts.clear()
        tally.bad = tally.tasks = 0
        for n in walker.task_nodes():
            tally.add(state_of(n))
        tally.root_found = root.kind == "group" or root.fetched is not None
        tally.root_children = bool(root.children)
        tally.levels = walker.rounds
        tally.done = True
        return ResultTree(root=_freeze(walker, root), counts=dict(tally.counts), levels=walker.rounds)

    def rows() -> Iterator[TreeRow]:
        now = time.time()
        with Reader(settings, opts) as reader:
            root_id = tally.root_id = climb(reader, task_id) if up else task_id
            walker = Walker(reader, max_depth=depth, deep=deep, streaming=True)
            states: dict[str, str] = {}
            repeats: list[Node] = []
            root: Node | None = None
            for frontier, side in walker.rounds_of(root_id):
                if root is None:
                    root = frontier[0] if frontier else side[0]
                    tally.root_found = root.kind == "group" or root.fetched is not None or root.repeat
                for n in frontier:
                    row = _tree_row(n, n.fetched, now)
                    states[n.id] = row.state or "PENDING"
                    tally.add(states[n.id])
                    tally.root_children = tally.root_children or n.parent is not None
                    n.fetched = None  # shown: only its id stays, to tell repeats
                    yield row
                waiting, repeats = repeats, []
                for n in waiting:  # a repeat's first node may have been read only in this round
                    yield _repeat_row(n, states)
                for n in side:
                    tally.root_children = tally.root_children or n.parent is not None
                    if n.kind == "task" and (n.repeat or n.cycle):
                        repeats.append(n)
                        continue
                    if n.kind == "task":  # kept
                        tally.add("PENDING")
                    yield _tree_row(n, None, now)
            for n in repeats:
                yield _repeat_row(n, states)
            tally.levels = walker.rounds
            tally.done = True

    return _LateOutcome(_LazyTree(full, rows), tally, check)


def _repeat_row(n: Node, states: dict[str, str]) -> TreeRow:
    """A repeat or cycle: its state as first shown (the rest of it is in that row)."""
    parent = n.parent.id if n.parent is not None else None
    state = states.get(n.id)
    return TreeRow(
        n.depth, "task", n.id, parent, state or "PENDING", None, state is not None, None, None, n.via, n.cycle, n.repeat
    )


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
