"""Task operations: requeue dead letters and failures; revoke and the list of revoked ids (in taskctl.revokes).

Requeue applies celery-formats §5.5: body bytes, headers and properties are copied verbatim except the AMQP
``expiration`` (dropped); a past ``expires`` or ``eta`` is reported and the message skipped unless the caller
resets it. Messages are published with confirms and only then acked in the source (at least once).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from taskctl import backends, results
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
    """Each message of SOURCE (a dead-letter queue) back to the queue it died in, or TO (taskctl.queues.requeue)."""
    from taskctl.queues import requeue as requeue_queue

    return requeue_queue.requeue_from_queue(
        settings, source, to=to, limit=limit, task_glob=task_glob, reset_expiry=reset_expiry, dry_run=dry_run
    )


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
