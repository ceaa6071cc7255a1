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

import datetime as dt
import fnmatch
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

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


def _requeue_row(raw: msgfmt.RawMessage, source: str, to: str | None) -> tuple[RequeuedTask, str | None]:
    """The row for RAW and its task name; a message that cannot be decoded still gets one (no id, no name)."""
    try:
        dec = msgfmt.decode(raw)
        task_id, task = dec.task_id, dec.task
        problem = None
    except _POISON as exc:
        task_id, task = None, None
        problem = f"undecodable ({type(exc).__name__}): requeued as raw bytes"
    try:
        target = to or _death_queue(raw)
    except _POISON:
        target = to
    return RequeuedTask(task_id, task, source, target, "requeued", note=problem), task


#: what decoding a hostile message can raise (deep nesting, bad bytes, huge numbers)
_POISON = (RecursionError, ValueError, TypeError, UnicodeError, OverflowError, KeyError)


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
    """Each message of SOURCE (a dead-letter queue) back to the queue it died in, or TO; one pass.

    Runs on taskctl.transfer: published with confirms, then acked; rows are shown once their batch is acked,
    and an error part-way first commits what was confirmed, so a rerun never publishes it again.
    """
    from taskctl.transfer import Transfer

    broker = backends.open_broker(settings)
    start = broker.stats(source)  # NotFoundError (exit 3) before anything streams
    if not start.certain and start.messages == 0:
        events.warn(f"queue {source!r} is empty or missing ({broker.scheme}:// cannot tell)")

    def matches(raw: msgfmt.RawMessage) -> bool:
        try:
            name = msgfmt.task_name(raw)
        except _POISON:
            return False
        return bool(name and task_glob and fnmatch.fnmatchcase(name, task_glob))

    def dry(tally: _Tally) -> Iterator[RequeuedTask]:
        """Nothing is published or acked: every message returns when the getter closes."""
        budget = start.messages if limit is None else min(limit, start.messages)
        now = dt.datetime.now(dt.UTC)
        with broker.getter(source, purpose="requeue dry run") as getter:
            seen = 0
            while seen < start.messages and tally.total < budget:
                d = getter.get()
                if d is None:
                    break
                seen += 1
                if task_glob and not matches(d.raw):
                    continue
                row, _ = _requeue_row(d.raw, source, to)
                tally.total += 1
                try:
                    fixed, note = _expiry_fix(d.raw, reset_expiry, now)
                except _POISON:
                    fixed, note = d.raw, None
                if row.queue is None:
                    tally.skipped += 1
                    yield replace(row, action="skipped", note="no x-death header: pass --to QUEUE")
                elif fixed is None:
                    tally.skipped += 1
                    yield replace(row, action="skipped", note=note)
                else:
                    tally.done += 1
                    yield replace(row, action="would-requeue", note=note or row.note)

    def gen(tally: _Tally) -> Iterator[RequeuedTask]:
        if dry_run:
            yield from dry(tally)
            return
        now = dt.datetime.now(dt.UTC)
        ready: list[RequeuedTask] = []

        def committed(items: list[Any]) -> None:
            for item in items:
                if isinstance(item.row, RequeuedTask):
                    if item.row.action == "requeued":
                        tally.done += 1
                    ready.append(item.row)

        with broker.publisher(purpose="requeue") as pub:
            t = Transfer(
                broker,
                source,
                commit=lambda: None,  # the publisher's confirms are the commit
                verb="requeued from",
                where=repr(source),
                limit=limit,
                select=matches if task_glob else None,
                putback=pub,
                sink=pub,
                scan=start.messages,
                batch=REQUEUE_BATCH,
                use_get=True,
                purpose="requeue",
                on_commit=committed,
            )
            with t.guard():
                for item in t:
                    row, _ = _requeue_row(item.raw, source, to)
                    tally.total += 1
                    try:
                        fixed, note = _expiry_fix(item.raw, reset_expiry, now)
                    except _POISON:
                        fixed, note = item.raw, None
                    if row.queue is None:
                        item.row = replace(row, action="skipped", note="no x-death header: pass --to QUEUE")
                        tally.skipped += 1
                        t.put_back(item)
                    elif fixed is None:
                        item.row = replace(row, action="skipped", note=note)
                        tally.skipped += 1
                        t.put_back(item)
                    else:
                        pub.check_destination("", row.queue)
                        pub.publish(msgfmt.for_republish(fixed), "", row.queue)
                        item.row = replace(row, note=note or row.note)
                    yield from ready
                    ready.clear()
            yield from ready

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
