"""`events` and `top --once`: Celery's event stream as rows, and one snapshot of workers, queues and tasks.

Workers send ``worker-*`` events (online, heartbeat every 2 s, offline) unless started with
``--without-heartbeat``, and ``task-*`` events only when started with ``-E`` or after ``enable_events``
(`taskctl worker events --enable`). Only ``task-received`` (and ``task-sent``) carry the task name, so the
name of each id is remembered from its received event (bounded; a task received before the stream started
shows no name and does not match ``--task``).
"""

from __future__ import annotations

import fnmatch
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from taskctl import backends, events, workers
from taskctl.errors import NotFoundError, OperationError, UnavailableError, UsageError
from taskctl.formats import control as fmt
from taskctl.models.worker import TopRow, WorkerEvent

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
        if v is None or k in ("state", "task_id", "exception", "worker"):
            continue
        parts.append(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
    lead = " ".join(str(values[k]) for k in ("state", "worker", "task_id", "exception") if values.get(k))
    return fmt.bounded(" ".join([lead, *parts]).strip(), 300)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)


def snapshot(settings: Settings, *, window: float = 2.0, timeout: float = 1.0) -> list[TopRow]:
    """One `top` snapshot: workers (remote control), queues (RabbitMQ management API), task rates and
    failures (events received during ``window`` seconds)."""
    if window <= 0:
        raise UsageError("--window must be more than 0")
    ins = workers.Inspector(settings, timeout=timeout)
    stats, active = ins.calls(["stats", "active"])
    rows: list[TopRow] = []
    queue_rows: list[TopRow] = []
    if ins.control.has_management:
        try:
            for q in backends.open_management(settings).iter_queues():
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
                queue_rows.append(TopRow("queue", fmt.bounded(name, 300), _fmt(qv), qv))
        except (UnavailableError, OperationError, NotFoundError) as exc:
            events.warn(f"queues left out: {exc}")
    per_task: dict[str, dict[str, int]] = {}
    runtimes: dict[str, list[float]] = {}
    loads: dict[str, float] = {}
    failures: list[TopRow] = []
    names: dict[str, str] = {}
    deadline = time.monotonic() + window
    source = ins.control.events(tick=0.2)
    try:
        for ev in source:
            if ev is not None:
                f = ev.fields
                if ev.type == "worker-heartbeat" and isinstance(f.get("loadavg"), list) and f["loadavg"]:
                    load = f["loadavg"][0]
                    if isinstance(load, int | float):
                        loads[ev.hostname] = float(load)
                given = f.get("name") if isinstance(f.get("name"), str) else None
                if ev.uuid and given:
                    names[ev.uuid] = given
                name = given or (names.get(ev.uuid) if ev.uuid else None) or "?"
                kind = ev.type.removeprefix("task-")
                if kind in ("received", "succeeded", "failed", "retried"):
                    counts = per_task.setdefault(name, {"received": 0, "succeeded": 0, "failed": 0, "retried": 0})
                    counts[kind] += 1
                if ev.type == "task-succeeded" and isinstance(f.get("runtime"), int | float):
                    runtimes.setdefault(name, []).append(float(f["runtime"]))
                if ev.type == "task-failed":
                    fv = {"task_id": ev.uuid, "worker": ev.hostname, "exception": f.get("exception")}
                    failures.append(TopRow("failure", name, _fmt(fv), fv))
            if time.monotonic() >= deadline:
                break
    finally:
        source.close()
    for wname in ins.names(stats, active):
        s = fmt.parse_stats(stats.get(wname))
        up = wname in stats or wname in active
        wv: dict[str, Any] = {
            "state": "up" if up else "no reply",
            "active": len(fmt.parse_tasks(active.get(wname))) if wname in active else None,
            "processed": s.processed,
            "load": loads.get(wname),
        }
        rows.append(TopRow("worker", wname, _fmt(wv), wv))
    rows.extend(queue_rows)
    scale = 60.0 / window
    for tname in sorted(per_task):
        c = per_task[tname]
        v: dict[str, Any] = {k: round(n * scale, 2) for k, n in c.items()}
        v["runtime_p50"] = _quantile(runtimes.get(tname, []), 0.5)
        v["runtime_p95"] = _quantile(runtimes.get(tname, []), 0.95)
        rows.append(TopRow("task", tname, _fmt(v), v))
    if not per_task:
        events.warn(EVENTS_HINT)
    rows.extend(failures)
    return rows
