"""Stored results, groups, forget reports and result trees."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from taskctl.models.base import Model


@dataclass(frozen=True)
class TaskResult(Model):
    """A task's stored result as Celery stored it; ``found`` is false (and state PENDING) when nothing is stored."""

    columns: ClassVar[tuple[str, ...]] = (
        "task_id",
        "state",
        "size",
        "name",
        "result",
        "date_done",
        "worker",
        "retries",
        "parent_id",
        "children",
    )

    task_id: str
    state: str
    found: bool
    name: str | None = None
    args: Any = None
    kwargs: Any = None
    result: Any = None
    #: {type, message, module} for FAILURE, RETRY and REVOKED
    exception: dict[str, Any] | None = None
    traceback: str | None = None
    date_done: str | None = None
    worker: str | None = None
    retries: int | None = None
    queue: str | None = None
    parent_id: str | None = None
    group_id: str | None = None
    children: tuple[str, ...] = ()
    #: DynamoDB: the item's ttl has passed but DynamoDB has not deleted it yet
    expired: bool = False
    #: how the value was stored: json, msgpack, yaml, pickle (None when nothing is stored)
    serializer: str | None = None
    compression: str | None = None
    #: {error, size, head, compression} when the stored bytes could not be decoded
    undecodable: dict[str, Any] | None = None
    #: why the stored value could not be read as task meta (None when it could)
    problem: str | None = None
    #: bytes of the stored value (None when nothing is stored); DynamoDB refuses an item over 400 KB
    size: int | None = None

    def result_text(self) -> str:
        """The failure reason in one line (``ValueError: bad``), for messages; tables are drawn by taskctl.output."""
        if self.exception:
            exc = self.exception
            return f"{exc.get('type')}: {exc.get('message')}" if exc.get("message") else str(exc.get("type"))
        return self.state


@dataclass(frozen=True)
class StoredGroup(Model):
    """A group (``celery-taskset-meta-``) or chord counter (``chord-unlock-``) item Celery left in the store."""

    columns: ClassVar[tuple[str, ...]] = ("kind", "group_id", "members", "chord_count", "stored_at", "expired")

    kind: str
    group_id: str
    members: tuple[str, ...]
    chord_count: int | None
    stored_at: str | None
    expired: bool = False
    undecodable: dict[str, Any] | None = None
    #: why the stored value could not be read as group meta (None when it could)
    problem: str | None = None


@dataclass(frozen=True)
class ForgetReport(Model):
    """What ``result forget`` deleted (or would delete), and which ids had nothing stored."""

    forgotten: tuple[str, ...]
    missing: tuple[str, ...]
    dry_run: bool
    #: group and chord-counter items deleted with a --tree forget
    groups: tuple[str, ...] = ()
    #: ids spared by --keep (their subtrees were not walked)
    kept: tuple[str, ...] = ()
    #: results forgotten (or, with --dry-run, that would be): a forget by filters lists only the first 10,000
    count: int = 0
    #: items deleted by earlier runs with the same --checkpoint
    earlier: int = 0
    #: ``forgotten`` lists only the first 10,000 ids of a forget by filters (``count`` has them all)
    truncated: bool = False


@dataclass(frozen=True)
class ResultNode(Model):
    """A task in a result tree. ``cycle``: the id is its own ancestor (a retry lists itself as a child);
    ``repeat``: shown in full elsewhere in the tree. Neither is expanded again. ``via`` says how it was found:
    ``children``, ``group``, ``parent_id`` or ``group_id`` (the last two only with --deep)."""

    task_id: str
    state: str
    found: bool
    name: str | None = None
    result: Any = None
    exception: dict[str, Any] | None = None
    via: str | None = None
    cycle: bool = False
    repeat: bool = False
    expired: bool = False
    serializer: str | None = None
    children: tuple[ResultNode | GroupNode, ...] = ()

    #: the documented node object (README: result tree); ``expired`` and ``serializer`` are for the views only
    json_fields: ClassVar[dict[str, str | dict[str, str]]] = {
        k: k for k in ("task_id", "state", "name", "found", "result", "exception", "via", "cycle", "repeat", "children")
    }


@dataclass(frozen=True)
class GroupNode(Model):
    """A group (or chord header) in a result tree; its members are the children."""

    group_id: str
    via: str | None = None
    repeat: bool = False
    children: tuple[ResultNode | GroupNode, ...] = ()


@dataclass(frozen=True)
class TreeRow(Model):
    """One node of a result tree as a flat row (jsonl, plain, csv, tsv)."""

    columns: ClassVar[tuple[str, ...]] = (
        "depth",
        "kind",
        "id",
        "parent",
        "state",
        "name",
        "found",
        "result",
        "via",
        "cycle",
        "repeat",
    )

    depth: int
    kind: str  # task | group
    id: str
    parent: str | None
    state: str | None
    name: str | None
    found: bool | None
    result: Any
    exception: dict[str, Any] | None
    via: str | None
    cycle: bool
    repeat: bool


@dataclass(frozen=True)
class ResultTree(Model):
    """Everything Celery recorded below a root: nested for JSON, one row per node otherwise."""

    #: -o json is the root node itself, nested
    json_value: ClassVar[str | None] = "root"

    root: ResultNode | GroupNode
    #: nodes per state (each task id once)
    counts: dict[str, int]
    #: BatchGet rounds (levels) and store requests the walk needed
    levels: int = 0

    def iter_nodes(self) -> Iterator[tuple[int, str | None, ResultNode | GroupNode]]:
        """(depth, parent id, node) in pre-order, without recursion (trees can be deep)."""
        stack: list[tuple[int, str | None, ResultNode | GroupNode]] = [(0, None, self.root)]
        while stack:
            depth, parent, node = stack.pop()
            yield depth, parent, node
            own = node.task_id if isinstance(node, ResultNode) else node.group_id
            for child in reversed(node.children):
                stack.append((depth + 1, own, child))

    def rows(self) -> Iterator[TreeRow]:
        """One flat row per node, pre-order (what jsonl, plain, csv, tsv and markdown print)."""
        for depth, parent, node in self.iter_nodes():
            if isinstance(node, ResultNode):
                yield TreeRow(
                    depth,
                    "task",
                    node.task_id,
                    parent,
                    node.state,
                    node.name,
                    node.found,
                    node.result,
                    node.exception,
                    node.via,
                    node.cycle,
                    node.repeat,
                )
            else:
                yield TreeRow(
                    depth, "group", node.group_id, parent, None, None, None, None, None, node.via, False, node.repeat
                )
