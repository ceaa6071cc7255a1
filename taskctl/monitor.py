"""`events` and `top`: Celery's event stream as rows; workers, queues and tasks as a snapshot or a live view.

Workers send ``worker-*`` events (online, heartbeat every 2 s, offline) unless started with
``--without-heartbeat``, and ``task-*`` events only when started with ``-E`` or after ``enable_events``
(`taskctl worker events --enable`). Only ``task-received`` (and ``task-sent``) carry the task name, so the
name of each id is remembered from its received event (bounded; a task received before the stream started
shows no name and does not match ``--task``).
"""

from __future__ import annotations

import fnmatch
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from taskctl import backends, events, workers
from taskctl.errors import NotFoundError, OperationError, UnavailableError, UsageError
from taskctl.formats import control as fmt
from taskctl.models.worker import NO_REPLY, TopRow, WorkerEvent

if TYPE_CHECKING:
    from taskctl.config import Settings

#: task ids whose names are remembered
NAME_MEMORY = 100_000
#: seconds without a task event before saying how to turn task events on
QUIET_HINT_AFTER = 5.0
EVENTS_HINT = (
    "no task event received: workers send task events only when started with -E (celery worker -E) or after "
    "'taskctl worker events --enable' (which needs workers started without --without-heartbeat, or with -E)"
)


def _info(kind: str, f: dict[str, Any]) -> str:
    if kind == "task-received":
        text = f"args={f.get('args', '')} kwargs={f.get('kwargs', '')}"
        return text + (f" eta={f['eta']}" if f.get("eta") else "")
    if kind == "task-succeeded":
        return f"runtime={f.get('runtime')} result={f.get('result', '')}"
    if kind in ("task-failed", "task-retried"):
        return str(f.get("exception", ""))
    if kind == "task-revoked":
        return f"terminated={f.get('terminated')} signum={f.get('signum')} expired={f.get('expired')}"
    if kind.startswith("worker-"):
        return f"active={f.get('active')} processed={f.get('processed')} loadavg={f.get('loadavg')}"
    return ""


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


def stream(
    settings: Settings,
    *,
    task_glob: str | None = None,
    states: Sequence[str] = (),
    limit: int | None = None,
    timeout: float | None = None,
) -> Iterator[WorkerEvent]:
    """Events as they arrive, until ``limit`` rows were yielded or ``timeout`` seconds passed (else forever)."""
    if limit is not None and limit <= 0:
        raise UsageError("--limit must be at least 1")
    wanted = {fmt.event_type(s) for s in states}
    names: OrderedDict[str, str] = OrderedDict()
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    seen_task_event = False
    hinted = False
    shown = 0
    control = backends.open_control(settings)
    source = control.events(tick=0.25)
    try:
        for ev in source:
            now = time.monotonic()
            quiet = now - start >= QUIET_HINT_AFTER or (deadline is not None and now >= deadline)
            if not seen_task_event and not hinted and quiet:
                events.warn(EVENTS_HINT)
                hinted = True
            if ev is None:
                if deadline is not None and now >= deadline:
                    return
                continue
            seen_task_event = seen_task_event or ev.type.startswith("task-")
            name = ev.fields.get("name") if isinstance(ev.fields.get("name"), str) else None
            if ev.uuid and name:
                names[ev.uuid] = name
                if len(names) > NAME_MEMORY:
                    names.popitem(last=False)
            elif ev.uuid:
                name = names.get(ev.uuid)
            if (not wanted or ev.type in wanted) and (
                task_glob is None or (name is not None and fnmatch.fnmatchcase(name, task_glob))
            ):
                yield WorkerEvent(
                    time=_iso(ev.timestamp),
                    type=ev.type,
                    worker=ev.hostname,
                    task_id=ev.uuid,
                    name=name,
                    info=fmt.bounded(_info(ev.type, ev.fields), 500),
                    event=ev.fields,
                )
                shown += 1
                if limit is not None and shown >= limit:
                    return
            if deadline is not None and now >= deadline:
                return
    finally:
        source.close()  # ends the consumer: its queue is deleted with the connection


def _fmt(values: dict[str, Any]) -> str:
    parts = []
    for k, v in values.items():
        if v is None or k in ("state", "task_id", "exception", "worker", "time"):
            continue
        parts.append(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
    lead = " ".join(str(values[k]) for k in ("state", "worker", "task_id", "exception") if values.get(k))
    return fmt.bounded(" ".join([lead, *parts]).strip(), 300)


def _quantile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank quantile of an already sorted list."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)


def _first_load(value: Any) -> float | None:
    """The 1-minute load of a heartbeat's ``loadavg``: a list, or its text as the bounded event fields keep it."""
    if isinstance(value, list | tuple) and value:
        value = value[0]
    if isinstance(value, str):
        m = re.match(r"\s*[\[(]?\s*(\d+(?:\.\d+)?)", value)
        value = float(m[1]) if m else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value), 2)
    return None


#: seconds of events the live view's per-minute rates and runtime quantiles cover
RATE_WINDOW = 60.0
#: runtimes kept per task name within the window (the quantiles are of the newest)
RUNTIME_SAMPLES = 2000
#: task names tracked; events of further names are counted under OTHER (events are untrusted input)
MAX_TASK_NAMES = 500
OTHER = "(other)"
#: worker hostnames tracked from events; heartbeats of further ones are ignored
MAX_WORKERS = 1000
#: failures kept, newest first
FAILURES = 10
#: a worker heard from (heartbeat or reply) longer ago than this many seconds shows as NO_REPLY
LOST_AFTER = 10.0
TASK_KINDS = ("received", "succeeded", "failed", "retried")
#: what `top --sort` and the `s` key cycle through; a key sorts every section whose rows have it
SORT_KEYS = ("name", "received", "succeeded", "failed", "retried", "runtime_p50", "runtime_p95")
SECTIONS = ("worker", "queue", "task", "failure")


class Aggregate:
    """Running totals of one `top`: fed events and polled worker/queue values, read as rows (thread-safe).

    Rates are per minute over the last ``window`` seconds (or since the start, if shorter), counted at arrival
    time: worker clocks may differ from ours. Runtimes come from ``task-succeeded`` events.
    """

    def __init__(
        self,
        *,
        window: float = RATE_WINDOW,
        failures: int = FAILURES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.clock = clock
        self.started = clock()
        self._lock = threading.Lock()
        self._names: OrderedDict[str, str] = OrderedDict()
        self._tasks: dict[str, dict[str, deque[float]]] = {}
        self._runtimes: dict[str, deque[tuple[float, float]]] = {}
        self._failures: deque[TopRow] = deque(maxlen=max(0, failures))
        #: worker -> state, active, processed, load, seen (our clock), offline (bool)
        self._workers: dict[str, dict[str, Any]] = {}
        self._queues: list[TopRow] = []
        self._qcache: dict[str, tuple[tuple[int, int], float | None, float | None]] = {}
        self._appended: dict[str, int] = {}
        self.events_seen = 0
        self.task_events_seen = 0

    def _task_name(self, ev: fmt.CeleryEvent) -> str:
        given = ev.fields.get("name") if isinstance(ev.fields.get("name"), str) else None
        if ev.uuid and given:
            self._names[ev.uuid] = given
            if len(self._names) > NAME_MEMORY:
                self._names.popitem(last=False)
        name = given or (self._names.get(ev.uuid) if ev.uuid else None) or "?"
        if name not in self._tasks and len(self._tasks) >= MAX_TASK_NAMES:
            return OTHER
        return name

    def add(self, ev: fmt.CeleryEvent, now: float | None = None) -> None:
        """Count one event (at ``now``, default: the clock)."""
        t = self.clock() if now is None else now
        f = ev.fields
        with self._lock:
            self.events_seen += 1
            if ev.type.startswith("worker-"):
                if ev.hostname not in self._workers and len(self._workers) >= MAX_WORKERS:
                    return
                w = self._workers.setdefault(ev.hostname, {})
                w["seen"] = t
                w["offline"] = ev.type == "worker-offline"
                for key in ("active", "processed"):
                    if isinstance(f.get(key), int) and not isinstance(f.get(key), bool):
                        w[key] = f[key]
                load = _first_load(f.get("loadavg"))
                if load is not None:
                    w["load"] = load
                return
            if not ev.type.startswith("task-"):
                return
            self.task_events_seen += 1
            name = self._task_name(ev)
            kind = ev.type.removeprefix("task-")
            if kind in TASK_KINDS:
                counts = self._tasks.setdefault(name, {k: deque() for k in TASK_KINDS})
                counts[kind].append(t)
            runtime = f.get("runtime")
            if kind == "succeeded" and isinstance(runtime, int | float) and not isinstance(runtime, bool):
                self._runtimes.setdefault(name, deque(maxlen=RUNTIME_SAMPLES)).append((t, float(runtime)))
                self._appended[name] = self._appended.get(name, 0) + 1
            if kind == "failed":
                fv = {
                    "time": _iso(ev.timestamp),
                    "task_id": ev.uuid,
                    "worker": ev.hostname,
                    "exception": fmt.bounded(f.get("exception"), 500),
                }
                self._failures.appendleft(TopRow("failure", name, _fmt(fv), fv))

    def set_workers(
        self, stats: dict[str, Any], active: dict[str, Any], names: Sequence[str], now: float | None = None
    ) -> None:
        """One remote-control round: who answered (stats or active), their processed and active counts."""
        t = self.clock() if now is None else now
        with self._lock:
            for wname in names:
                w = self._workers.setdefault(wname, {})
                if wname in stats or wname in active:
                    w["seen"] = t
                    w["offline"] = False
                if wname in stats:
                    w["processed"] = fmt.parse_stats(stats[wname]).processed
                if wname in active:
                    w["active"] = len(fmt.parse_tasks(active[wname]))

    def set_queues(self, rows: Sequence[TopRow]) -> None:
        with self._lock:
            self._queues = list(rows)

    def _quantiles(self, name: str, samples: deque[tuple[float, float]] | None) -> tuple[float | None, float | None]:
        """p50 and p95 of the samples, sorted again only when they changed (an idle view sorts nothing)."""
        if not samples:
            return None, None
        key = (self._appended.get(name, 0), len(samples))  # appends and prunes both change it
        cached = self._qcache.get(name)
        if cached is None or cached[0] != key:
            ordered = sorted(r for _, r in samples)
            cached = self._qcache[name] = (key, _quantile(ordered, 0.5), _quantile(ordered, 0.95))
        return cached[1], cached[2]

    def rows(self, now: float | None = None) -> list[TopRow]:
        """Workers, queues, tasks (by name) and failures (newest first) as they stand at ``now``."""
        t = self.clock() if now is None else now
        span = max(1.0, min(self.window, t - self.started))
        cutoff = t - self.window
        out: list[TopRow] = []
        with self._lock:
            for wname in sorted(self._workers):
                w = self._workers[wname]
                seen = w.get("seen")
                if w.get("offline"):
                    state = "offline"
                elif seen is not None and t - seen <= LOST_AFTER:
                    state = "up"
                else:
                    state = NO_REPLY
                wv: dict[str, Any] = {
                    "state": state,
                    "active": w.get("active"),
                    "processed": w.get("processed"),
                    "load": w.get("load"),
                }
                out.append(TopRow("worker", wname, _fmt(wv), wv))
            out.extend(self._queues)
            for tname in sorted(self._tasks):
                counts = self._tasks[tname]
                v: dict[str, Any] = {}
                for kind, times in counts.items():
                    while times and times[0] < cutoff:
                        times.popleft()
                    v[kind] = round(len(times) * 60.0 / span, 2)
                samples = self._runtimes.get(tname)
                while samples and samples[0][0] < cutoff:
                    samples.popleft()
                v["runtime_p50"], v["runtime_p95"] = self._quantiles(tname, samples)
                out.append(TopRow("task", tname, _fmt(v), v))
            out.extend(self._failures)
        return out


def sort_rows(rows: Sequence[TopRow], key: str = "name") -> list[TopRow]:
    """Sections in order (workers, queues, tasks, failures); within a section whose rows have ``key``, the
    largest first (missing values last, then by name); otherwise by name. Failures stay newest first."""
    if key not in SORT_KEYS and key not in (
        "ready",
        "unacked",
        "consumers",
        "rate_in",
        "rate_out",
        "active",
        "processed",
        "load",
    ):
        raise UsageError(f"unknown sort key {key!r}", hint="use one of: " + ", ".join(SORT_KEYS))
    out: list[TopRow] = []
    for section in SECTIONS:
        part = [r for r in rows if r.kind == section]
        if section != "failure":
            part.sort(key=lambda r: r.name)
            if key != "name" and any(key in r.values for r in part):
                part.sort(key=lambda r: (r.values.get(key) is None, -float(r.values.get(key) or 0)))
        out.extend(part)
    return out


def filter_rows(rows: Sequence[TopRow], glob: str | None) -> list[TopRow]:
    """Rows whose name (worker, queue, task name; a failure's task name) matches ``glob``; a pattern without
    ``*?[`` matches anywhere in the name."""
    if not glob:
        return list(rows)
    pattern = glob if any(c in glob for c in "*?[") else f"*{glob}*"
    return [r for r in rows if fnmatch.fnmatchcase(r.name, pattern)]


def lists_queues(settings: Settings, has_management: bool) -> bool:
    """The broker lists its queues itself (Redis bindings, SQS), or RabbitMQ's management API does."""
    return has_management or backends.open_broker(settings).lists_queues


def queue_rows(settings: Settings) -> list[TopRow]:
    """Task queues as `queue list` reads them (remote-control and event queues left out)."""
    from taskctl.queues.inspect import list_queues

    rows: list[TopRow] = []
    for q in list_queues(settings):
        name = q.queue
        if name.endswith(".pidbox") or name.startswith(("celeryev.", "taskctl.events.")):
            continue  # remote-control and event queues, not task queues
        qv: dict[str, Any] = {
            "ready": q.ready,
            "unacked": q.unacked,
            "consumers": q.consumers,
            "rate_in": q.rate_in,
            "rate_out": q.rate_out,
        }
        rows.append(TopRow("queue", fmt.bounded(name, 300), _fmt(qv), qv))
    return rows


def snapshot(
    settings: Settings,
    *,
    window: float = 2.0,
    timeout: float = 1.0,
    sort: str = "name",
    glob: str | None = None,
    failures: int = FAILURES,
) -> list[TopRow]:
    """One `top` snapshot: workers (remote control), queues (RabbitMQ management API), task rates and
    failures (events received during ``window`` seconds)."""
    if window <= 0:
        raise UsageError("--window must be more than 0")
    sort_rows([], sort)  # a bad key fails before any waiting
    ins = workers.Inspector(settings, timeout=timeout)
    stats, active = ins.calls(["stats", "active"])
    agg = Aggregate(window=window, failures=failures)
    agg.set_workers(stats, active, ins.names(stats, active))
    if lists_queues(settings, ins.control.has_management):
        try:
            agg.set_queues(queue_rows(settings))
        except (UnavailableError, OperationError, NotFoundError) as exc:
            events.warn(f"queues left out: {exc}")
    deadline = time.monotonic() + window
    source = ins.control.events(tick=0.2)
    try:
        for ev in source:
            if ev is not None:
                agg.add(ev)
            if time.monotonic() >= deadline:
                break
    finally:
        source.close()
    rows = agg.rows()
    if not agg.task_events_seen:
        events.warn(EVENTS_HINT)
    return filter_rows(sort_rows(rows, sort), glob)
