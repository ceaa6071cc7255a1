"""Task operations: requeue dead letters and failures; revoke and the list of revoked ids (in taskctl.revokes).

Requeue applies celery-formats §5.5: body bytes, headers and properties are copied verbatim except the AMQP
``expiration`` (dropped); a past ``expires`` or ``eta`` is reported and the message skipped unless the caller
resets it. Messages are published with confirms and only then acked in the source (at least once).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from taskctl import backends, events, results
from taskctl.errors import ExitCode
from taskctl.formats import message as msgfmt
from taskctl.models import Listing, Outcome, RequeuedTask
from taskctl.revokes import normalize_ids, revoke, revoked

if TYPE_CHECKING:
    from taskctl.config import Settings

__all__ = ["normalize_ids", "requeue_from_queue", "requeue_from_results", "revoke", "revoked"]

#: states a stored failure can be requeued from (anything else may still be queued or running)
REQUEUABLE_STATES = frozenset({"FAILURE", "REVOKED", "REJECTED"})
#: messages published before their confirms are awaited and the source acked (duplicates after a kill <= this)
REQUEUE_BATCH = 200


# -- requeue ---------------------------------------------------------------------------------------------------


@dataclass
class _Tally:
    done: int = 0
    skipped: int = 0
    missing: int = 0
    total: int = 0


def _streaming(gen: Callable[[_Tally], Iterator[RequeuedTask]]) -> Outcome:
    """Rows stream as they happen; the exit code is settled after the last row (1 when any was skipped)."""
    tally = _Tally()
    outcome = Outcome(value=None)

    def rows() -> Iterator[RequeuedTask]:
        yield from gen(tally)
        if tally.skipped:
            outcome.exit_code = ExitCode.FAILED
            if tally.missing and tally.missing == tally.total:
                outcome.exit_code = ExitCode.NOT_FOUND
            outcome.message = f"{tally.skipped} not requeued (see the note column), {tally.done} requeued"

    outcome.value = Listing(model=RequeuedTask, items=rows())
    return outcome


def _past(value: Any, now: dt.datetime) -> bool:
    t = msgfmt.parse_time(value)
    return t is not None and t <= now


def _expiry_fix(raw: msgfmt.RawMessage, reset: bool, now: dt.datetime) -> tuple[msgfmt.RawMessage | None, str | None]:
    """The message to publish (None: skip) and a note, after the §5.5 expires/eta check."""
    problems = msgfmt.republish_problems(raw, now)
    if not problems:
        return raw, None
    if not reset:
        return None, "; ".join(problems) + " (--reset-expiry to run it now)"
    headers = dict(raw.headers or {})
    if "task" not in headers:
        return None, "protocol 1 message: its expires/eta live in the body and are not rewritten"
    cleared = [h for h in ("expires", "eta") if _past(headers.get(h), now)]
    for h in cleared:
        headers[h] = None
    return replace(raw, headers=headers), "cleared past " + " and ".join(cleared)


def _death_queue(raw: msgfmt.RawMessage) -> str | None:
    """The queue RabbitMQ dead-lettered the message from: the newest ``x-death`` entry's ``queue``."""
    deaths = (raw.headers or {}).get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        q = deaths[0].get("queue")
        if isinstance(q, bytes):
            q = q.decode("utf-8", "replace")
        return str(q) if q else None
    first = (raw.headers or {}).get("x-first-death-queue")
    return str(first) if first else None


def requeue_from_queue(
    settings: Settings,
    source: str,
    *,
    to: str | None = None,
    limit: int | None = None,
    task_glob: str | None = None,
    reset_expiry: bool = False,
    dry_run: bool = False,
) -> Outcome:
    """Each message of SOURCE (a dead-letter queue) back to the queue it died in, or TO; one pass."""
    broker = backends.open_broker(settings)
    start = broker.stats(source)  # NotFoundError (exit 3) before anything streams
    if not start.certain and start.messages == 0:
        events.warn(f"queue {source!r} is empty or missing ({broker.scheme}:// cannot tell)")

    def gen(tally: _Tally) -> Iterator[RequeuedTask]:
        budget = start.messages if limit is None else min(limit, start.messages)
        now = dt.datetime.now(dt.UTC)
        with broker.getter(source, purpose="requeue") as getter, broker.publisher(purpose="requeue") as pub:
            # (delivery, row or None for a message another --task glob left alone)
            pending: list[tuple[Any, RequeuedTask | None]] = []

            def commit() -> Iterator[RequeuedTask]:
                """Confirms first, then one ack up to the last message: a kill in between duplicates, never loses."""
                if not pending:
                    return
                pub.flush()
                getter.ack_upto(pending[-1][0])
                for _, row in pending:
                    if row is None:
                        continue
                    if row.action == "requeued":
                        tally.done += 1
                    yield row
                pending.clear()

            def keep(d: Any, row: RequeuedTask | None) -> None:
                """Back to the tail of SOURCE (published, then acked with the rest): one pass, nothing re-read."""
                if row is not None:
                    tally.skipped += 1
                if not dry_run:
                    pub.publish(msgfmt.for_republish(d.raw), "", source)
                pending.append((d, row))

            seen = 0
            taken = 0
            while seen < start.messages and taken < budget:
                d = getter.get()
                if d is None:
                    break
                seen += 1
                dec = msgfmt.decode(d.raw)
                if task_glob and not (dec.task and fnmatch.fnmatchcase(dec.task, task_glob)):
                    keep(d, None)
                else:
                    taken += 1
                    tally.total += 1
                    target = to or _death_queue(d.raw)
                    row = RequeuedTask(dec.task_id, dec.task, source, target, "requeued")
                    fixed, note = _expiry_fix(d.raw, reset_expiry, now)
                    if target is None:
                        keep(d, replace(row, action="skipped", note="no x-death header: pass --to QUEUE"))
                    elif fixed is None:
                        keep(d, replace(row, action="skipped", note=note))
                    elif dry_run:
                        pending.append((d, replace(row, action="would-requeue", note=note)))
                        tally.done += 1
                    else:
                        pub.check_destination("", target)
                        pub.publish(msgfmt.for_republish(fixed), "", target)
                        pending.append((d, replace(row, note=note)))
                if dry_run:
                    # nothing is published or acked: every message returns when the channel closes
                    yield from (row for _, row in pending if row is not None)
                    pending.clear()
                elif len(pending) >= REQUEUE_BATCH:
                    yield from commit()
            yield from commit()

    return _streaming(gen)


def requeue_from_results(
    settings: Settings,
    task_ids: Sequence[str],
    *,
    to: str | None = None,
    new_id: bool = False,
    reset_expiry: bool = False,
    unsafe_pickle: bool = False,
    dry_run: bool = False,
) -> Outcome:
    """Rebuild each task's protocol-2 message from its ``result_extended`` meta and publish it."""
    with results.Reader(settings, results.Options(unsafe_pickle=unsafe_pickle)) as reader:
        stored = reader.fetch(task_ids)
    broker = backends.open_broker(settings)
    del reset_expiry  # a stored result carries no expires/eta: nothing to reset

    def gen(tally: _Tally) -> Iterator[RequeuedTask]:
        plans: list[tuple[RequeuedTask, msgfmt.RawMessage | None]] = []
        for tid in task_ids:
            tally.total += 1
            row, raw = _plan_from_result(tid, stored.get(tid), to=to, new_id=new_id, unsafe_pickle=unsafe_pickle)
            if raw is None:
                tally.skipped += 1
                tally.missing += stored.get(tid) is None
            plans.append((row, raw))
        todo = [(row, raw) for row, raw in plans if raw is not None]
        if dry_run or not todo:
            for row, raw in plans:
                tally.done += raw is not None
                yield replace(row, action="would-requeue") if raw is not None and dry_run else row
            return
        with broker.publisher(purpose="requeue") as pub:
            for _row, raw in todo:
                pub.check_destination("", raw.routing_key)
                pub.publish(raw, "", raw.routing_key)
            pub.flush()
        for row, raw in plans:
            tally.done += raw is not None
            yield row

    return _streaming(gen)


def _plan_from_result(
    task_id: str, stored: results.Fetched | None, *, to: str | None, new_id: bool, unsafe_pickle: bool
) -> tuple[RequeuedTask, msgfmt.RawMessage | None]:
    row = RequeuedTask(task_id, None, "results", to, "skipped")
    if stored is None:
        return replace(row, note="no stored result for this id"), None
    if stored.decoded.serializer == "pickle" and not unsafe_pickle:
        return replace(
            row, note="the result meta is pickled: pass --unsafe-pickle to read it (trusted data only)"
        ), None
    meta = stored.meta
    if meta is None:
        return replace(row, note=f"stored result unreadable: {stored.decoded.error}"), None
    row = replace(row, task=meta.name)
    if meta.name is None:
        return replace(
            row,
            note="the result has no task name, args or queue: the workers did not run with result_extended=True",
        ), None
    if meta.status == "SUCCESS" and not new_id:
        return replace(row, note="already SUCCESS: a re-run's result would not be stored (use --new-id)"), None
    if meta.status not in REQUEUABLE_STATES and meta.status != "SUCCESS":
        return replace(row, note=f"state {meta.status}: it may still be queued or running"), None
    args, kwargs = meta.args, meta.kwargs
    if isinstance(args, tuple):
        args = list(args)
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return replace(row, note="stored args/kwargs are not a list and a dict"), None
    queue = to or meta.queue or "celery"
    publish_id = str(uuid.uuid4()) if new_id else task_id
    try:
        raw = msgfmt.build_task_message(
            meta.name,
            args,
            kwargs,
            task_id=publish_id,
            queue=queue,
            group_id=meta.group_id,
            parent_id=meta.parent_id,
        )
    except (TypeError, ValueError) as exc:
        return replace(row, queue=queue, note=f"args cannot be sent as JSON: {exc}"), None
    note = None if meta.queue or to else "no queue stored: sent to 'celery'"
    return replace(row, queue=queue, action="requeued", note=note, new_id=publish_id if new_id else None), raw
