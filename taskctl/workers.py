"""`worker ...`: which workers are up, what they run and hold, and which queues they consume.

Every question is one remote-control round (kombu pidbox, as ``celery inspect`` asks it), but it ends as soon
as every expected worker has answered instead of always waiting ``timeout``: the broker knows which workers
exist, since each binds its pidbox queue ``<name>.<namespace>.pidbox`` to the fanout exchange
``<namespace>.pidbox`` (RabbitMQ: the management API lists the bindings; Redis and filesystem://: the
control adapter reads the transport's binding table). Without that list (no management API), a round ends
after ``timeout`` seconds without a reply, as Celery's does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from taskctl import backends, events
from taskctl.errors import NotFoundError, OperationError, UnavailableError, UsageError
from taskctl.formats import control as fmt
from taskctl.models.task import WorkerReply
from taskctl.models.worker import (
    NO_REPLY,
    ONLINE,
    ConsumerChange,
    RegisteredTask,
    Worker,
    WorkerStats,
    WorkerTask,
)

if TYPE_CHECKING:
    from taskctl.backends.base import RemoteControl
    from taskctl.config import Settings

DEFAULT_TIMEOUT = 1.0  # seconds, as `celery inspect`
TASK_KINDS = ("active", "reserved", "scheduled")
#: time_start below this is a monotonic clock (Celery < 5.5 sends it unconverted), not an epoch
_EPOCH_2001 = 1e9


def expected_workers(settings: Settings, control: RemoteControl, timeout: float) -> list[str] | None:
    """Workers bound to the pidbox exchange, or None when the broker cannot say (then rounds wait timeout)."""
    try:
        if control.lists_bound_workers:
            return control.bound_workers()
        if control.has_management:
            mgmt = backends.open_management(settings)
            mgmt.timeout = max(0.5, min(mgmt.timeout, timeout))
            queues = mgmt.bound_queues(fmt.pidbox_exchange(control.namespace))
            names = (fmt.worker_of_pidbox_queue(q, control.namespace) for q in queues)
            return sorted({n for n in names if n})
    except (UnavailableError, OperationError, NotFoundError) as exc:
        events.note(f"cannot list the workers bound to the control exchange ({exc}); waiting --timeout")
    return None


class Inspector:
    """Rounds of remote-control requests to the same workers, each ending when all expected ones answered.

    Which workers to expect is asked of the broker (management API or binding table) on a thread of its own
    while the rounds connect, so that lookup costs no time of its own when it is quicker than a connection.
    """

    def __init__(self, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT, workers: Sequence[str] = ()) -> None:
        if timeout <= 0:
            raise UsageError("--timeout must be more than 0")
        self.settings = settings
        self.timeout = timeout
        self.destination = list(dict.fromkeys(workers)) or None
        self.control = backends.open_control(settings)
        self._expected: list[str] | None = list(self.destination) if self.destination else None
        self._lookup: threading.Thread | None = None
        if self.destination is None and self.control.concurrent_rounds:
            self._lookup = threading.Thread(target=self._look_up, name="taskctl-bound-workers", daemon=True)
            self._lookup.start()
        elif self.destination is None:  # filesystem://: tables rewritten in place, not read alongside a round
            self._look_up()

    def _look_up(self) -> None:
        try:
            self._expected = expected_workers(self.settings, self.control, self.timeout)
        except Exception as exc:  # on a thread: any failure means "unknown", never a traceback
            events.note(f"cannot list the workers bound to the control exchange ({exc}); waiting --timeout")

    @property
    def expected(self) -> list[str] | None:
        """Workers expected to answer (None: unknown, so a round waits ``timeout`` without a reply)."""
        lookup = self._lookup  # rounds on several threads ask at once: join a local, never a field reset
        if lookup is not None:
            lookup.join()
        return self._expected

    def _limit(self) -> int | None:
        """Replies a round waits for, asked once its connection is open (the lookup ran meanwhile)."""
        expected = self.expected
        return len(expected) if expected else None

    def call(self, command: str, arguments: Mapping[str, Any] | None = None, *, action: str = "") -> dict[str, Any]:
        """One round: {worker: reply value} (the first reply of each worker)."""
        replies = self.control.broadcast(
            command,
            dict(arguments or {}),
            reply=True,
            timeout=self.timeout,
            destination=self.destination,
            action=action or f"ask workers for {command}",
            limit=self._limit,
        )
        out: dict[str, Any] = {}
        for r in replies:
            out.setdefault(r.worker, r.value)
        return out

    def calls(self, commands: Sequence[str]) -> list[dict[str, Any]]:
        """Several rounds at once (one connection each), so a silent worker costs one timeout, not one each."""
        if not self.control.concurrent_rounds:
            return [self.call(c) for c in commands]
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            futures = [pool.submit(self.call, c) for c in commands]
            return [f.result() for f in futures]

    def names(self, *answered: Mapping[str, Any]) -> list[str]:
        seen = set(self.expected or ())
        for a in answered:
            seen.update(a)
        return sorted(seen)


def list_workers(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT, workers: Sequence[str] = ()) -> list[Worker]:
    """Every worker: stats, active_queues and report, asked concurrently; silent bound ones as "no reply".

    A worker that answers ``stats`` is up, so no ``ping`` round is sent (one connection less per run).
    """
    ins = Inspector(settings, timeout=timeout, workers=workers)
    stats, queues, reports = ins.calls(["stats", "active_queues", "report"])
    out: list[Worker] = []
    for name in ins.names(stats, queues, reports):
        if name not in stats and name not in queues:
            out.append(Worker(worker=name, state=NO_REPLY))
            continue
        s = fmt.parse_stats(stats.get(name))
        out.append(
            Worker(
                worker=name,
                state=ONLINE,
                pid=s.pid,
                pool=s.pool,
                concurrency=s.concurrency,
                queues=tuple(fmt.parse_active_queues(queues.get(name))),
                processed=s.processed,
                version=fmt.celery_version(reports.get(name)),
                uptime=s.uptime,
                prefetch_count=s.prefetch_count,
            )
        )
    if not out:
        events.warn(f"no worker answered within {timeout:g}s")
    return out


def _iso(epoch: float | None) -> str | None:
    if epoch is None or epoch < _EPOCH_2001:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def tasks(
    settings: Settings, kind: str, *, timeout: float = DEFAULT_TIMEOUT, workers: Sequence[str] = ()
) -> Iterator[WorkerTask]:
    """Tasks the workers hold: ``active`` (running), ``reserved`` (prefetched), ``scheduled`` (ETA/countdown)."""
    if kind not in TASK_KINDS:
        raise UsageError(f"unknown kind {kind!r}", hint="one of " + ", ".join(TASK_KINDS))
    ins = Inspector(settings, timeout=timeout, workers=workers)
    # safe=True: args and kwargs as the saferepr strings the client sent (argsrepr), never the raw values
    replies = ins.call(kind, {"safe": True} if kind == "active" else {})
    now = time.time()
    for name in sorted(replies):
        for t in fmt.parse_tasks(replies[name]):
            started = _iso(t.time_start)
            runtime = round(now - t.time_start, 3) if started and t.time_start is not None else None
            yield WorkerTask(
                worker=name,
                kind=kind,
                task_id=t.task_id,
                name=t.name,
                args=t.args,
                kwargs=t.kwargs,
                started=started,
                eta=t.eta,
                runtime=runtime,
                worker_pid=t.worker_pid,
                acknowledged=t.acknowledged,
                routing_key=t.routing_key,
                exchange=t.exchange,
                priority=t.priority,
            )
    _warn_missing(ins, replies)


def held(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT, workers: Sequence[str] = ()) -> list[WorkerTask]:
    """Every task the workers hold (active, reserved, scheduled), asked in three concurrent rounds."""
    return holdings(settings, timeout=timeout, workers=workers)[0]


def holdings(
    settings: Settings, *, timeout: float = DEFAULT_TIMEOUT, workers: Sequence[str] = ()
) -> tuple[list[WorkerTask], set[str]]:
    """What the workers hold (active, reserved, scheduled) and the queues they consume, in concurrent rounds."""
    ins = Inspector(settings, timeout=timeout, workers=workers)
    rounds = ins.calls([*TASK_KINDS, "active_queues"])
    out: list[WorkerTask] = []
    for kind, replies in zip(TASK_KINDS, rounds, strict=False):
        for name in sorted(replies):
            for t in fmt.parse_tasks(replies[name]):
                out.append(
                    WorkerTask(
                        worker=name,
                        kind=kind,
                        task_id=t.task_id,
                        name=t.name,
                        args=t.args,
                        kwargs=t.kwargs,
                        started=None,
                        eta=t.eta,
                        runtime=None,
                        routing_key=t.routing_key,
                        exchange=t.exchange,
                    )
                )
    consumed = {q for value in rounds[-1].values() for q in fmt.parse_active_queues(value)}
    _warn_missing(ins, {k: v for r in rounds for k, v in r.items()})
    return out, consumed


def _warn_missing(ins: Inspector, replies: Mapping[str, Any]) -> None:
    missing = [n for n in ins.expected or () if n not in replies]
    if missing:
        events.warn(f"no reply within {ins.timeout:g}s from: {', '.join(missing)}")
    elif not replies:
        events.warn(f"no worker answered within {ins.timeout:g}s")


def registered(
    settings: Settings, *, timeout: float = DEFAULT_TIMEOUT, workers: Sequence[str] = ()
) -> Iterator[RegisteredTask]:
    """Task names each worker knows (built-ins left out, as `celery inspect registered`)."""
    ins = Inspector(settings, timeout=timeout, workers=workers)
    replies = ins.call("registered")
    for name in sorted(replies):
        for task, info in fmt.parse_registered(replies[name]):
            yield RegisteredTask(worker=name, task=task, info=info)
    _warn_missing(ins, replies)


def stats(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT, workers: Sequence[str] = ()) -> list[WorkerStats]:
    """Each worker's ``stats`` reply: pid, pool, concurrency, prefetch, processed per task name, uptime, memory."""
    ins = Inspector(settings, timeout=timeout, workers=workers)
    replies = ins.call("stats")
    out = []
    for name in sorted(replies):
        s = fmt.parse_stats(replies[name])
        out.append(
            WorkerStats(
                worker=name,
                pid=s.pid,
                pool=s.pool,
                concurrency=s.concurrency,
                prefetch_count=s.prefetch_count,
                processed=s.processed,
                uptime=s.uptime,
                maxrss_kb=s.maxrss_kb,
                total=s.total,
            )
        )
    _warn_missing(ins, replies)
    return out


def _change(
    settings: Settings,
    command: str,
    arguments: Mapping[str, Any],
    *,
    label: str,
    timeout: float,
    workers: Sequence[str],
    dry_run: bool,
) -> list[ConsumerChange]:
    if dry_run:
        targets = list(workers) or ["*"]
        return [ConsumerChange(w, label, command, True, f"would send {command}", dry_run=True) for w in targets]
    ins = Inspector(settings, timeout=timeout, workers=workers)
    replies = ins.control.broadcast(
        command,
        arguments,
        reply=True,
        timeout=timeout,
        destination=ins.destination,
        action=f"send {command}",
        limit=ins._limit,
    )
    out = [ConsumerChange(r.worker, label, command, r.ok, fmt.bounded(r.message, 500)) for r in replies]
    _warn_missing(ins, {r.worker: r for r in replies})
    return sorted(out, key=lambda c: c.worker)


def consume(
    settings: Settings,
    queue: str,
    *,
    add: bool,
    exchange: str | None = None,
    exchange_type: str | None = None,
    routing_key: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    workers: Sequence[str] = (),
    dry_run: bool = False,
) -> list[ConsumerChange]:
    """Make workers start (``add_consumer``) or stop (``cancel_consumer``) consuming QUEUE, as app.control does."""
    if add:
        command = "add_consumer"
        arguments = fmt.consumer_arguments(
            queue, exchange=exchange, exchange_type=exchange_type, routing_key=routing_key
        )
    else:
        command = "cancel_consumer"
        if not queue:
            raise UsageError("no queue name given")
        arguments = {"queue": queue}
    return _change(settings, command, arguments, label=queue, timeout=timeout, workers=workers, dry_run=dry_run)


def set_events(
    settings: Settings,
    *,
    enable: bool,
    timeout: float = DEFAULT_TIMEOUT,
    workers: Sequence[str] = (),
    dry_run: bool = False,
) -> list[WorkerReply]:
    """``enable_events`` / ``disable_events``: workers start or stop sending task events (``worker -E``)."""
    command = "enable_events" if enable else "disable_events"
    changes = _change(settings, command, {}, label="", timeout=timeout, workers=workers, dry_run=dry_run)
    return [WorkerReply(c.worker, c.ok, c.message) for c in changes]
