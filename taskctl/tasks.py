"""Task operations: revoke (remote control + result backend), list revoked ids, requeue dead letters and failures.

A revoke broadcast reaches only the workers online at that moment and lives in their memory only
(celery-formats §6.4), so ``revoke`` also stores REVOKED in the result backend the way a Celery 5.7 worker does:
only over PENDING (or no result), RECEIVED, RETRY or REJECTED, never over a ready state (SUCCESS, FAILURE,
REVOKED) nor over a state some worker set while running it (STARTED, PROGRESS, ...).

Requeue applies celery-formats §5.5: body bytes, headers and properties are copied verbatim except the AMQP
``expiration`` (dropped); a past ``expires`` or ``eta`` is reported and the message skipped unless the caller
resets it. Messages are published with confirms and only then acked in the source (at least once).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from taskctl import backends, events, results
from taskctl.errors import ExitCode, UsageError
from taskctl.formats import control as ctlfmt
from taskctl.formats import message as msgfmt
from taskctl.formats import result as resfmt
from taskctl.models import Listing, Outcome, RequeuedTask, RevokedTask, RevokeReport, WorkerReply
from taskctl.urls import mask

if TYPE_CHECKING:
    from taskctl.backends.base import ResultStore
    from taskctl.config import Settings

#: states a Celery 5.7 worker overwrites with REVOKED when it gets a revoke (worker/control.py _revoke)
MARKABLE_STATES = frozenset({"PENDING", "RECEIVED", "RETRY", "REJECTED"})
READY_STATES = resfmt.READY_STATES
#: states a stored failure can be requeued from (anything else may still be queued or running)
REQUEUABLE_STATES = frozenset({"FAILURE", "REVOKED", "REJECTED"})
#: messages published before their confirms are awaited and the source acked (duplicates after a kill <= this)
REQUEUE_BATCH = 200


# -- result meta ------------------------------------------------------------------------------------------


def _scheme(settings: Settings) -> resfmt.KeyScheme:
    prefix = settings.key_prefix or settings.result_transport_options.get("global_keyprefix")
    return resfmt.KeyScheme(str(prefix) if prefix else None)


@dataclass
class _Stored:
    key: str
    meta: resfmt.TaskMeta | None
    serializer: str | None
    error: str | None


def _load(
    store: ResultStore, ids: Sequence[str], settings: Settings, *, unsafe_pickle: bool = False
) -> dict[str, _Stored]:
    """The stored meta of each id that has one (first matching key spelling wins)."""
    scheme = _scheme(settings)
    keys = {k: i for i in ids for k in scheme.task_keys(i)}
    found = store.get_many(list(keys))
    out: dict[str, _Stored] = {}
    for key, tid in keys.items():
        item = found.get(key)
        if item is None or tid in out or item.value is None:
            continue
        dec = resfmt.decode_payload(item.value, settings.serializer, unsafe_pickle=unsafe_pickle)
        meta = resfmt.parse_task_meta(dec.value, tid) if dec.ok else None
        err = dec.error or (None if meta is not None else "not task meta")
        out[tid] = _Stored(key, meta, dec.serializer, err)
    return out


# -- revoke ---------------------------------------------------------------------------------------------------


def normalize_ids(raw_ids: Sequence[str], *, any_id: bool = False) -> list[str]:
    """Task ids from user input, de-duplicated in order; a usage error (exit 2) names the first bad one."""
    ids: list[str] = []
    for raw in raw_ids:
        tid = ctlfmt.normalize_task_id(raw, any_id=any_id)
        if tid not in ids:
            ids.append(tid)
    if not ids:
        raise UsageError("no task ids given", hint="pass one or more ids, or '-' to read them from stdin")
    return ids


def _tree_ids(settings: Settings, roots: Sequence[str]) -> list[str]:
    """The roots plus every task below them in their result trees whose stored state is not ready."""
    ids = list(roots)
    for tid in results.unfinished_ids(settings, roots):
        if tid not in ids:
            ids.append(tid)
    return ids


def revoke(
    settings: Settings,
    task_ids: Sequence[str],
    *,
    terminate: bool = False,
    signal: str | None = None,
    tree: bool = False,
    reply_timeout: float = 1.0,
    mark: bool = True,
    dry_run: bool = False,
) -> RevokeReport:
    """Broadcast Celery's revoke for TASK_IDS and mark them REVOKED in the result backend where Celery would."""
    sig = ctlfmt.normalize_signal(signal)
    ids = _tree_ids(settings, task_ids) if tree else list(task_ids)
    store = None
    backend_label = "skipped" if not mark else "none"
    if mark and settings.backend:
        backend_label = mask(settings.backend)
        store = backends.result_store(settings)
    replies: list[ctlfmt.Reply] = []
    marked: list[str] = []
    ready: list[str] = []
    running: list[str] = []
    try:
        if not dry_run:
            replies = backends.open_control(settings).revoke(
                ids, terminate=terminate, signal=sig, timeout=reply_timeout
            )
            if reply_timeout > 0 and not replies:
                events.warn(
                    f"no worker replied within {reply_timeout:g}s: only workers online now get a revoke; "
                    "a worker started later runs these tasks if their messages are still queued"
                )
        if store is not None:
            # read after the broadcast: workers that got it may have written REVOKED already
            stored = _load(store, ids, settings)
            for tid in ids:
                s = stored.get(tid)
                state = s.meta.status if s is not None and s.meta is not None else "PENDING"
                if s is not None and s.meta is None:
                    events.warn(f"result of {tid} is unreadable ({s.error}); left as it is")
                    running.append(tid)
                elif state in READY_STATES:
                    ready.append(tid)
                elif state not in MARKABLE_STATES:
                    running.append(tid)
                else:
                    if not dry_run:
                        _mark_revoked(store, tid, s, settings)
                    marked.append(tid)
    finally:
        if store is not None:
            store.close()
    return RevokeReport(
        revoked=tuple(ids),
        marked=tuple(marked),
        skipped_ready=tuple(ready),
        skipped_running=tuple(running),
        replies=tuple(WorkerReply(r.worker, r.ok, r.message) for r in replies),
        terminate=terminate,
        signal=sig,
        backend=backend_label,
        dry_run=dry_run,
    )


def _mark_revoked(store: ResultStore, task_id: str, stored: _Stored | None, settings: Settings) -> None:
    key = stored.key if stored is not None else _scheme(settings).task_keys(task_id)[0]
    meta = resfmt.revoked_meta(task_id, previous=stored.meta if stored is not None else None)
    serializer = (stored.serializer if stored is not None else None) or settings.serializer or "json"
    value = resfmt.encode_payload(meta, serializer)
    # a new key gets Celery's result_expires (1 day by default); an existing one keeps its expiry
    ttl = None if stored is not None else int(settings.extra.get("result_expires", 86400))
    store.put(key, value, ttl_seconds=ttl)
    publish = getattr(store, "publish", None)
    if getattr(store, "supports_pubsub", False) and callable(publish):
        # Celery's Redis backend publishes every stored state on the key's channel: a client in .get() wakes
        publish(key, value)


def revoked(settings: Settings, *, reply_timeout: float = 1.0) -> Listing:
    """Ids the online workers hold as revoked, each once with the workers holding it."""
    replies = backends.open_control(settings).revoked(timeout=reply_timeout)
    if not replies:
        events.warn(f"no worker replied within {reply_timeout:g}s")
    holders: dict[str, list[str]] = {}
    for r in replies:
        for tid in ctlfmt.revoked_ids(r.value):
            workers = holders.setdefault(tid, [])
            if r.worker not in workers:
                workers.append(r.worker)
    items = [RevokedTask(task_id=t, workers=tuple(sorted(w))) for t, w in holders.items()]
    return Listing(model=RevokedTask, items=items, summary=f"{len(items)} ids held by {len(replies)} workers")


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
    """Each message of SOURCE (a dead-letter queue) back to the queue it died in, or TO (taskctl.requeue_queue)."""
    from taskctl import requeue_queue

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
    store = backends.result_store(settings)
    try:
        stored = _load(store, task_ids, settings, unsafe_pickle=unsafe_pickle)
    finally:
        store.close()
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
    task_id: str, stored: _Stored | None, *, to: str | None, new_id: bool, unsafe_pickle: bool
) -> tuple[RequeuedTask, msgfmt.RawMessage | None]:
    row = RequeuedTask(task_id, None, "results", to, "skipped")
    if stored is None:
        return replace(row, note="no stored result for this id"), None
    if stored.serializer == "pickle" and not unsafe_pickle:
        return replace(
            row, note="the result meta is pickled: pass --unsafe-pickle to read it (trusted data only)"
        ), None
    meta = stored.meta
    if meta is None:
        return replace(row, note=f"stored result unreadable: {stored.error}"), None
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
