"""`result list`: scan the store and stream what matches, one row per item, a bad item a row with a problem."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from taskctl import events
from taskctl.errors import UsageError
from taskctl.formats.result import KIND_PREFIXES, GroupRef, TaskRef, decode_payload
from taskctl.models import Listing, StoredGroup, TaskResult
from taskctl.results.bulk import RateLimiter, check_segments
from taskctl.results.filters import Filters
from taskctl.results.read import KINDS, Options, Reader, is_expired, task_row
from taskctl.results.refs import parse_ref

if TYPE_CHECKING:
    from taskctl.backends.base import Shard, StoredItem
    from taskctl.config import Settings


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def list_results(
    settings: Settings,
    *,
    filters: Filters | None = None,
    limit: int | None = None,
    kind: str = "task",
    opts: Options | None = None,
    shard: Shard | None = None,
    segments: int | None = None,
    max_rate: float | None = None,
) -> Listing:
    """Scan the store and stream what matches (progress on stderr on a terminal): memory holds a few pages,
    never the table. SHARD: this run's share of N; MAX_RATE: items read a second."""
    filters = filters or Filters()
    check_segments(segments)
    limiter = RateLimiter(max_rate)
    if kind not in KINDS:
        raise UsageError(f"unknown --kind {kind!r}", hint="use one of: " + ", ".join(KINDS))
    if kind != "task" and (filters.states or filters.task_glob or filters.larger_than is not None):
        raise UsageError(f"--state, --task and --larger-than apply to task results, not --kind {kind}")
    if limit is not None and limit < 0:
        raise UsageError("--limit must be 0 or more")
    reader = Reader(settings, opts)
    if not reader.store.supports_scan:
        reader.close()
        raise UsageError(f"{reader.store.describe()} cannot be listed")
    prefixes = [p + KIND_PREFIXES[kind] for p in reader.keys.prefixes]
    model: type[TaskResult] | type[StoredGroup] = TaskResult if kind == "task" else StoredGroup
    hint = filters.value_hint() if kind == "task" else None

    def rows() -> Iterator[Any]:
        shown = 0
        problems = 0
        now = time.time()
        try:
            if limit == 0:
                return
            with events.progress(f"scanning {reader.store.describe()}", None) as bar:
                for item in reader.store.scan(prefixes, shard=shard, segments=segments, values=hint):
                    bar.advance()
                    limiter.take(1)
                    parsed = reader.keys.parse(item.key)
                    if parsed is None or parsed.kind != kind:
                        continue
                    if kind == "task":
                        f = reader.decode(parsed.id, item)
                        if not filters.matches(f, now):
                            continue
                        row = task_row(parsed.id, f, now)
                        problems += row.state == "UNKNOWN"  # a replaced part (1e999) is read, not unreadable
                        yield row
                    else:
                        if not filters.age_ok(item.timestamp, now):
                            continue
                        group = _stored_group(reader, parsed.kind, parsed.id, item, now)
                        problems += group.problem is not None
                        yield group
                    shown += 1
                    if limit is not None and shown >= limit:
                        return
        finally:
            reader.close()
            if problems:
                events.warn(f"{problems} stored values could not be read as {kind} meta (see their problem)")

    return Listing(model=model, items=rows())


def _stored_group(reader: Reader, kind: str, ident: str, item: StoredItem, now: float) -> StoredGroup:
    members: tuple[str, ...] = ()
    undecodable = None
    if kind == "group":
        dec = decode_payload(item.value, reader.serializer, unsafe_pickle=reader.unsafe_pickle)
        try:
            ref = parse_ref(dec.value.get("result")) if dec.ok and isinstance(dec.value, Mapping) else None
        except Exception as exc:  # stored data is untrusted: a problem on its row, never the end of the list
            dec.error = f"cannot read group meta: {type(exc).__name__}: {exc}"[:300]
            ref = None
        if isinstance(ref, GroupRef):
            members = tuple(m.task_id if isinstance(m, TaskRef) else m.group_id for m in ref.members)
        else:
            undecodable = dec.undecodable() or {"error": "not Celery group meta", "size": dec.size, "head": dec.head}
    return StoredGroup(
        kind=kind,
        group_id=ident,
        members=members,
        chord_count=item.chord_count,
        stored_at=_iso(item.timestamp),
        expired=is_expired(item, now),
        undecodable=undecodable,
        problem=undecodable["error"] if undecodable else None,
    )
