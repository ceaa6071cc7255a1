"""Stored results: show, forget, list, wait, and walking result trees, on any result store.

Everything reads through one :class:`Reader` (the store from the registry, the codec, the key scheme). A tree
walk is batched by level: one ``get_many`` per depth level, so a 10,000-node tree costs about depth + N/100
DynamoDB requests, where Celery's own ``AsyncResult.children`` traversal costs one request per node.
"""

from __future__ import annotations

import difflib
import fnmatch
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from taskctl import backends, events
from taskctl.errors import ExitCode, UsageError
from taskctl.formats.result import (
    CHORD_PREFIX,
    GROUP_PREFIX,
    KIND_PREFIXES,
    READY_STATES,
    TASK_PREFIX,
    Decoded,
    GroupRef,
    KeyScheme,
    ResultFormatError,
    TaskMeta,
    TaskRef,
    decode_payload,
    normalize_serializer,
    parse_date_done,
    parse_task_meta,
    to_plain,
)
from taskctl.models import (
    ForgetReport,
    GroupNode,
    Listing,
    Outcome,
    ResultNode,
    ResultTree,
    StoredGroup,
    TaskResult,
)

if TYPE_CHECKING:
    from taskctl.backends.base import ResultStore, StoredItem
    from taskctl.config import Settings

KINDS = tuple(KIND_PREFIXES)


FAILED_STATES = frozenset({"FAILURE", "REVOKED"})
#: the states Celery itself sets (celery.states.ALL_STATES); anything else is a custom state
CELERY_STATES = frozenset(
    {"PENDING", "RECEIVED", "STARTED", "SUCCESS", "FAILURE", "REVOKED", "REJECTED", "RETRY", "IGNORED"}
)


@dataclass(frozen=True)
class Options:
    """How stored values are read: the serializer Celery used, its global_keyprefix, and --unsafe-pickle."""

    serializer: str | None = None
    key_prefix: str | None = None
    unsafe_pickle: bool = False


@dataclass
class Fetched:
    item: StoredItem
    decoded: Decoded
    meta: TaskMeta | None


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


class Reader:
    """A result store plus the codec settings to read it with."""

    def __init__(self, settings: Settings, opts: Options | None = None, store: ResultStore | None = None) -> None:
        opts = opts or Options()
        try:
            self.serializer = normalize_serializer(opts.serializer or settings.serializer)
        except ResultFormatError as exc:
            raise UsageError(str(exc)) from None
        prefix = (
            opts.key_prefix
            if opts.key_prefix is not None
            else (settings.key_prefix or settings.result_transport_options.get("global_keyprefix"))
        )
        self.keys = KeyScheme(prefix or None)
        self.unsafe_pickle = opts.unsafe_pickle
        self.store = store if store is not None else backends.result_store(settings)
        self._warned: set[str] = set()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def decode(self, task_id: str, item: StoredItem) -> Fetched:
        dec = decode_payload(item.value, self.serializer, unsafe_pickle=self.unsafe_pickle)
        if dec.sniffed and dec.serializer not in self._warned:
            self._warned.add(str(dec.serializer))
            events.warn(
                f"some results are stored as {dec.serializer}, not {self.serializer} as configured "
                "(read anyway; pass --serializer to say what the workers use)"
            )
        meta = None
        if dec.ok:
            try:
                meta = task_meta(dec.value, task_id)
            except Exception as exc:  # stored data is untrusted: one odd value is a problem on its row, not a crash
                dec.error = f"cannot read task meta: {type(exc).__name__}: {exc}"[:300]
            else:
                if meta is None:
                    dec.error = "not Celery task meta"
        if meta is not None:
            # the parsed meta holds all that is shown: drop the raw bytes and the decoded dict (big trees)
            dec.value = None
            item = replace(item, value=None)
        return Fetched(item, dec, meta)

    def fetch(self, ids: Sequence[str]) -> dict[str, Fetched]:
        """Task id -> what is stored, for the ids that have something stored (one batched read)."""
        keymap: dict[str, str] = {}
        for i in ids:
            for k in self.keys.task_keys(i):
                keymap.setdefault(k, i)
        out: dict[str, Fetched] = {}
        if not keymap:
            return out
        if len(self.keys.prefixes) == 1:
            # decode each batch as it arrives, while the store fetches the next ones
            for item in self.store.iter_many(list(keymap)):
                owner = keymap.get(item.key)
                if owner is not None and owner not in out:
                    out[owner] = self.decode(owner, item)
            return out
        items = self.store.get_many(list(keymap))
        for i in ids:
            if i in out:
                continue
            for k in self.keys.task_keys(i):
                if k in items:
                    out[i] = self.decode(i, items[k])
                    break
        return out

    def group(self, group_id: str) -> GroupRef | None:
        """The saved group ``celery-taskset-meta-<id>`` (``GroupResult.save()``), or None."""
        keys = self.keys.keys("group", group_id)
        found = self.store.get_many(keys)
        for k in keys:
            if k in found:
                dec = decode_payload(found[k].value, self.serializer, unsafe_pickle=self.unsafe_pickle)
                ref = parse_ref(dec.value.get("result")) if dec.ok and isinstance(dec.value, Mapping) else None
                return ref if isinstance(ref, GroupRef) else None
        return None


def _expired(item: StoredItem, now: float) -> bool:
    return item.expires_at is not None and item.expires_at < now


def task_result(task_id: str, f: Fetched | None, now: float | None = None) -> TaskResult:
    """The show/list row for one id (PENDING with found=false when nothing is stored)."""
    if f is None:
        return TaskResult(task_id=task_id, state="PENDING", found=False)
    now = time.time() if now is None else now
    dec, meta = f.decoded, f.meta
    expired = _expired(f.item, now)
    if meta is None:
        return TaskResult(
            task_id=task_id,
            state="UNKNOWN",
            found=True,
            expired=expired,
            serializer=dec.serializer,
            compression=dec.compression,
            undecodable=dec.undecodable()
            or {"error": dec.error, "size": dec.size, "head": dec.head, "compression": dec.compression},
            problem=dec.error or "not Celery task meta",
        )
    exc = meta.exception
    return TaskResult(
        task_id=task_id,
        state=meta.status,
        found=True,
        name=meta.name,
        args=to_plain(meta.args),
        kwargs=to_plain(meta.kwargs),
        result=None if exc else to_plain(meta.result),
        exception=exc.to_json() if exc else None,
        traceback=meta.traceback,
        date_done=meta.date_done,
        worker=meta.worker,
        retries=meta.retries,
        queue=meta.queue,
        parent_id=meta.parent_id,
        group_id=meta.group_id,
        children=tuple(ref_ids(meta.children)),
        expired=expired,
        serializer=dec.serializer,
        compression=dec.compression,
    )


def task_row(task_id: str, f: Fetched | None, now: float) -> TaskResult:
    """:func:`task_result`, or a row with a ``problem`` when the stored value defeats it (one bad item never
    stops a command over many)."""
    try:
        return task_result(task_id, f, now)
    except Exception as exc:
        return _problem_row(task_id, f, exc)


def _problem_row(task_id: str, f: Fetched | None, exc: BaseException) -> TaskResult:
    dec = f.decoded if f is not None else None
    why = f"cannot read task meta: {type(exc).__name__}: {exc}"[:300]
    return TaskResult(
        task_id=task_id,
        state="UNKNOWN",
        found=True,
        serializer=dec.serializer if dec else None,
        compression=dec.compression if dec else None,
        undecodable={
            "error": why,
            "size": dec.size if dec else 0,
            "head": dec.head if dec else "",
            "compression": None,
        },
        problem=why,
    )


def _need_ids(ids: Sequence[str]) -> None:
    if not ids:
        raise UsageError("no task ids given", hint="pass one or more ids, or '-' to read them from stdin")


# -- show ------------------------------------------------------------------------------------------------------


def show(settings: Settings, ids: Sequence[str], *, missing_ok: bool = False, opts: Options | None = None) -> Outcome:
    """Stored results of IDS in the order given; ids with nothing stored are PENDING with found=false."""
    _need_ids(ids)
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


# -- trees -----------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Node:
    kind: str  # task | group
    id: str
    parent: _Node | None
    depth: int
    via: str | None
    children: list[_Node] = field(default_factory=list)
    fetched: Fetched | None = None
    cycle: bool = False
    repeat: bool = False
    kept: bool = False

    def has_ancestor(self, task_id: str) -> bool:
        n: _Node | None = self
        while n is not None:
            if n.kind == "task" and n.id == task_id:
                return True
            n = n.parent
        return False


@dataclass
class _ReverseIndex:
    """parent_id -> ids and group_id -> ids over every stored task (built by --deep with one scan)."""

    by_parent: dict[str, list[str]] = field(default_factory=dict)
    by_group: dict[str, list[str]] = field(default_factory=dict)


class Walker:
    """Walks result trees level by level: each round reads every node of one depth in one batched read."""

    def __init__(
        self,
        reader: Reader,
        *,
        max_depth: int | None = None,
        deep: bool = False,
        keep: Iterable[str] = (),
    ) -> None:
        self.reader = reader
        self.max_depth = max_depth
        self.keep = frozenset(keep)
        self.tasks: dict[str, _Node] = {}
        self.groups: dict[str, _Node] = {}
        self.nodes: list[_Node] = []
        self.rounds = 0
        self._expected: list[tuple[_Node, str]] = []
        self.index = self._build_index() if deep else None

    def _build_index(self) -> _ReverseIndex:
        store = self.reader.store
        if not store.supports_scan:
            raise UsageError(f"--deep needs a store that can be listed; {store.describe()} cannot")
        idx = _ReverseIndex()
        prefixes = [p + TASK_PREFIX for p in self.reader.keys.prefixes]
        with events.progress("--deep: scanning the store for parent_id/group_id links", None) as bar:
            for item in store.scan(prefixes):
                bar.advance()
                parsed = self.reader.keys.parse(item.key)
                if parsed is None or parsed.kind != "task":
                    continue
                meta = self.reader.decode(parsed.id, item).meta
                if meta is None:
                    continue
                if meta.parent_id and meta.parent_id != parsed.id:
                    idx.by_parent.setdefault(meta.parent_id, []).append(parsed.id)
                if meta.group_id:
                    idx.by_group.setdefault(meta.group_id, []).append(parsed.id)
        return idx

    def _new(self, kind: str, ident: str, parent: _Node | None, via: str | None) -> _Node:
        node = _Node(kind, ident, parent, 0 if parent is None else parent.depth + 1, via)
        self.nodes.append(node)
        if parent is not None:
            parent.children.append(node)
        return node

    def _attach(self, parent: _Node, ref: Ref, via: str, nxt: list[_Node]) -> None:
        """Add REF below PARENT; tasks to read next go to NXT."""
        self._attach_all([(parent, ref, via)], nxt)

    def _members(self, gnode: _Node, ref: GroupRef) -> list[tuple[_Node, Ref, str]]:
        more: list[tuple[_Node, Ref, str]] = [(gnode, m, "group") for m in ref.members]
        if self.index is not None:
            more += [(gnode, TaskRef(cid), "group_id") for cid in self.index.by_group.get(ref.group_id, ())]
        return more

    def _attach_all(self, items: list[tuple[_Node, Ref, str]], nxt: list[_Node]) -> None:
        """An explicit stack, depth first in the order Celery lists them: groups can nest deep."""
        todo = items[::-1]
        while todo:
            parent, ref, via = todo.pop()
            if self.max_depth is not None and parent.depth + 1 > self.max_depth:
                continue
            if isinstance(ref, TaskRef):
                top: Ref = ref
                while isinstance(top, TaskRef) and top.parent is not None:
                    top = top.parent  # a chain is recorded by its last task; it starts at the top-most parent
                if top is not ref:
                    # walking down from the chain's start normally reaches its last task; if not, it is added later
                    self._expected.append((parent, ref.task_id))
                if isinstance(top, GroupRef):
                    todo.append((parent, top, via))
                    continue
                self._task(parent, top.task_id, via, nxt)
                continue
            gnode = self._new("group", ref.group_id, parent, via)
            if ref.group_id in self.groups:
                gnode.repeat = True
                continue
            self.groups[ref.group_id] = gnode
            todo.extend(reversed(self._members(gnode, ref)))

    def _task(self, parent: _Node, tid: str, via: str, nxt: list[_Node]) -> None:
        if via in ("parent_id", "group_id") and tid in self.tasks:
            return  # a reverse link to a node already in the tree adds nothing
        node = self._new("task", tid, parent, via)
        if tid in self.tasks:
            node.cycle = parent.has_ancestor(tid)
            node.repeat = not node.cycle
        elif tid in self.keep:
            node.kept = True
            self.tasks[tid] = node
        else:
            self.tasks[tid] = node
            nxt.append(node)

    def walk(self, root_id: str) -> _Node:
        """The tree below ROOT_ID, a task id or a saved group's id (shares seen-sets with earlier walks)."""
        if root_id in self.tasks:
            node = _Node("task", root_id, None, 0, None, repeat=True)
            node.fetched = self.tasks[root_id].fetched
            return node
        if root_id in self.groups:
            return _Node("group", root_id, None, 0, None, repeat=True)
        root = self._new("task", root_id, None, None)
        self.tasks[root_id] = root
        if root_id in self.keep:
            root.kept = True
            return root
        frontier = [root]
        with events.progress("walking the result tree", None) as bar:
            while frontier:
                fetched = self.reader.fetch([n.id for n in frontier])
                self.rounds += 1
                nxt: list[_Node] = []
                if frontier[0] is root and root_id not in fetched and self._as_group(root, nxt):
                    frontier = []
                for n in frontier:
                    n.fetched = fetched.get(n.id)
                    if self.max_depth is not None and n.depth >= self.max_depth:
                        continue
                    meta = n.fetched.meta if n.fetched else None
                    if meta is not None:
                        for ref in meta.children:
                            self._attach(n, ref, "children", nxt)
                    if self.index is not None:
                        for cid in self.index.by_parent.get(n.id, ()):
                            self._attach(n, TaskRef(cid), "parent_id", nxt)
                bar.update(completed=len(self.tasks))
                if not nxt and self._expected:
                    expected, self._expected = self._expected, []
                    for p, tid in expected:
                        if tid not in self.tasks:
                            self._attach(p, TaskRef(tid), "children", nxt)
                frontier = nxt
        return root

    def _as_group(self, root: _Node, nxt: list[_Node]) -> bool:
        """Nothing is stored for the root as a task: a saved group of that id becomes the root (True)."""
        ref = self.reader.group(root.id)
        if ref is None:
            return False
        del self.tasks[root.id]
        root.kind = "group"
        self.groups[root.id] = root
        self._attach_all(self._members(root, ref), nxt)
        return True

    def task_nodes(self) -> Iterator[_Node]:
        """Each task id once (its first, expanded node)."""
        return iter(self.tasks.values())


def _state_of(n: _Node) -> str:
    f = n.fetched
    if f is None:
        return "PENDING"
    return f.meta.status if f.meta is not None else "UNKNOWN"


def _freeze(walker: Walker, root: _Node) -> ResultNode | GroupNode:
    """Frozen models, children first (no recursion: chains can be thousands of links long)."""
    now = time.time()
    built: dict[int, ResultNode | GroupNode] = {}
    order: list[_Node] = []
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


def climb(reader: Reader, task_id: str) -> str:
    """Follow parent_id links up to the root (guarded against self-references and cycles)."""
    seen = {task_id}
    cur = task_id
    while True:
        f = reader.fetch([cur]).get(cur)
        parent = f.meta.parent_id if f is not None and f.meta is not None else None
        if not parent or parent in seen:
            return cur
        seen.add(parent)
        cur = parent


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
        s = _state_of(n)
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


def walk_ids(settings: Settings, roots: Sequence[str], *, opts: Options | None = None) -> Iterator[str]:
    """Every task id in the result trees of ROOTS (roots first), each once."""
    with Reader(settings, opts) as reader:
        walker = Walker(reader)
        for r in roots:
            walker.walk(r)
        yield from list(walker.tasks)


def revoke_targets(settings: Settings, roots: Sequence[str], *, opts: Options | None = None) -> list[str]:
    """ROOTS that are tasks (a saved group's id is walked, not revoked itself), then every task in their trees
    whose stored state is not ready, each once."""
    with Reader(settings, opts) as reader:
        walker = Walker(reader)
        tops = [r for r in roots if walker.walk(r).kind == "task"]
        nodes = list(walker.task_nodes())
    ids = dict.fromkeys(tops)  # ordered, and no quadratic membership test on a 10,000-task chain
    ids.update(dict.fromkeys(n.id for n in nodes if _state_of(n) not in READY_STATES))
    return list(ids)


# -- filters (list and forget) ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    states: frozenset[str] = frozenset()
    task_glob: str | None = None
    older_than: float | None = None
    newer_than: float | None = None

    @property
    def any(self) -> bool:
        return bool(self.states or self.task_glob or self.older_than is not None or self.newer_than is not None)

    def age_ok(self, when: float | None, now: float) -> bool:
        if self.older_than is None and self.newer_than is None:
            return True
        if when is None:
            return False
        age = now - when
        if self.older_than is not None and age < self.older_than:
            return False
        return not (self.newer_than is not None and age > self.newer_than)

    def matches(self, f: Fetched, now: float) -> bool:
        """:meth:`task_ok`, where a value that defeats the filters matches only when nothing is filtered."""
        try:
            return self.task_ok(f, now)
        except Exception:
            return not self.any

    def task_ok(self, f: Fetched, now: float) -> bool:
        meta = f.meta
        state = meta.status if meta is not None else "UNKNOWN"
        if self.states and state not in self.states:
            return False
        if self.task_glob and not fnmatch.fnmatchcase((meta.name if meta else None) or "", self.task_glob):
            return False
        return self.age_ok(_when(f), now)


def _when(f: Fetched) -> float | None:
    """Age is measured on date_done; DynamoDB's timestamp (a file's mtime) where there is none."""
    if f.meta is not None:
        d = parse_date_done(f.meta.date_done)
        if d is not None:
            return d.timestamp()
    return f.item.timestamp


def make_filters(
    states: Sequence[str] = (),
    task_glob: str | None = None,
    older_than: float | None = None,
    newer_than: float | None = None,
) -> Filters:
    wanted = {s.strip().upper() for raw in states for s in raw.split(",") if s.strip()}
    for state in sorted(wanted - CELERY_STATES):
        # custom states (PROGRESS, ...) are legitimate: say what was probably meant, and go on
        close = difflib.get_close_matches(state, sorted(CELERY_STATES), n=1, cutoff=0.6)
        if close:
            events.warn(f"no Celery state {state}; did you mean {close[0]}?")
    return Filters(frozenset(wanted), task_glob, older_than, newer_than)


# -- list ------------------------------------------------------------------------------------------------------


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def list_results(
    settings: Settings,
    *,
    filters: Filters | None = None,
    limit: int | None = None,
    kind: str = "task",
    opts: Options | None = None,
) -> Listing:
    """Scan the store and stream what matches (progress on stderr on a terminal)."""
    filters = filters or Filters()
    if kind not in KINDS:
        raise UsageError(f"unknown --kind {kind!r}", hint="use one of: " + ", ".join(KINDS))
    if kind != "task" and (filters.states or filters.task_glob):
        raise UsageError(f"--state and --task apply to task results, not --kind {kind}")
    if limit is not None and limit < 0:
        raise UsageError("--limit must be 0 or more")
    reader = Reader(settings, opts)
    if not reader.store.supports_scan:
        reader.close()
        raise UsageError(f"{reader.store.describe()} cannot be listed")
    prefixes = [p + KIND_PREFIXES[kind] for p in reader.keys.prefixes]
    model: type[TaskResult] | type[StoredGroup] = TaskResult if kind == "task" else StoredGroup

    def rows() -> Iterator[Any]:
        shown = 0
        problems = 0
        now = time.time()
        try:
            if limit == 0:
                return
            with events.progress(f"scanning {reader.store.describe()}", None) as bar:
                for item in reader.store.scan(prefixes):
                    bar.advance()
                    parsed = reader.keys.parse(item.key)
                    if parsed is None or parsed.kind != kind:
                        continue
                    if kind == "task":
                        f = reader.decode(parsed.id, item)
                        if not filters.matches(f, now):
                            continue
                        row = task_row(parsed.id, f, now)
                        problems += row.problem is not None
                        yield row
                    else:
                        if not filters.age_ok(item.timestamp, now):
                            continue
                        yield _stored_group(reader, parsed.kind, parsed.id, item, now)
                    shown += 1
                    if limit is not None and shown >= limit:
                        return
        finally:
            reader.close()
            if problems:
                events.warn(f"{problems} stored values could not be read as task meta (see their problem)")

    return Listing(model=model, items=rows())


def _stored_group(reader: Reader, kind: str, ident: str, item: StoredItem, now: float) -> StoredGroup:
    members: tuple[str, ...] = ()
    undecodable = None
    if kind == "group":
        dec = decode_payload(item.value, reader.serializer, unsafe_pickle=reader.unsafe_pickle)
        ref = parse_ref(dec.value.get("result")) if dec.ok and isinstance(dec.value, Mapping) else None
        ref = ref if isinstance(ref, GroupRef) else None
        if ref is not None:
            members = tuple(m.task_id if isinstance(m, TaskRef) else m.group_id for m in ref.members)
        else:
            undecodable = dec.undecodable() or {"error": "not Celery group meta", "size": dec.size, "head": dec.head}
    return StoredGroup(
        kind=kind,
        group_id=ident,
        members=members,
        chord_count=item.chord_count,
        stored_at=_iso(item.timestamp),
        expired=_expired(item, now),
        undecodable=undecodable,
    )


# -- forget ----------------------------------------------------------------------------------------------------


def forget(
    settings: Settings,
    ids: Sequence[str] = (),
    *,
    tree: bool = False,
    deep: bool = False,
    keep: Sequence[str] = (),
    filters: Filters | None = None,
    dry_run: bool = False,
    opts: Options | None = None,
) -> ForgetReport:
    """Delete stored results: IDS (with --tree their subtrees, never a parent), or everything matching FILTERS."""
    filters = filters or Filters()
    if not ids and not filters.any:
        raise UsageError(
            "nothing to forget: give task ids, or filters (--state, --task, --older-than, --newer-than)",
            hint="e.g. taskctl result forget --state SUCCESS --older-than 7d --yes",
        )
    if (tree or deep or keep) and not ids:
        raise UsageError("--tree, --deep and --keep need task ids")
    if deep and not tree:
        raise UsageError("--deep needs --tree")
    with Reader(settings, opts) as reader:
        if not ids:
            return _forget_matching(reader, filters, dry_run)
        now = time.time()
        kept: list[str] = []
        groups: list[str] = []
        if tree:
            walker = Walker(reader, deep=deep, keep=keep)
            for r in ids:
                walker.walk(r)
            candidates = [(n.id, n.fetched) for n in walker.task_nodes() if not n.kept]
            kept = [n.id for n in walker.task_nodes() if n.kept]
            groups = list(walker.groups)
        else:
            fetched = reader.fetch(ids)
            candidates = [(i, fetched.get(i)) for i in ids]
        forgotten: list[str] = []
        missing: list[str] = []
        for tid, f in candidates:
            if f is None:
                missing.append(tid)
            elif not filters.any or filters.matches(f, now):
                forgotten.append(tid)
        group_keys: list[str] = []
        present_groups: list[str] = []
        if groups:
            wanted = {k: g for g in groups for kind in ("group", "chord-counter") for k in reader.keys.keys(kind, g)}
            found = reader.store.get_many(list(wanted))
            group_keys = list(found)
            present_groups = list(dict.fromkeys(wanted[k] for k in found))
        if not dry_run:
            keys = [k for tid in forgotten for k in reader.keys.task_keys(tid)] + group_keys
            reader.store.delete_many(keys)
    return ForgetReport(
        forgotten=tuple(forgotten),
        missing=tuple(missing),
        dry_run=dry_run,
        groups=tuple(present_groups),
        kept=tuple(kept),
    )


def _forget_matching(reader: Reader, filters: Filters, dry_run: bool) -> ForgetReport:
    now = time.time()
    forgotten: list[str] = []
    batch: list[str] = []
    prefixes = [p + TASK_PREFIX for p in reader.keys.prefixes]
    with events.progress("scanning for results to forget", None) as bar:
        for item in reader.store.scan(prefixes):
            bar.advance()
            parsed = reader.keys.parse(item.key)
            if parsed is None or parsed.kind != "task":
                continue
            f = reader.decode(parsed.id, item)
            if not filters.matches(f, now):
                continue
            forgotten.append(parsed.id)
            batch.append(item.key)
            if len(batch) >= 500 and not dry_run:
                reader.store.delete_many(batch)
                batch = []
    if batch and not dry_run:
        reader.store.delete_many(batch)
    return ForgetReport(forgotten=tuple(forgotten), missing=(), dry_run=dry_run)


# -- wait ------------------------------------------------------------------------------------------------------


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


__all__ = [
    "CHORD_PREFIX",
    "GROUP_PREFIX",
    "Filters",
    "Options",
    "Reader",
    "Walker",
    "forget",
    "list_results",
    "make_filters",
    "revoke_targets",
    "show",
    "task_result",
    "tree",
    "wait",
    "walk_ids",
]
