"""`result forget`: ids, their subtrees (never a parent), or everything matching filters.

Deletes run leaves first, deepest level first, the named ids last: whatever an interruption leaves behind is
still reachable from the ids the user named, so the same command run again finishes the job. With a
checkpoint a rerun also skips what is done: the scan position of each segment, or a tree's walked plan.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from taskctl import events
from taskctl.errors import UsageError
from taskctl.formats.result import TASK_PREFIX
from taskctl.models import ForgetReport
from taskctl.results.bulk import Checkpoint, RateLimiter, check_segments
from taskctl.results.filters import Filters
from taskctl.results.read import Fetched, Options, Reader
from taskctl.results.walk import Walker

if TYPE_CHECKING:
    from taskctl.backends.base import ResultStore, Shard
    from taskctl.config import Settings

#: keys handed to the store per delete call (it spreads them over its own batches and threads)
DELETE_CHUNK = 200
#: ids listed in the report of a forget by filters; beyond this only the count grows (bounded memory)
SHOWN = 10_000


def forget(
    settings: Settings,
    ids: Sequence[str] = (),
    *,
    tree: bool = False,
    deep: bool = False,
    keep: Sequence[str] = (),
    filters: Filters | None = None,
    dry_run: bool = False,
    opts: Options | None = None,
    store: ResultStore | None = None,
    shard: Shard | None = None,
    segments: int | None = None,
    max_rate: float | None = None,
    checkpoint: str | None = None,
) -> ForgetReport:
    """Delete stored results: IDS (with --tree their subtrees, never a parent), or everything matching FILTERS."""
    filters = filters or Filters()
    if not ids and not filters.any:
        raise UsageError(
            "nothing to forget: give task ids, or filters (--state, --task, --older-than, --newer-than)",
            hint="e.g. taskctl result forget --state SUCCESS --older-than 7d --yes",
        )
    if (tree or deep or keep) and not ids:
        raise UsageError("--tree, --deep and --keep need task ids")
    if deep and not tree:
        raise UsageError("--deep needs --tree")
    if ids and (shard is not None or segments is not None):
        raise UsageError("--segment and --segments apply to a forget by filters, not to ids")
    if checkpoint is not None and dry_run:
        raise UsageError("--checkpoint records deletes; a --dry-run deletes nothing")
    check_segments(segments)
    limiter = RateLimiter(max_rate)
    with Reader(settings, opts, store) as reader:
        job = {
            "command": "result forget",
            "store": reader.store.describe(),
            "prefixes": list(reader.keys.prefixes),
            "ids": list(ids),
            "tree": tree,
            "deep": deep,
            "keep": sorted(keep),
            "filters": filters.describe(),
            "segment": [shard.index, shard.count] if shard else None,
            "segments": segments,
        }
        cp = Checkpoint.open(checkpoint, job) if checkpoint is not None else None
        if not ids:
            return _forget_matching(reader, filters, dry_run, shard, segments, limiter, cp)
        if cp is not None and cp.plan is not None:
            plan = cp.plan
        else:
            plan = _plan(reader, ids, tree=tree, deep=deep, keep=keep, filters=filters)
            if cp is not None:
                cp.plan = plan
                cp.save()
        if not dry_run:
            _delete_in_order(reader, plan["batches"], limiter, cp)
    return ForgetReport(
        forgotten=tuple(plan["forgotten"]),
        missing=tuple(plan["missing"]),
        dry_run=dry_run,
        groups=tuple(plan["groups"]),
        kept=tuple(plan["kept"]),
        count=len(plan["forgotten"]),
        earlier=cp.earlier if cp else 0,
    )


def _plan(
    reader: Reader, ids: Sequence[str], *, tree: bool, deep: bool, keep: Sequence[str], filters: Filters
) -> dict[str, list[str] | list[list[str]]]:
    """What to delete, as key batches in a safe order, and what the report says about it."""
    now = time.time()
    kept: list[str] = []
    #: (depth, task id, what is stored) for each candidate; group nodes as (depth, group id)
    candidates: list[tuple[int, str, Fetched | None]] = []
    group_nodes: list[tuple[int, str]] = []
    if tree:
        walker = Walker(reader, deep=deep, keep=keep)
        for r in ids:
            walker.walk(r)
        candidates = [(n.depth, n.id, n.fetched) for n in walker.task_nodes() if not n.kept]
        kept = [n.id for n in walker.task_nodes() if n.kept]
        group_nodes = [(n.depth, n.id) for n in walker.groups.values()]
    else:
        fetched = reader.fetch(ids)
        candidates = [(0, i, fetched.get(i)) for i in ids]
    forgotten: list[str] = []
    missing: list[str] = []
    levels: dict[int, list[str]] = {}
    for depth, tid, f in candidates:
        if f is None:
            missing.append(tid)
        elif not filters.any or filters.matches(f, now):
            forgotten.append(tid)
            levels.setdefault(depth, []).extend(reader.keys.task_keys(tid))
    present_groups: list[str] = []
    group_levels: dict[int, list[str]] = {}
    if group_nodes:
        wanted = {
            k: (depth, g)
            for depth, g in group_nodes
            for kind in ("group", "chord-counter")
            for k in reader.keys.keys(kind, g)
        }
        found = reader.store.get_many(list(wanted))
        present_groups = list(dict.fromkeys(wanted[k][1] for k in found))
        for k in found:
            group_levels.setdefault(wanted[k][0], []).append(k)
    return {
        "batches": list(deletion_order(levels, group_levels)),
        "forgotten": forgotten,
        "missing": missing,
        "groups": present_groups,
        "kept": kept,
    }


def deletion_order(tasks: dict[int, list[str]], groups: dict[int, list[str]]) -> Iterator[list[str]]:
    """Key batches to delete one after the other: deepest level first; in a level the tasks, then the group
    items (a group's members sit one level below it, its parent one level above)."""
    for depth in sorted(set(tasks) | set(groups), reverse=True):
        for keys in (tasks.get(depth), groups.get(depth)):
            if keys:
                yield keys


def _delete_in_order(
    reader: Reader, batches: Sequence[Sequence[str]], limiter: RateLimiter, cp: Checkpoint | None
) -> int:
    """Each batch finished before the next begins; a checkpoint counts keys done in that order."""
    skip = cp.done if cp else 0
    n = 0
    at = 0
    for batch in batches:
        for i in range(0, len(batch), DELETE_CHUNK):
            chunk = batch[i : i + DELETE_CHUNK]
            start = at
            at += len(chunk)
            if at <= skip:
                continue
            chunk = chunk[max(0, skip - start) :]
            limiter.take(len(chunk))
            reader.store.delete_many(chunk)
            n += len(chunk)
            if cp is not None:
                cp.done = at
                cp.save()
    return n


def _forget_matching(
    reader: Reader,
    filters: Filters,
    dry_run: bool,
    shard: Shard | None,
    segments: int | None,
    limiter: RateLimiter,
    cp: Checkpoint | None,
) -> ForgetReport:
    """Scan page by page, deleting what matches as each page is read: memory is a page, never the table."""
    store = reader.store
    if not store.supports_scan:
        raise UsageError(f"{store.describe()} cannot be listed, so it cannot be searched by filters")
    now = time.time()
    shown: list[str] = []
    count = 0
    prefixes = [p + TASK_PREFIX for p in reader.keys.prefixes]
    resume = dict(cp.positions) if cp is not None else None
    if cp is not None:
        # positions are per segment: a rerun must split the table as the first run did, not as its size now says
        if cp.plan is None:
            cp.plan = {"segments": segments or store.scan_segments()}
        segments = int(cp.plan["segments"])
        if cp.finished(segments):
            return ForgetReport(forgotten=(), missing=(), dry_run=False, count=0, earlier=cp.earlier)
    with events.progress("scanning for results to forget", None) as bar:
        for page in store.scan_pages(
            prefixes, shard=shard, segments=segments, resume=resume, values=filters.value_hint()
        ):
            bar.advance(len(page.items))
            keys: list[str] = []
            for item in page.items:
                parsed = reader.keys.parse(item.key)
                if parsed is None or parsed.kind != "task":
                    continue
                if not filters.matches(reader.decode(parsed.id, item), now):
                    continue
                keys.append(item.key)
                if len(shown) < SHOWN:
                    shown.append(parsed.id)
            for i in range(0, len(keys), DELETE_CHUNK):
                chunk = keys[i : i + DELETE_CHUNK]
                limiter.take(len(chunk))
                if not dry_run:
                    store.delete_many(chunk)
                count += len(chunk)
                if cp is not None:
                    cp.done += len(chunk)  # the segment's position stays at this page until it is finished
                    cp.save()
            if cp is not None:
                cp.positions[page.segment] = page.cursor
                cp.save()
    return ForgetReport(
        forgotten=tuple(shown),
        missing=(),
        dry_run=dry_run,
        count=count,
        earlier=cp.earlier if cp else 0,
        truncated=count > len(shown),
    )
