"""`task revoke` and `task revoked`: Celery's revoke broadcast, plus REVOKED stored where a worker would store it.

A revoke broadcast reaches only the workers online at that moment and lives in their memory only
(celery-formats §6.4), so ``revoke`` also stores REVOKED in the result backend the way a Celery 5.7 worker does:
only over PENDING (or no result), RECEIVED, RETRY or REJECTED, never over a ready state (SUCCESS, FAILURE,
REVOKED) nor over a state some worker set while running it (STARTED, PROGRESS, ...). What is stored is read
through :class:`taskctl.results.Reader`, as `result show` reads it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taskctl import backends, events, results, workers
from taskctl.errors import TaskctlError, UsageError
from taskctl.formats import control as ctlfmt
from taskctl.formats import message as msgfmt
from taskctl.formats import result as resfmt
from taskctl.formats.message import RawMessage
from taskctl.models import Listing, RevokedTask, RevokeMatch, RevokeReport, WorkerReply
from taskctl.results.walk import state_of
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


#: messages read per queue, and stored results read for --task, before a selector stops looking (--scan)
DEFAULT_SCAN = 10_000
#: longest task name or root id read from a queued message's headers (stored data is untrusted)
_MAX_HEADER = 500


@dataclass
class _Candidate:
    """What the sources told of one task: its names, the queues it was in, whether it belongs to --root."""

    names: list[str] = field(default_factory=list)
    queues: set[str] = field(default_factory=set)
    in_root: bool = False
    found: list[str] = field(default_factory=list)

    def add(
        self, where: str, *, name: str | None = None, queues: Sequence[str | None] = (), in_root: bool = False
    ) -> None:
        if where not in self.found:
            self.found.append(where)
        if name and name not in self.names:
            self.names.append(name)
        self.queues.update(q for q in queues if q)
        self.in_root = self.in_root or in_root


@dataclass(frozen=True)
class _Selectors:
    task_glob: str | None
    root: str | None
    queue: str | None

    def matches(self, c: _Candidate) -> bool:
        """Every selector given holds, each by what some source knows (unknown never matches)."""
        if self.task_glob and not any(fnmatch.fnmatchcase(n, self.task_glob) for n in c.names):
            return False
        if self.queue and self.queue not in c.queues:
            return False
        return not (self.root and not c.in_root)


def select(
    settings: Settings,
    *,
    task_glob: str | None = None,
    root: str | None = None,
    queue: str | None = None,
    timeout: float = 1.0,
    scan: int = DEFAULT_SCAN,
) -> list[RevokeMatch]:
    """Tasks matching every selector given, each with where it was found.

    Three sources: what online workers hold (``worker:<hostname>:active|reserved|scheduled``), the ready
    messages of the queues (``queue:<name>``: ``--queue``, else the queues the workers consume, else
    ``celery``; read by peeking, never consumed nor reordered, at most SCAN per queue) and the result backend
    (``result``: the workflow's tree with ``--root``; with ``--task``, stored results that carry a task name,
    which workers write with ``result_extended``). Workers do not report a task's root id: with ``--root``,
    a held task matches when it is in the stored tree.
    """
    if not (task_glob or root or queue):
        raise UsageError("give task ids, or a selector: --task GLOB, --root ID, --queue Q")
    if scan < 1:
        raise UsageError("--scan must be at least 1")
    root_id = ctlfmt.normalize_task_id(root, any_id=True) if root else None
    sel = _Selectors(task_glob, root_id, queue)
    found: dict[str, _Candidate] = {}
    tree = _stored_tree(settings, root_id) if root_id else {}
    consumed = _from_workers(settings, sel, tree, found, timeout)
    queues = [queue] if queue else sorted(consumed) or ["celery"]
    for q in queues:
        _from_queue(settings, q, sel, tree, found, scan)
    for tid, (name, rq) in tree.items():
        found.setdefault(tid, _Candidate()).add("result", name=name, queues=[rq], in_root=True)
    if task_glob and not root_id:
        _from_results(settings, sel, found, scan)
    return [
        RevokeMatch(task_id=tid, name=c.names[0] if c.names else None, found=tuple(c.found))
        for tid, c in found.items()
        if sel.matches(c)
    ]


def _from_workers(
    settings: Settings, sel: _Selectors, tree: Mapping[str, object], found: dict[str, _Candidate], timeout: float
) -> set[str]:
    """Tasks the online workers hold; returns the queues they consume (``active_queues``)."""
    control = backends.open_control(settings)
    if not control.supports_broadcast:
        events.warn("the broker has no broadcast: what workers hold is not looked at")
        return set()
    held, consumed = workers.holdings(settings, timeout=timeout)
    for t in held:
        in_root = sel.root is not None and (t.task_id == sel.root or t.task_id in tree)
        c = found.setdefault(t.task_id, _Candidate())
        c.add(f"worker:{t.worker}:{t.kind}", name=t.name, queues=[t.routing_key, t.exchange], in_root=in_root)
    return consumed


def _message_task(raw: RawMessage) -> tuple[str, str | None, str | None] | None:
    """(task id, name, root id) of a task message, from its headers (protocol 2) or its body (protocol 1)."""
    headers = raw.headers or {}
    if "task" in headers:
        tid, name, rid = headers.get("id"), headers.get("task"), headers.get("root_id")
    else:
        d = msgfmt.decode(raw)
        if d.kind != "task":
            return None
        tid, name, rid = d.task_id, d.task, d.root_id
    if not isinstance(tid, str):
        return None
    try:
        tid = ctlfmt.normalize_task_id(tid, any_id=True)
    except UsageError:
        return None
    name = name[:_MAX_HEADER] if isinstance(name, str) else None
    rid = rid[:_MAX_HEADER] if isinstance(rid, str) else None
    return tid, name, rid


def _from_queue(
    settings: Settings, queue: str, sel: _Selectors, tree: Mapping[str, object], found: dict[str, _Candidate], scan: int
) -> None:
    """Ready messages of QUEUE, peeked (given back in place); a queue that cannot be peeked safely is skipped."""
    from taskctl.queues import inspect as queue_inspect

    broker = backends.open_broker(settings)
    if broker.peek_moves_to_tail:
        events.warn(f"queue {queue!r} not scanned: on {broker.scheme}:// a peek moves messages to the end of the queue")
        return
    try:
        queue_inspect.check_peek_safe(settings, broker, queue)
        ready = broker.stats(queue).messages
        deliveries = broker.peek(queue, scan)
    except TaskctlError as exc:
        events.warn(f"queue {queue!r} not scanned: {exc.message}")
        return
    if ready > scan and len(deliveries) >= scan:
        events.warn(f"queue {queue!r} holds {ready} ready messages: only the first {scan} were scanned (--scan)")
    odd = 0
    for d in deliveries:
        task = _message_task(d.raw)
        if task is None:
            odd += 1
            continue
        tid, name, rid = task
        in_root = sel.root is not None and (rid == sel.root or tid == sel.root or tid in tree)
        found.setdefault(tid, _Candidate()).add(f"queue:{queue}", name=name, queues=[queue], in_root=in_root)
    if odd:
        events.warn(f"queue {queue!r}: {odd} messages are not task messages with a usable id; left out")


def _stored_tree(settings: Settings, root_id: str) -> dict[str, tuple[str | None, str | None]]:
    """The root and every unfinished task of its stored tree: id -> (name, queue) where result_extended says."""
    if not settings.backend:
        events.warn(
            "no result backend configured: the workflow's stored tree is not read "
            "(--root matches the root itself and queued messages with its root_id)"
        )
        return {}
    with results.Reader(settings) as reader:
        walker = results.Walker(reader)
        top = walker.walk(root_id)
        out: dict[str, tuple[str | None, str | None]] = {}
        if top.kind == "task":
            out[root_id] = _name_queue(top.fetched)
        for n in walker.task_nodes():
            if n.id not in out and state_of(n) not in READY_STATES:
                out[n.id] = _name_queue(n.fetched)
    return out


def _name_queue(f: results.Fetched | None) -> tuple[str | None, str | None]:
    meta = f.meta if f is not None else None
    return (meta.name, meta.queue) if meta is not None else (None, None)


def _from_results(settings: Settings, sel: _Selectors, found: dict[str, _Candidate], scan: int) -> None:
    """With --task: unfinished stored results whose meta names the task (result_extended), at most SCAN read.

    Cheap only where the meta carries the name: without it a stored result cannot be matched by name, so the
    store is left alone and the reason said.
    """
    if not settings.backend:
        events.note("no result backend configured: stored results not looked at")
        return
    with results.Reader(settings) as reader:
        store = reader.store
        if not store.supports_scan:
            events.warn(f"stored results not looked at: {store.describe()} cannot be listed")
            return
        prefixes = [p + resfmt.TASK_PREFIX for p in reader.keys.prefixes]
        read = named = 0
        for item in store.scan(prefixes):
            if read >= scan:
                events.warn(f"stored results: only the first {scan} were read (--scan)")
                break
            read += 1
            parsed = reader.keys.parse(item.key)
            if parsed is None or parsed.kind != "task":
                continue
            meta = reader.decode(parsed.id, item).meta
            if meta is None or meta.name is None:
                continue
            named += 1
            if meta.status in READY_STATES or not fnmatch.fnmatchcase(meta.name, sel.task_glob or "*"):
                continue
            found.setdefault(parsed.id, _Candidate()).add("result", name=meta.name, queues=[meta.queue])
    if read and not named:
        events.warn(
            "stored results carry no task name (the workers run without result_extended=True): "
            "--task cannot match them there"
        )
