"""Queue operations: stats, list, purge, peek, drain, publish, move. The library behind `taskctl queue`.

Nothing lost: a message is acked only after it is durable where it went — its drain line fsynced (in batches
smaller than the prefetch window, so the broker keeps delivering), or its copy confirmed by the broker
(publisher confirms on a second connection). A kill at any moment leaves every message in the file or
destination, or back in the queue, or both: at-least-once, with duplicates bounded by the prefetch window.
kombu's ``filesystem://`` transport deletes a message when it is delivered, before the ack, so there a kill
can lose the messages in flight.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from taskctl import backends, events
from taskctl.config import Settings
from taskctl.errors import NotFoundError, TaskctlError, UnavailableError, UsageError
from taskctl.formats.message import (
    LineEncoder,
    RawMessage,
    decode,
    drain_record,
    for_republish,
    from_record,
    matches_task,
    message_key,
    republish_problems,
    to_record,
)
from taskctl.models import BrokerQueue, DrainedLine, PurgedQueue, QueueMessage, QueueStats, TransferSummary

PREFETCH = 1000
#: fsync + ack every BATCH messages: must stay below PREFETCH or the broker stops delivering
BATCH = 500
#: commit what is written after this long without a message (a trickling queue still gets acked)
COMMIT_IDLE = 0.2

FILESYSTEM_WARNING = (
    "kombu's filesystem:// transport deletes a message when it is delivered, before the ack: "
    "a kill during this command can lose the messages in flight"
)


# -- looking -------------------------------------------------------------------------------------------------------


def stats(settings: Settings, queues: Iterable[str]) -> list[QueueStats]:
    """Counts of each queue; a missing queue fails the whole call (exit 3) before anything is printed."""
    broker = backends.open_broker(settings)
    out = []
    for q in queues:
        c = broker.stats(q)
        note = None if c.certain else "empty or missing"
        out.append(QueueStats(queue=q, messages=c.messages, consumers=c.consumers, note=note))
    return out


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace(" ", "T").replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def broker_queue(q: dict[str, Any], now: dt.datetime | None = None) -> BrokerQueue:
    """A management API queue object as a model (idle time from ``idle_since``, expiry from ``x-expires``)."""
    now = now or dt.datetime.now(dt.UTC)
    args = q.get("arguments") or {}
    idle = _parse_time(q.get("idle_since"))
    expires = args.get("x-expires")
    return BrokerQueue(
        queue=str(q.get("name")),
        vhost=str(q.get("vhost", "/")),
        messages=int(q.get("messages") or 0),
        ready=int(q.get("messages_ready") or 0),
        unacked=int(q.get("messages_unacknowledged") or 0),
        consumers=int(q.get("consumers") or 0),
        idle_since=idle.astimezone(dt.UTC).isoformat() if idle else None,
        idle_seconds=round(max(0.0, (now - idle).total_seconds()), 1) if idle else None,
        type=str(q.get("type") or "classic"),
        durable=bool(q.get("durable")),
        auto_delete=bool(q.get("auto_delete")),
        exclusive=bool(q.get("exclusive")),
        expires=float(expires) / 1000.0 if isinstance(expires, int | float) else None,
        arguments=dict(args),
    )


def management_api(settings: Settings, what: str) -> Any:
    broker = backends.open_broker(settings)
    if not broker.has_management:
        raise UsageError(
            f"{what} needs RabbitMQ's management API; the broker is {broker.scheme}://",
            hint="use 'taskctl queue stats QUEUE...' for named queues",
        )
    return backends.open_management(settings)


def list_queues(settings: Settings, match: str | None = None) -> Iterator[BrokerQueue]:
    api = management_api(settings, "queue list")
    now = dt.datetime.now(dt.UTC)
    for q in api.iter_queues():
        if match and not fnmatch.fnmatchcase(str(q.get("name")), match):
            continue
        yield broker_queue(q, now)


# -- purge ---------------------------------------------------------------------------------------------------------


def purge(settings: Settings, queues: Iterable[str], *, dry_run: bool, missing_ok: bool) -> list[PurgedQueue]:
    """Remove the ready messages of each queue; every queue is checked before any is purged."""
    broker = backends.open_broker(settings)
    plan: list[tuple[str, int, str | None]] = []
    for q in queues:
        try:
            c = broker.stats(q)
        except NotFoundError:
            if not missing_ok:
                raise
            plan.append((q, -1, "missing"))
            continue
        plan.append((q, c.messages, None if c.certain else "empty or missing"))
    out = []
    for q, n, note in plan:
        if n < 0:
            out.append(PurgedQueue(q, 0, dry_run, note))
        elif dry_run:
            out.append(PurgedQueue(q, n, True, note))
        else:
            out.append(PurgedQueue(q, broker.purge(q), False, note))
    return out


# -- peek -----------------------------------------------------------------------------------------------------------


def _quorum_check(settings: Settings, broker: Any, queue: str, force: bool) -> None:
    """Quorum queues count a peek as a delivery: warn, and refuse where a delivery limit can drop messages."""
    if not broker.has_management:
        return
    api = backends.open_management(settings)
    api.timeout = 2.0  # a check on the way to the peek: a firewalled port must not stall it
    try:
        info = api.queue(queue)
    except TaskctlError:
        events.note("management API not reachable: cannot tell whether the queue is a quorum queue")
        return
    if info.get("type") != "quorum":
        return
    args = info.get("arguments") or {}
    policy = info.get("effective_policy_definition") or {}
    limit = args.get("x-delivery-limit", policy.get("delivery-limit"))
    if limit is not None and not force:
        raise UsageError(
            f"queue {queue!r} is a quorum queue with delivery limit {limit}: each peek counts as a delivery, "
            "and messages past the limit are dropped or dead-lettered",
            hint="pass --force to peek anyway",
        )
    events.warn(f"queue {queue!r} is a quorum queue: this peek counts as a delivery of each message shown")


def peek(settings: Settings, queue: str, limit: int, *, force: bool = False) -> list[QueueMessage]:
    broker = backends.open_broker(settings)
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    _quorum_check(settings, broker, queue, force)
    deliveries = broker.peek(queue, limit)
    if broker.scheme == "filesystem":
        events.warn("on filesystem:// a peeked message goes back to the end of the queue")
    out = []
    for i, d in enumerate(deliveries, 1):
        if "x-delivery-count" in (d.raw.headers or {}):
            events.warn(f"message {i} has x-delivery-count: the queue counts peeks as deliveries (quorum)")
        out.append(_queue_message(i, queue, d.raw))
    return out


def _queue_message(n: int, queue: str, raw: RawMessage) -> QueueMessage:
    dec = decode(raw)
    return QueueMessage(
        n=n,
        queue=queue,
        kind=dec.kind,
        task_id=dec.task_id,
        task=dec.task,
        size=dec.size,
        redelivered=raw.redelivered,
        summary=dec.summary,
        record=to_record(raw, queue=queue, decoded=dec),
    )


# -- the transfer engine: consume, hand over, commit, ack -----------------------------------------------------------


@dataclass
class TransferStats:
    taken: int = 0
    put_back: int = 0
    seen: int = 0
    stopped: str | None = None
    ready_at_start: int = 0


def _transfer(
    broker: Any,
    queue: str,
    *,
    commit: Callable[[], None],
    stats: TransferStats,
    limit: int | None,
    task: str | None,
    idle: float,
    prefetch: int = PREFETCH,
    batch: int = BATCH,
    publisher: Any = None,
    purpose: str = "drain",
) -> Iterator[RawMessage]:
    """Yield the messages to take; each is acked once the caller asked for the next and ``commit`` ran.

    ``commit`` makes everything handed over so far durable (fsync, flush, publisher confirms). Messages not
    matching TASK are published back to the tail of QUEUE (PUBLISHER, with confirms) and acked the same way.
    With TASK the pass ends after the messages that were ready at the start.
    """
    if batch >= prefetch:
        raise UsageError(f"batch {batch} must be smaller than the prefetch window {prefetch}")
    if task and publisher is None:
        raise UsageError("--task needs a publisher to put other messages back")
    # the pass is over the messages ready now (counted before consuming: delivered ones are not "ready")
    stats.ready_at_start = broker.stats(queue).messages if task else 0
    with broker.consume(queue, prefetch=prefetch, purpose=purpose) as consumer:
        last_done = None
        since_commit = 0

        def do_commit() -> None:
            nonlocal last_done, since_commit
            if last_done is None:
                return
            commit()
            if publisher is not None:
                publisher.flush()
            consumer.ack_upto(last_done)
            last_done = None
            since_commit = 0

        idle_since = time.monotonic()
        while True:
            if limit is not None and stats.taken >= limit:
                stats.stopped = "limit"
                break
            if task and stats.seen >= stats.ready_at_start:
                stats.stopped = "one-pass"
                break
            d = consumer.next(COMMIT_IDLE if last_done is not None else min(COMMIT_IDLE, idle))
            if d is None:
                do_commit()
                if time.monotonic() - idle_since >= idle:
                    stats.stopped = "idle"
                    break
                continue
            idle_since = time.monotonic()
            stats.seen += 1
            if task and not matches_task(d.raw, task):
                publisher.publish(for_republish(d.raw), "", queue)
                stats.put_back += 1
            else:
                yield d.raw
                stats.taken += 1
            last_done = d
            since_commit += 1
            if since_commit >= batch:
                do_commit()
        do_commit()


# -- drain ----------------------------------------------------------------------------------------------------------


class LineFile:
    """Drain lines appended to a file (never truncated), fsynced on commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.fh: IO[bytes] = path.open("ab")
        except OSError as exc:
            raise UsageError(f"cannot open {path} for appending: {exc.strerror}") from None
        # a killed earlier run may have left half a line: start on a fresh line (publish skips the fragment)
        if self.fh.tell() > 0:
            with path.open("rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    self.fh.write(b"\n")

    def write(self, record: dict[str, Any]) -> None:
        self.fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")

    def write_line(self, line: bytes) -> None:
        self.fh.write(line)

    def commit(self) -> None:
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
        except OSError as exc:
            raise TaskctlError(f"cannot write {self.path}: {exc.strerror}; nothing more was acked") from None

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self.fh.close()


def _warn_transport(broker: Any) -> None:
    if not broker.acks:
        events.warn(FILESYSTEM_WARNING)


def drain(
    settings: Settings,
    queue: str,
    *,
    file: str | None,
    limit: int | None,
    task: str | None,
    idle: float,
    dry_run: bool = False,
    prefetch: int = PREFETCH,
    batch: int = BATCH,
) -> TransferSummary | Iterator[DrainedLine]:
    """Remove messages into FILE (a summary is returned) or, without FILE, yield the lines for stdout."""
    broker = backends.open_broker(settings)
    _check_limit(limit)
    if dry_run:
        c = broker.stats(queue)
        n = c.messages if limit is None else min(limit, c.messages)
        return TransferSummary("drain", queue, file or "-", n, stopped=None, dry_run=True)
    _warn_transport(broker)
    if file is not None:
        return _drain_to_file(broker, queue, Path(file), limit, task, idle, prefetch, batch)
    return _drain_to_stdout(broker, queue, limit, task, idle, prefetch, batch)


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")


def _drain_to_file(
    broker: Any, queue: str, path: Path, limit: int | None, task: str | None, idle: float, prefetch: int, batch: int
) -> TransferSummary:
    out = LineFile(path)
    line = LineEncoder(queue).line
    st = TransferStats()
    try:
        progress = events.progress(f"draining {queue}", None)
        with _maybe_publisher(broker, task, "drain put-back") as pub, progress as bar:
            for raw in _transfer(
                broker,
                queue,
                commit=out.commit,
                stats=st,
                limit=limit,
                task=task,
                idle=idle,
                prefetch=prefetch,
                batch=batch,
                publisher=pub,
            ):
                out.write_line(line(raw))
                bar.advance()
    except UnavailableError as exc:
        raise UnavailableError(
            f"{exc.message}; {st.taken} messages were written to {path} (those not acked return to the queue "
            "and may be written again on the next run)",
            hint=exc.hint,
        ) from None
    finally:
        out.close()
    return TransferSummary("drain", queue, str(path), st.taken, put_back=st.put_back, stopped=st.stopped)


def _drain_to_stdout(
    broker: Any, queue: str, limit: int | None, task: str | None, idle: float, prefetch: int, batch: int
) -> Iterator[DrainedLine]:
    """Lines for the renderer; a line is acked only after the renderer asked for the next (it was written)."""
    st = TransferStats()

    def flush() -> None:
        sys.stdout.flush()

    with _maybe_publisher(broker, task, "drain put-back") as pub:
        for raw in _transfer(
            broker,
            queue,
            commit=flush,
            stats=st,
            limit=limit,
            task=task,
            idle=idle,
            prefetch=prefetch,
            batch=batch,
            publisher=pub,
        ):
            yield DrainedLine(drain_record(raw, queue))
    events.note(f"drained {st.taken} messages from {queue} (put back {st.put_back}; stopped: {st.stopped})")


class _NoPublisher:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _maybe_publisher(broker: Any, task: str | None, purpose: str) -> Any:
    return broker.publisher(purpose=purpose) if task else _NoPublisher()


# -- move -----------------------------------------------------------------------------------------------------------


def move(
    settings: Settings,
    source: str,
    destination: str,
    *,
    limit: int | None,
    task: str | None,
    idle: float,
    dry_run: bool = False,
    prefetch: int = PREFETCH,
    batch: int = BATCH,
) -> TransferSummary:
    """Move messages SOURCE -> DESTINATION at least once: publish with confirms, then ack the source."""
    if source == destination:
        raise UsageError("source and destination are the same queue")
    _check_limit(limit)
    broker = backends.open_broker(settings)
    c = broker.stats(source)
    broker.stats(destination)
    if dry_run:
        n = c.messages if limit is None else min(limit, c.messages)
        return TransferSummary("move", source, destination, n, dry_run=True)
    _warn_transport(broker)
    st = TransferStats()
    with broker.publisher(purpose=f"move {source} -> {destination}") as pub:
        pub.check_destination("", destination)
        try:
            progress = events.progress(f"moving {source} -> {destination}", c.messages or None)
            with progress as bar:
                for raw in _transfer(
                    broker,
                    source,
                    commit=lambda: None,  # the publisher's confirms are the commit (flushed before each ack)
                    stats=st,
                    limit=limit,
                    task=task,
                    idle=idle,
                    prefetch=prefetch,
                    batch=batch,
                    publisher=pub,
                    purpose="move",
                ):
                    pub.publish(for_republish(raw), "", destination)
                    bar.advance()
        except UnavailableError as exc:
            raise UnavailableError(
                f"{exc.message}; {st.taken} messages were published to {destination!r} (those whose source "
                "ack did not arrive return to the source and may be moved again)",
                hint=exc.hint,
            ) from None
    return TransferSummary("move", source, destination, st.taken, put_back=st.put_back, stopped=st.stopped)


# -- publish --------------------------------------------------------------------------------------------------------


def read_records(path: str) -> Iterator[tuple[int, RawMessage | None, str | None]]:
    """(line number, message or None, problem) for each non-empty line of a drain file ('-': stdin)."""
    fh: IO[str]
    if path == "-":
        fh = sys.stdin
    else:
        try:
            fh = open(path, encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
                yield n, from_record(rec), None
            except ValueError as exc:
                yield n, None, f"line {n}: not a drain record ({str(exc)[:60]})"
    finally:
        if fh is not sys.stdin:
            fh.close()


def publish(
    settings: Settings,
    path: str,
    *,
    to: str | None,
    dedupe: bool = True,
    dry_run: bool = False,
) -> TransferSummary:
    """Publish drained messages back: byte-exact except ``expiration``; each message id once unless told."""
    broker = backends.open_broker(settings)
    seen: set[str] = set()
    sent = skipped = 0
    problems: list[str] = []
    destinations: set[str] = set()
    if to:
        broker.stats(to)

    def plan() -> Iterator[tuple[RawMessage, str, str]]:
        nonlocal skipped
        for n, raw, problem in read_records(path):
            if raw is None:
                events.warn(problem or f"line {n}: unreadable")
                skipped += 1
                continue
            if dedupe:
                key = message_key(raw)
                if key in seen:
                    skipped += 1
                    continue
                seen.add(key)
            for p in republish_problems(raw):
                d = decode(raw)
                problems.append(f"{d.task_id}: {p}")
            exchange, rk = ("", to) if to else (raw.exchange, raw.routing_key)
            if not exchange and not rk:
                raise UsageError(f"line {n}: the message has no routing key", hint="pass --to QUEUE")
            yield for_republish(raw), exchange, rk

    if dry_run:
        for _raw, exchange, rk in plan():
            destinations.add(f"{exchange}/{rk}" if exchange else rk)
            sent += 1
    else:
        with broker.publisher(purpose="publish") as pub:
            for raw, exchange, rk in plan():
                pub.check_destination(exchange, rk)
                pub.publish(raw, exchange, rk)
                destinations.add(f"{exchange}/{rk}" if exchange else rk)
                sent += 1
            pub.flush()
    for p in problems[:20]:
        events.warn(p)
    if len(problems) > 20:
        events.warn(f"... and {len(problems) - 20} more messages with a past expires/eta")
    dest = to or (",".join(sorted(destinations)) if destinations else "-")
    return TransferSummary(
        "publish", path, dest, sent, skipped=skipped, stopped="end", dry_run=dry_run, problems=tuple(problems)
    )
