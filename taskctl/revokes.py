"""`task revoke` and `task revoked`: Celery's revoke broadcast, plus REVOKED stored where a worker would store it.

A revoke broadcast reaches only the workers online at that moment and lives in their memory only
(celery-formats §6.4), so ``revoke`` also stores REVOKED in the result backend the way a Celery 5.7 worker does:
only over PENDING (or no result), RECEIVED, RETRY or REJECTED, never over a ready state (SUCCESS, FAILURE,
REVOKED) nor over a state some worker set while running it (STARTED, PROGRESS, ...). What is stored is read
through :class:`taskctl.results.Reader`, as `result show` reads it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import TYPE_CHECKING

from taskctl import backends, events, results, workers
from taskctl.errors import UsageError
from taskctl.formats import control as ctlfmt
from taskctl.formats import result as resfmt
from taskctl.models import Listing, RevokedTask, RevokeMatch, RevokeReport, WorkerReply
from taskctl.urls import mask

if TYPE_CHECKING:
    from taskctl.config import Settings

#: states a Celery 5.7 worker overwrites with REVOKED when it gets a revoke (worker/control.py _revoke)
MARKABLE_STATES = frozenset({"PENDING", "RECEIVED", "RETRY", "REJECTED"})
READY_STATES = resfmt.READY_STATES


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
    return results.revoke_targets(settings, roots)


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
    reader = None
    backend_label = "skipped" if not mark else "none"
    if mark and settings.backend:
        backend_label = mask(settings.backend)
        reader = results.Reader(settings)
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
        if reader is not None:
            # read after the broadcast: workers that got it may have written REVOKED already
            stored = reader.fetch(ids)
            for tid in ids:
                s = stored.get(tid)
                state = s.meta.status if s is not None and s.meta is not None else "PENDING"
                if s is not None and s.meta is None:
                    events.warn(f"result of {tid} is unreadable ({s.decoded.error}); left as it is")
                    running.append(tid)
                elif state in READY_STATES:
                    ready.append(tid)
                elif state not in MARKABLE_STATES:
                    running.append(tid)
                elif dry_run or _mark_revoked(reader, tid, s, settings):
                    marked.append(tid)
                else:
                    running.append(tid)
    finally:
        if reader is not None:
            reader.close()
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


def _mark_revoked(reader: results.Reader, task_id: str, stored: results.Fetched | None, settings: Settings) -> bool:
    """Store REVOKED over what is there; False (left as it is) when its children nest too deep to re-encode."""
    store = reader.store
    key = stored.item.key if stored is not None else reader.keys.task_keys(task_id)[0]
    try:
        meta = resfmt.revoked_meta(task_id, previous=stored.meta if stored is not None else None)
        serializer = (stored.decoded.serializer if stored is not None else None) or reader.serializer or "json"
        value = resfmt.encode_payload(meta, serializer)
    except RecursionError:
        events.warn(f"result of {task_id} nests its children too deeply to rewrite; left as it is")
        return False
    # a new key gets Celery's result_expires (1 day by default); an existing one keeps its expiry
    ttl = None if stored is not None else int(settings.extra.get("result_expires", 86400))
    store.put(key, value, ttl_seconds=ttl)
    if store.supports_pubsub:
        # Celery's Redis backend publishes every stored state on the key's channel: a client in .get() wakes
        store.publish(key, value)
    return True


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


def select(
    settings: Settings,
    *,
    task_glob: str | None = None,
    root: str | None = None,
    queue: str | None = None,
    timeout: float = 1.0,
) -> list[RevokeMatch]:
    """Tasks matching every selector given, with where each was found.

    ``--task`` and ``--queue`` look at what online workers hold (active, reserved, scheduled; the queue is
    the routing key or exchange the message was delivered with, the queue name under Celery's default
    routing). ``--root`` takes the root and every unfinished task of its result tree from the result backend
    (workers do not report a task's root id); with ``--task``/``--queue`` too, only the held tasks among them.
    """
    if not (task_glob or root or queue):
        raise UsageError("give task ids, or a selector: --task GLOB, --root ID, --queue Q")
    found: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    tree: set[str] | None = None
    if root:
        root_id = ctlfmt.normalize_task_id(root, any_id=True)
        tree = set(results.revoke_targets(settings, [root_id]))
        for tid in sorted(tree):
            found.setdefault(tid, []).append(f"result tree of {root_id}")
    if task_glob or queue:
        held: dict[str, list[str]] = {}
        for t in workers.held(settings, timeout=timeout):
            if task_glob and not fnmatch.fnmatchcase(t.name, task_glob):
                continue
            if queue and queue not in (t.routing_key, t.exchange):
                continue
            if tree is not None and t.task_id not in tree:
                continue
            held.setdefault(t.task_id, []).append(f"{t.kind} on {t.worker}")
            names[t.task_id] = t.name
        # every selector must match: with --root, its tree narrowed to what workers hold
        found = held if tree is None else {tid: found[tid] + where for tid, where in held.items()}
    return [RevokeMatch(task_id=tid, name=names.get(tid), found=tuple(where)) for tid, where in found.items()]
