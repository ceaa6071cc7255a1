"""Stored results, groups, forget reports and result trees."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from taskctl.models.base import Model


def _short_cell(value: Any, limit: int = 80) -> str:
    """A result shown in one table cell: JSON, cut to LIMIT characters."""
    import json

    if value is None:
        return "-"
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=repr, sort_keys=False)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class TaskResult(Model):
    """A task's stored result as Celery stored it; ``found`` is false (and state PENDING) when nothing is stored."""

    columns: ClassVar[tuple[str, ...]] = (
        "task_id",
        "state",
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

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["children"] = list(self.children)
        return out

    def result_text(self) -> str:
        if self.undecodable:
            u = self.undecodable
            return f"<undecodable: {u.get('size')} bytes, {u.get('head')}>"
        if self.exception:
            exc = self.exception
            return f"{exc.get('type')}: {exc.get('message')}" if exc.get("message") else str(exc.get("type"))
        text = _short_cell(self.result)
        return f"pickle: {text}" if self.serializer == "pickle" and self.result is not None else text

    def cells(self) -> dict[str, Any]:
        out = super().cells()
        out["result"] = self.result_text()
        if self.expired:
            out["state"] = f"{self.state} (expired)"
        return out


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

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["members"] = list(self.members)
        return out

    def cells(self) -> dict[str, Any]:
        out = super().cells()
        out["members"] = len(self.members) if self.kind == "group" else None
        return out


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

    def to_json(self) -> dict[str, Any]:
        return {
            "forgotten": list(self.forgotten),
            "missing": list(self.missing),
            "dry_run": self.dry_run,
            "groups": list(self.groups),
            "kept": list(self.kept),
        }


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

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "state": self.state,
            "name": self.name,
            "found": self.found,
            "result": self.result,
            "exception": self.exception,
            "via": self.via,
            "cycle": self.cycle,
            "repeat": self.repeat,
            "children": [c.to_json() for c in self.children],
        }

    def label(self) -> str:
        if self.exception:
            exc = self.exception
            return f"{exc.get('type')}: {exc.get('message')}" if exc.get("message") else str(exc.get("type"))
        return _short_cell(self.result, 60) if self.result is not None else ""


@dataclass(frozen=True)
class GroupNode(Model):
    """A group (or chord header) in a result tree; its members are the children."""

    group_id: str
    via: str | None = None
    repeat: bool = False
    children: tuple[ResultNode | GroupNode, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "via": self.via,
            "repeat": self.repeat,
            "children": [c.to_json() for c in self.children],
        }


@dataclass(frozen=True)
class TreeRow(Model):
    """One node of a result tree as a flat row (jsonl, plain, csv, tsv)."""

    columns: ClassVar[tuple[str, ...]] = ("depth", "kind", "id", "parent", "state", "name", "result")

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

    def cells(self) -> dict[str, Any]:
        out = super().cells()
        if self.exception:
            out["result"] = f"{self.exception.get('type')}: {self.exception.get('message')}"
        else:
            out["result"] = _short_cell(self.result, 60)
        mark = " (cycle)" if self.cycle else " (repeat)" if self.repeat else ""
        out["id"] = f"{'  ' * self.depth}{self.id}{mark}"
        return out


@dataclass(frozen=True)
class ResultTree(Model):
    """Everything Celery recorded below a root: nested for JSON, one row per node otherwise."""

    root: ResultNode | GroupNode
    #: nodes per state (each task id once)
    counts: dict[str, int]
    #: BatchGet rounds (levels) and store requests the walk needed
    levels: int = 0

    def to_json(self) -> dict[str, Any]:
        return self.root.to_json()

    def iter_nodes(self) -> Iterator[tuple[int, str | None, ResultNode | GroupNode]]:
        """(depth, parent id, node) in pre-order, without recursion (trees can be deep)."""
        stack: list[tuple[int, str | None, ResultNode | GroupNode]] = [(0, None, self.root)]
        while stack:
            depth, parent, node = stack.pop()
            yield depth, parent, node
            own = node.task_id if isinstance(node, ResultNode) else node.group_id
            for child in reversed(node.children):
                stack.append((depth + 1, own, child))

    def flat_rows(self) -> Iterable[Model]:
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

    def count_line(self) -> str:
        return ", ".join(f"{state} {n}" for state, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def tree_lines(self) -> Iterator[list[Segment]]:
        """The table view, line by line: tree guides, labels and a per-state count (styled by the renderer)."""
        root = self.root
        yield _tree_label(root)
        stack: list[tuple[str, ResultNode | GroupNode, bool]] = [
            ("", c, i == len(root.children) - 1) for i, c in reversed(list(enumerate(root.children)))
        ]
        while stack:
            prefix, node, last = stack.pop()
            yield [(prefix + ("└── " if last else "├── "), "dim"), *_tree_label(node)]
            inner = prefix + ("    " if last else "│   ")
            n = len(node.children)
            for i in range(n - 1, -1, -1):
                stack.append((inner, node.children[i], i == n - 1))
        counts = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        line: list[Segment] = []
        for state, n in counts:
            line += [("  ", None)] if line else []
            line.append((f"{state} {n}", state))
        yield line


#: a piece of a tree line: text and a style, either a state name (coloured by the renderer) or a rich style
Segment = tuple[str, str | None]


def _tree_label(node: ResultNode | GroupNode) -> list[Segment]:
    if isinstance(node, GroupNode):
        label: list[Segment] = [("group ", "bold"), (node.group_id, "cyan")]
        return [*label, (" (repeat)", "dim")] if node.repeat else label
    state = node.state if node.found else "PENDING (not stored)"
    parts: list[Segment] = [(node.task_id, None), (state, node.state)]
    if node.name:
        parts.append((node.name, "bold"))
    extra = node.label()
    if extra:
        parts.append((extra, "red" if node.exception else "dim"))
    if node.cycle:
        parts.append(("(cycle: its own ancestor)", "yellow"))
    elif node.repeat:
        parts.append(("(shown above)", "dim"))
    if node.via in ("parent_id", "group_id"):
        parts.append((f"[via {node.via}]", "dim"))
    out: list[Segment] = []
    for seg in parts:
        out += [(" ", None), seg] if out else [seg]
    return out
