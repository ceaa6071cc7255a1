"""Frozen dataclasses the operations return. Each declares its columns once; every output format reads them.

``columns`` name the attributes shown by table/plain/csv/tsv output, in order; ``to_json`` is the stable JSON
object documented in the README (by default every dataclass field). Renderers live in ``taskctl.output``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from taskctl.errors import ExitCode


class Model:
    """Base for every value a command returns."""

    #: attributes shown as columns (table, plain, csv, tsv), in order
    columns: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def cells(self) -> dict[str, Any]:
        """Values for the columns; override to format a cell differently from its JSON value."""
        return {c: getattr(self, c) for c in self.columns}

    def flat_rows(self) -> Iterable[Model] | None:
        """For nested values (trees): the rows shown by jsonl/plain/csv/tsv. None: show the object itself."""
        return None


@dataclass
class Listing:
    """A list of models of one class: streams in every format and keeps headers when empty."""

    model: type[Model]
    items: Iterable[Model]
    #: printed to stderr after the rows on a terminal (e.g. counts per state)
    summary: str | None = None

    def __iter__(self) -> Iterator[Model]:
        return iter(self.items)


@dataclass
class Outcome:
    """A value to print plus a non-zero exit code (e.g. `--check` found a problem, or ids not found)."""

    value: Any
    exit_code: ExitCode = ExitCode.OK
    #: one line for stderr explaining the exit code
    message: str | None = None


@dataclass(frozen=True)
class KeyAttr(Model):
    name: str
    type: str
    key: str


@dataclass(frozen=True)
class TableInfo(Model):
    """A DynamoDB table as Celery's DynamoDB backend sees it."""

    columns: ClassVar[tuple[str, ...]] = (
        "table",
        "status",
        "billing_mode",
        "read_capacity",
        "write_capacity",
        "celery_compatible",
        "item_count",
        "size_bytes",
        "ttl_status",
        "ttl_attribute",
    )

    table: str
    status: str
    billing_mode: str
    read_capacity: int | None
    write_capacity: int | None
    key_schema: tuple[KeyAttr, ...]
    celery_compatible: bool
    problems: tuple[str, ...]
    item_count: int | None
    size_bytes: int | None
    ttl_status: str | None
    ttl_attribute: str | None
    created: bool | None = None
    changed: bool | None = None
    dry_run: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "table": self.table,
            "status": self.status,
            "billing_mode": self.billing_mode,
            "read_capacity": self.read_capacity,
            "write_capacity": self.write_capacity,
            "key_schema": [k.to_json() for k in self.key_schema],
            "celery_compatible": self.celery_compatible,
            "problems": list(self.problems),
            "item_count": self.item_count,
            "size_bytes": self.size_bytes,
            "ttl": {"status": self.ttl_status, "attribute": self.ttl_attribute},
        }
        if self.created is not None:
            out["created"] = self.created
        if self.changed is not None:
            out["changed"] = self.changed
        if self.dry_run:
            out["dry_run"] = True
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class LocalProcess(Model):
    """One process of the local stack (`taskctl local status`)."""

    columns: ClassVar[tuple[str, ...]] = ("component", "kind", "pid", "alive", "address", "log")

    component: str
    kind: str
    pid: int | None
    alive: bool
    address: str | None
    log: str | None


@dataclass(frozen=True)
class LocalStack(Model):
    """The embedded local stack: what runs where, and what `local up`/`down` just did."""

    running: bool
    state_dir: str
    env: str
    config_file: str | None
    backend: str | None
    broker: str | None
    table: str | None
    dynamodb: LocalProcess | None
    worker: LocalProcess | None
    broker_folders: dict[str, str] = field(default_factory=dict)
    actions: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        def proc(p: LocalProcess | None) -> dict[str, Any] | None:
            if p is None:
                return None
            return {"kind": p.kind, "pid": p.pid, "alive": p.alive, "address": p.address, "log": p.log}

        return {
            "running": self.running,
            "state_dir": self.state_dir,
            "env": self.env,
            "config_file": self.config_file,
            "backend": self.backend,
            "broker": self.broker,
            "table": self.table,
            "dynamodb": proc(self.dynamodb),
            "worker": proc(self.worker),
            "broker_folders": dict(self.broker_folders),
            "actions": list(self.actions),
        }


@dataclass(frozen=True)
class Check(Model):
    """One line of `taskctl doctor`: pass, warn or fail, with a hint for anything but pass."""

    columns: ClassVar[tuple[str, ...]] = ("name", "status", "detail", "hint")

    name: str
    status: str  # "pass" | "warn" | "fail"
    detail: str
    hint: str | None = None


@dataclass(frozen=True)
class WorkerReply(Model):
    """One worker's answer to a remote-control request (`task revoke`)."""

    columns: ClassVar[tuple[str, ...]] = ("worker", "ok", "message")

    worker: str
    ok: bool
    message: str


@dataclass(frozen=True)
class RevokeReport(Model):
    """`task revoke`: what was broadcast, who answered, and what was marked REVOKED in the result backend."""

    #: ids the revoke was broadcast for (with --dry-run: would be)
    revoked: tuple[str, ...]
    #: ids stored as REVOKED in the result backend by taskctl
    marked: tuple[str, ...]
    #: ids left alone because their stored state is already ready (SUCCESS, FAILURE, REVOKED)
    skipped_ready: tuple[str, ...]
    #: ids left alone because a worker has them (STARTED or a custom state such as PROGRESS)
    skipped_running: tuple[str, ...]
    replies: tuple[WorkerReply, ...]
    terminate: bool
    signal: str
    #: "none" when no result backend is configured, "skipped" with --no-mark, else the masked backend URL
    backend: str
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "revoked": list(self.revoked),
            "marked": list(self.marked),
            "skipped_ready": list(self.skipped_ready),
            "skipped_running": list(self.skipped_running),
            "replies": [r.to_json() for r in self.replies],
            "terminate": self.terminate,
            "signal": self.signal,
            "backend": self.backend,
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True)
class RevokedTask(Model):
    """`task revoked`: one id some online worker holds as revoked, and which workers hold it."""

    columns: ClassVar[tuple[str, ...]] = ("task_id", "workers")

    task_id: str
    workers: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "workers": list(self.workers)}


@dataclass(frozen=True)
class RequeuedTask(Model):
    """`task requeue`: one message put back (or that would be, or was skipped, and why)."""

    columns: ClassVar[tuple[str, ...]] = ("task_id", "task", "source", "queue", "action", "note")

    task_id: str | None
    task: str | None
    #: the dead-letter queue, or "results" for --from-results
    source: str
    #: the queue it went (or would go) to
    queue: str | None
    #: requeued | would-requeue | skipped
    action: str
    note: str | None = None
    #: --new-id: the id the task was published under
    new_id: str | None = None


@dataclass(frozen=True)
class QueueStats(Model):
    """`queue stats`: ready messages and consumers of one queue (passive declare)."""

    columns: ClassVar[tuple[str, ...]] = ("queue", "messages", "consumers", "note")

    queue: str
    messages: int
    #: None where the transport cannot count consumers (Redis, filesystem)
    consumers: int | None
    #: "empty or missing" on transports where an empty queue does not exist
    note: str | None = None


@dataclass(frozen=True)
class BrokerQueue(Model):
    """`queue list` / `rpc list`: one queue as RabbitMQ's management API reports it."""

    columns: ClassVar[tuple[str, ...]] = ("queue", "messages", "unacked", "consumers", "idle", "type", "expires")

    queue: str
    vhost: str
    messages: int
    ready: int
    unacked: int
    consumers: int
    #: ISO-8601 UTC; None while in use
    idle_since: str | None
    idle_seconds: float | None
    type: str
    durable: bool
    auto_delete: bool
    exclusive: bool
    #: x-expires in seconds (RPC reply queues: result_expires)
    expires: float | None
    arguments: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> dict[str, Any]:
        from taskctl.units import format_duration

        c = {k: getattr(self, k, None) for k in ("queue", "messages", "unacked", "consumers", "type")}
        c["idle"] = format_duration(self.idle_seconds) if self.idle_seconds is not None else None
        c["expires"] = format_duration(self.expires) if self.expires is not None else None
        return c

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "vhost": self.vhost,
            "messages": self.messages,
            "ready": self.ready,
            "unacked": self.unacked,
            "consumers": self.consumers,
            "idle_since": self.idle_since,
            "idle_seconds": self.idle_seconds,
            "type": self.type,
            "durable": self.durable,
            "auto_delete": self.auto_delete,
            "exclusive": self.exclusive,
            "expires": self.expires,
            "arguments": self.arguments,
        }


@dataclass(frozen=True)
class PurgedQueue(Model):
    """`queue purge`: how many ready messages went (or would go, with --dry-run)."""

    columns: ClassVar[tuple[str, ...]] = ("queue", "purged", "note")

    queue: str
    purged: int
    dry_run: bool = False
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"queue": self.queue, "purged": self.purged}
        if self.dry_run:
            out["dry_run"] = True
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class QueueMessage(Model):
    """`queue peek` (and `queue drain` to stdout): one message, decoded, with the complete original message."""

    columns: ClassVar[tuple[str, ...]] = ("n", "kind", "task_id", "task", "size", "redelivered", "summary")

    n: int
    queue: str
    kind: str
    task_id: str | None
    task: str | None
    size: int
    redelivered: bool
    summary: str
    #: the drain line: decoded fields plus "message" (body base64, headers, properties, exchange, routing_key)
    record: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.record


@dataclass(frozen=True)
class DrainedLine(Model):
    """`queue drain` without --file: the drain line itself, in every output format (nothing may be lost)."""

    record: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return self.record


@dataclass(frozen=True)
class TransferSummary(Model):
    """`queue drain --file`, `queue move`, `queue publish`, `rpc drain --file`: what was done, in counts."""

    columns: ClassVar[tuple[str, ...]] = ("action", "source", "destination", "count", "put_back", "skipped", "stopped")

    action: str
    source: str
    destination: str
    #: messages written (drain), published (move/publish)
    count: int
    #: --task: non-matching messages published back to the tail of the source queue
    put_back: int = 0
    #: publish: duplicates skipped (same message id), records unreadable
    skipped: int = 0
    #: limit | idle | end | one-pass
    stopped: str | None = None
    dry_run: bool = False
    #: past expires / eta found (publish), per message one line
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action,
            "source": self.source,
            "destination": self.destination,
            "count": self.count,
            "put_back": self.put_back,
            "skipped": self.skipped,
            "stopped": self.stopped,
            "problems": list(self.problems),
        }
        if self.dry_run:
            out["dry_run"] = True
        return out


@dataclass(frozen=True)
class RpcResult(Model):
    """`rpc drain`: one result waiting in a client's reply queue."""

    columns: ClassVar[tuple[str, ...]] = ("queue", "task_id", "state", "result", "removed")

    queue: str
    task_id: str | None
    state: str | None
    result: Any
    traceback: str | None
    date_done: str | None
    #: False with --peek (left in the queue)
    removed: bool
    #: the complete original message (body base64, headers, properties, ...)
    message: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def cells(self) -> dict[str, Any]:
        c = super().cells()
        r = self.result
        if isinstance(r, dict) and "exc_type" in r:
            msg = r.get("exc_message")
            if isinstance(msg, list):
                msg = ", ".join(str(m) for m in msg)
            c["result"] = f"{r.get('exc_type')}: {msg}"
        elif self.error:
            c["result"] = self.error
        return c


# -- stored results (taskctl result ...) ------------------------------------------------------------------------


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
