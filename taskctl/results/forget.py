"""`result forget`: ids, their subtrees (never a parent), or everything matching filters."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from taskctl import events
from taskctl.errors import UsageError
from taskctl.formats.result import TASK_PREFIX
from taskctl.models import ForgetReport
from taskctl.results.filters import Filters
from taskctl.results.read import Options, Reader
from taskctl.results.walk import Walker

if TYPE_CHECKING:
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
    with Reader(settings, opts) as reader:
        if not ids:
            return _forget_matching(reader, filters, dry_run)
        now = time.time()
        kept: list[str] = []
        groups: list[str] = []
        if tree:
            walker = Walker(reader, deep=deep, keep=keep)
            for r in ids:
                walker.walk(r)
            candidates = [(n.id, n.fetched) for n in walker.task_nodes() if not n.kept]
            kept = [n.id for n in walker.task_nodes() if n.kept]
            groups = list(walker.groups)
        else:
            fetched = reader.fetch(ids)
            candidates = [(i, fetched.get(i)) for i in ids]
        forgotten: list[str] = []
        missing: list[str] = []
        for tid, f in candidates:
            if f is None:
                missing.append(tid)
            elif not filters.any or filters.matches(f, now):
                forgotten.append(tid)
        group_keys: list[str] = []
        present_groups: list[str] = []
        if groups:
            wanted = {k: g for g in groups for kind in ("group", "chord-counter") for k in reader.keys.keys(kind, g)}
            found = reader.store.get_many(list(wanted))
            group_keys = list(found)
            present_groups = list(dict.fromkeys(wanted[k] for k in found))
        if not dry_run:
            keys = [k for tid in forgotten for k in reader.keys.task_keys(tid)] + group_keys
            reader.store.delete_many(keys)
    return ForgetReport(
        forgotten=tuple(forgotten),
        missing=tuple(missing),
        dry_run=dry_run,
        groups=tuple(present_groups),
        kept=tuple(kept),
    )


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
