"""Walking result trees level by level: each round reads every node of one depth in one batched read, so
a 10,000-node tree costs about depth + N/100 DynamoDB requests (Celery's own traversal: one per node)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taskctl import events
from taskctl.errors import UsageError
from taskctl.formats.result import READY_STATES, TASK_PREFIX, GroupRef, TaskRef
from taskctl.results.read import Fetched, Options, Reader
from taskctl.results.refs import Ref

if TYPE_CHECKING:
    from taskctl.config import Settings


#: ids a streaming walk reads at a time (a level of a million is read, shown and let go in parts)
STREAM_PART = 2000


@dataclass(eq=False, slots=True)
class Node:
    """A tree node while walking: mutable and linked both ways; tree._freeze turns it into models."""

    kind: str  # task | group
    id: str
    parent: Node | None
    depth: int
    via: str | None
    children: list[Node] = field(default_factory=list)
    fetched: Fetched | None = None
    cycle: bool = False
    repeat: bool = False
    kept: bool = False

    def has_ancestor(self, task_id: str) -> bool:
        n: Node | None = self
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
        streaming: bool = False,
    ) -> None:
        self.reader = reader
        #: rows are taken round by round (rounds_of): nodes keep no child lists and are let go once shown
        self.streaming = streaming
        self.max_depth = max_depth
        self.keep = frozenset(keep)
        self.tasks: dict[str, Node] = {}
        self.groups: dict[str, Node] = {}
        self.nodes: list[Node] = []
        self.rounds = 0
        self._expected: list[tuple[Node, str]] = []
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

    def _new(self, kind: str, ident: str, parent: Node | None, via: str | None) -> Node:
        node = Node(kind, ident, parent, 0 if parent is None else parent.depth + 1, via)
        self.nodes.append(node)
        if parent is not None and not self.streaming:
            parent.children.append(node)
        return node

    def _attach(self, parent: Node, ref: Ref, via: str, nxt: list[Node]) -> None:
        """Add REF below PARENT; tasks to read next go to NXT."""
        self._attach_all([(parent, ref, via)], nxt)

    def _members(self, gnode: Node, ref: GroupRef) -> list[tuple[Node, Ref, str]]:
        more: list[tuple[Node, Ref, str]] = [(gnode, m, "group") for m in ref.members]
        if self.index is not None:
            more += [(gnode, TaskRef(cid), "group_id") for cid in self.index.by_group.get(ref.group_id, ())]
        return more

    def _attach_all(self, items: list[tuple[Node, Ref, str]], nxt: list[Node]) -> None:
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

    def _task(self, parent: Node, tid: str, via: str, nxt: list[Node]) -> None:
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

    def walk(self, root_id: str) -> Node:
        """The tree below ROOT_ID, a task id or a saved group's id (shares seen-sets with earlier walks)."""
        rounds = self.rounds_of(root_id)
        read, made = next(rounds)
        root = read[0] if read else made[0]
        for _ in rounds:
            pass
        return root

    def rounds_of(self, root_id: str) -> Iterator[tuple[list[Node], list[Node]]]:
        """The walk as it goes: per round, (the tasks just read, every other node made in that round and never
        read: groups, repeats, cycles, kept ids). The root comes first in the first round's lists."""
        if root_id in self.tasks:
            node = Node("task", root_id, None, 0, None, repeat=True)
            node.fetched = self.tasks[root_id].fetched
            yield [], [node]
            return
        if root_id in self.groups:
            yield [], [Node("group", root_id, None, 0, None, repeat=True)]
            return
        root = self._new("task", root_id, None, None)
        self.tasks[root_id] = root
        if root_id in self.keep:
            root.kept = True
            yield [], [root]
            return
        frontier = [root]
        first = True
        with events.progress("walking the result tree", None) as bar:
            while frontier:
                self.rounds += 1
                nxt: list[Node] = []
                # streaming reads a wide level in parts, so memory holds a part's values, not the level's
                step = STREAM_PART if self.streaming else len(frontier)
                for at in range(0, len(frontier), step):
                    part = frontier[at : at + step]
                    fetched = self.reader.fetch([n.id for n in part])
                    made, grown = len(self.nodes), len(nxt)
                    if first and root_id not in fetched and self._as_group(root, nxt):
                        part = []
                    for n in part:
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
                    del fetched
                    bar.update(completed=len(self.tasks))
                    yield part, self._side(made, nxt[grown:], root if first and root.kind == "group" else None)
                    first = False
                if not nxt and self._expected:
                    made = len(self.nodes)
                    expected, self._expected = self._expected, []
                    for p, tid in expected:
                        if tid not in self.tasks:
                            self._attach(p, TaskRef(tid), "children", nxt)
                    yield [], self._side(made, nxt, None)
                frontier = nxt

    def _side(self, made: int, later: list[Node], root: Node | None) -> list[Node]:
        """Nodes made since MADE that will not be read (not in LATER); a streaming walk lets go of them."""
        ids = {id(n) for n in later}
        side = [n for n in self.nodes[made:] if id(n) not in ids]
        if root is not None:
            side.insert(0, root)
        if self.streaming:
            del self.nodes[:]
        return side

    def _as_group(self, root: Node, nxt: list[Node]) -> bool:
        """Nothing is stored for the root as a task: a saved group of that id becomes the root (True)."""
        ref = self.reader.group(root.id)
        if ref is None:
            return False
        del self.tasks[root.id]
        root.kind = "group"
        self.groups[root.id] = root
        self._attach_all(self._members(root, ref), nxt)
        return True

    def task_nodes(self) -> Iterator[Node]:
        """Each task id once (its first, expanded node)."""
        return iter(self.tasks.values())


def state_of(n: Node) -> str:
    f = n.fetched
    if f is None:
        return "PENDING"
    return f.meta.status if f.meta is not None else "UNKNOWN"


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
    ids.update(dict.fromkeys(n.id for n in nodes if state_of(n) not in READY_STATES))
    return list(ids)
