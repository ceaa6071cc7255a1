"""`result forget`: ids, their subtrees (never a parent), or everything matching filters."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from taskctl import events
from taskctl.errors import UsageError
from taskctl.formats.result import TASK_PREFIX
from taskctl.models import ForgetReport
from taskctl.results.filters import Filters
from taskctl.results.read import Fetched, Options, Reader
from taskctl.results.walk import Walker

if TYPE_CHECKING:
    from taskctl.backends.base import ResultStore
    from taskctl.config import Settings


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
) -> ForgetReport:
    """Delete stored results: IDS (with --tree their subtrees, never a parent), or everything matching FILTERS.

    Deletes run leaves first, deepest level first, the named ids last: whatever an interruption leaves behind
    is still reachable from the ids the user named, so the same command run again finishes the job.
    """
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
    with Reader(settings, opts, store) as reader:
        if not ids:
            return _forget_matching(reader, filters, dry_run)
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
        if group_nodes:
            wanted = {
                k: (depth, g)
                for depth, g in group_nodes
                for kind in ("group", "chord-counter")
                for k in reader.keys.keys(kind, g)
            }
            found = reader.store.get_many(list(wanted))
            present_groups = list(dict.fromkeys(wanted[k][1] for k in found))
            group_levels: dict[int, list[str]] = {}
            for k in found:
                group_levels.setdefault(wanted[k][0], []).append(k)
        else:
            group_levels = {}
        if not dry_run:
            for keys in deletion_order(levels, group_levels):
                reader.store.delete_many(keys)
    return ForgetReport(
        forgotten=tuple(forgotten),
        missing=tuple(missing),
        dry_run=dry_run,
        groups=tuple(present_groups),
        kept=tuple(kept),
    )


def deletion_order(tasks: dict[int, list[str]], groups: dict[int, list[str]]) -> Iterator[list[str]]:
    """Key batches to delete one after the other: deepest level first; in a level the tasks, then the group
    items (a group's members sit one level below it, its parent one level above)."""
    for depth in sorted(set(tasks) | set(groups), reverse=True):
        for keys in (tasks.get(depth), groups.get(depth)):
            if keys:
                yield keys


def _forget_matching(reader: Reader, filters: Filters, dry_run: bool) -> ForgetReport:
    now = time.time()
    forgotten: list[str] = []
    batch: list[str] = []
    prefixes = [p + TASK_PREFIX for p in reader.keys.prefixes]
    with events.progress("scanning for results to forget", None) as bar:
        for item in reader.store.scan(prefixes):
            bar.advance()
            parsed = reader.keys.parse(item.key)
            if parsed is None or parsed.kind != "task":
                continue
            f = reader.decode(parsed.id, item)
            if not filters.matches(f, now):
                continue
            forgotten.append(parsed.id)
            batch.append(item.key)
            if len(batch) >= 500 and not dry_run:
                reader.store.delete_many(batch)
                batch = []
    if batch and not dry_run:
        reader.store.delete_many(batch)
    return ForgetReport(forgotten=tuple(forgotten), missing=(), dry_run=dry_run)
