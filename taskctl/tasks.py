"""Task operations: requeue dead letters and failures; revoke and the list of revoked ids (in taskctl.revokes).

Requeue applies celery-formats §5.5: body bytes, headers and properties are copied verbatim except the AMQP
``expiration`` (dropped); a past ``expires`` or ``eta`` is reported and the message skipped unless the caller
resets it. Messages are published with confirms and only then acked in the source (at least once).

``--from-results`` works through the ids in chunks: each chunk is read, published and confirmed before the next;
with ``--checkpoint`` the position in the id list is written after each chunk, so a rerun with the same ids and
file goes on after the last confirmed chunk (only the chunk in flight at a kill is published again).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from taskctl import backends, results
from taskctl.errors import ExitCode, UsageError
from taskctl.formats import message as msgfmt
from taskctl.models import Listing, Outcome, RequeuedTask
from taskctl.revokes import normalize_ids, revoke, revoked

if TYPE_CHECKING:
    from taskctl.backends.base import Publisher
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
    #: said after the rows (stderr): what earlier runs with the same --checkpoint did
    summary: str | None = None


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
        if tally.summary:  # a --checkpoint run says what earlier runs did, whatever the exit code
            outcome.message = f"{outcome.message or f'{tally.done} requeued'}; {tally.summary}"

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
    checkpoint: str | None = None,
    retries: int | None = None,
) -> Outcome:
    """Each message of SOURCE (a dead-letter queue) back to the queue it died in, or TO (taskctl.queues.requeue)."""
    from taskctl.queues import requeue as requeue_queue
    from taskctl.transfer import RETRIES

    return requeue_queue.requeue_from_queue(
        settings,
        source,
        to=to,
        limit=limit,
        task_glob=task_glob,
        reset_expiry=reset_expiry,
        dry_run=dry_run,
        checkpoint=checkpoint,
        retries=RETRIES if retries is None else retries,
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
    checkpoint: str | None = None,
) -> Outcome:
    """Rebuild each task's protocol-2 message from its ``result_extended`` meta and publish it, chunk by chunk."""
    del reset_expiry  # a stored result carries no expires/eta: nothing to reset
    if checkpoint is not None and dry_run:
        raise UsageError("--checkpoint records progress; a --dry-run makes none")
    opts = results.Options(unsafe_pickle=unsafe_pickle)
    reader = results.Reader(settings, opts)
    try:
        broker = backends.open_broker(settings)
        cp = None
        if checkpoint is not None:
            from taskctl.results.checkpoint import Checkpoint

            ids_digest = hashlib.sha256("\n".join(task_ids).encode("utf-8", "surrogateescape")).hexdigest()
            job = {
                "command": "task requeue --from-results",
                "store": reader.store.describe(),
                "broker": broker.masked_url,
                "ids": {"count": len(task_ids), "sha256": ids_digest},
                "to": to,
                "new_id": new_id,
            }
            cp = Checkpoint.open(checkpoint, job)
        start = cp.done if cp is not None else 0
        stored = reader.fetch(task_ids[start : _chunk_end(start, len(task_ids))])  # a bad store fails before rows
    except BaseException:
        reader.close()
        raise

    def gen(tally: _Tally) -> Iterator[RequeuedTask]:
        at = start
        got: dict[str, results.Fetched] | None = stored
        try:
            with ExitStack() as stack:
                pub: Publisher | None = None
                while at < len(task_ids):
                    end = _chunk_end(at, len(task_ids))
                    chunk = task_ids[at:end]
                    got = got if got is not None else reader.fetch(chunk)
                    plans = []
                    for tid in chunk:
                        tally.total += 1
                        f = got.get(tid)
                        row, raw = _plan_from_result(tid, f, to=to, new_id=new_id, unsafe_pickle=unsafe_pickle)
                        if raw is None:
                            tally.skipped += 1
                            tally.missing += f is None
                        plans.append((row, raw))
                    got = None
                    todo = [raw for _row, raw in plans if raw is not None]
                    if todo and not dry_run:
                        if pub is None:
                            pub = stack.enter_context(broker.publisher(purpose="requeue"))
                        for raw in todo:
                            pub.check_destination("", raw.routing_key)
                            pub.publish(raw, "", raw.routing_key)
                        pub.flush()
                    at = end
                    if cp is not None:
                        cp.done = at
                        cp.save()
                    for row, raw in plans:
                        tally.done += raw is not None
                        yield replace(row, action="would-requeue") if raw is not None and dry_run else row
        finally:
            reader.close()
        if cp is not None:
            tally.summary = f"{cp.earlier} of the {len(task_ids)} ids done by earlier runs with checkpoint {cp.path}"

    return _streaming(gen)


def _chunk_end(at: int, total: int) -> int:
    """Chunks start at multiples of REQUEUE_BATCH, so a resumed run cuts the id list as the first one did."""
    return min(total, (at // REQUEUE_BATCH + 1) * REQUEUE_BATCH)


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
