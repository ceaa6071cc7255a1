"""Workers and what they hold, as their remote-control replies describe them (`taskctl worker ...`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from taskctl.models.base import Model

#: a worker bound to the pidbox exchange that did not answer within the timeout
NO_REPLY = "no reply"
ONLINE = "online"


@dataclass(frozen=True)
class Worker(Model):
    """`worker list`: one worker, from its ping, stats, active_queues and report replies."""

    columns: ClassVar[tuple[str, ...]] = (
        "worker",
        "state",
        "pid",
        "pool",
        "concurrency",
        "queues",
        "processed",
        "version",
        "uptime",
    )

    worker: str
    #: "online" (answered ping) or "no reply" (bound to the pidbox exchange, silent within --timeout)
    state: str
    pid: int | None = None
    pool: str | None = None
    concurrency: int | None = None
    queues: tuple[str, ...] = ()
    #: tasks processed since start (sum of stats "total")
    processed: int | None = None
    version: str | None = None
    #: seconds since the worker started
    uptime: float | None = None
    prefetch_count: int | None = None


@dataclass(frozen=True)
class WorkerStats(Model):
    """`worker stats`: one worker's statistics (``stats`` reply)."""

    columns: ClassVar[tuple[str, ...]] = (
        "worker",
        "pid",
        "pool",
        "concurrency",
        "prefetch_count",
        "processed",
        "uptime",
        "maxrss_kb",
    )

    worker: str
    pid: int | None
    pool: str | None
    concurrency: int | None
    prefetch_count: int | None
    processed: int | None
    uptime: float | None
    maxrss_kb: int | None
    #: tasks processed per task name
    total: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerTask(Model):
    """`worker active|reserved|scheduled`: one task a worker holds (``Request.info()``)."""

    columns: ClassVar[tuple[str, ...]] = (
        "worker",
        "kind",
        "task_id",
        "name",
        "args",
        "kwargs",
        "started",
        "eta",
        "runtime",
    )

    worker: str
    #: active, reserved or scheduled
    kind: str
    task_id: str
    name: str
    #: as Celery shows them (saferepr text, bounded)
    args: str
    kwargs: str
    #: ISO-8601 UTC the worker started it (active)
    started: str | None
    #: ISO-8601 the task waits for (scheduled)
    eta: str | None
    #: seconds since it started (active)
    runtime: float | None
    worker_pid: int | None = None
    acknowledged: bool | None = None
    routing_key: str | None = None
    exchange: str | None = None
    priority: int | None = None


@dataclass(frozen=True)
class RegisteredTask(Model):
    """`worker registered`: one task name a worker knows."""

    columns: ClassVar[tuple[str, ...]] = ("worker", "task", "info")

    worker: str
    task: str
    #: e.g. "rate_limit=10/m" (Celery's taskinfoitems)
    info: str


@dataclass(frozen=True)
class ConsumerChange(Model):
    """`worker consume --add|--cancel`: one worker's answer (or, with --dry-run, what would be sent)."""

    columns: ClassVar[tuple[str, ...]] = ("worker", "queue", "action", "ok", "message")

    worker: str
    queue: str
    #: add_consumer or cancel_consumer
    action: str
    ok: bool
    message: str
    dry_run: bool = False


@dataclass(frozen=True)
class WorkerEvent(Model):
    """`events`: one Celery event (task-received ... worker-offline), with the task name remembered by id."""

    columns: ClassVar[tuple[str, ...]] = ("time", "type", "worker", "task_id", "name", "info")

    #: ISO-8601 UTC of the event's timestamp
    time: str | None
    type: str
    worker: str
    task_id: str | None
    #: from this event, or from the task-received event seen earlier for the same id
    name: str | None
    #: one line: args on received, runtime and result on succeeded, exception on failed, ...
    info: str
    #: every field the worker sent (bounded)
    event: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RevokeMatch(Model):
    """`task revoke --task|--root|--queue --dry-run`: one task a selector matched, and where it was found."""

    columns: ClassVar[tuple[str, ...]] = ("task_id", "name", "found")

    task_id: str
    name: str | None
    #: where: "worker:<hostname>:active" (or reserved, scheduled), "queue:<name>" (a ready message), "result"
    found: tuple[str, ...]


@dataclass(frozen=True)
class TopRow(Model):
    """`top --once`: one worker, queue, task name or failure of the snapshot; ``values`` holds its numbers."""

    columns: ClassVar[tuple[str, ...]] = ("kind", "name", "summary")

    #: worker, queue, task or failure
    kind: str
    name: str
    #: the values as one line, e.g. "up active=2 processed=130 load=0.42"
    summary: str
    #: worker: state, active, processed, load; queue: ready, unacked, consumers, rate_in, rate_out (msg/s);
    #: task: received, succeeded, failed, retried (per minute over the window), runtime_p50, runtime_p95 (s);
    #: failure: task_id, worker, exception
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TopFrame:
    """`top` on a terminal: one screen of the live view, as data (taskctl.output draws it)."""

    #: workers, queues, tasks and failures, sorted and filtered
    rows: tuple[TopRow, ...]
    #: the broker (masked), refresh interval and the time of this frame
    title: str
    #: the key sorting the sections (see taskctl.monitor.SORT_KEYS)
    sort: str
    #: the glob rows are filtered by, if any
    filter: str | None = None
    #: the glob being typed after "/" (None when not typing)
    prompt: str | None = None
    #: one line per failing source or missing feature (a broken broker, events off)
    problems: tuple[str, ...] = ()
