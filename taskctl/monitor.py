"""`events`: Celery's event stream as rows, filtered by task name and state.

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

from taskctl import backends, events
from taskctl.errors import UsageError
from taskctl.formats import control as fmt
from taskctl.models.worker import WorkerEvent

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
