"""Taking messages off queues: drain (to a file or stdout) and move; `queue publish` is in taskctl.queues.publish.

Drain and move run on taskctl.transfer (a message is acked only once its line is fsynced, or stdout flushed, or
its copy confirmed by the broker). kombu's ``filesystem://`` transport deletes a message when it is delivered,
before the ack, so there a kill can lose the messages in flight.

``--task``: one pass over at most ``--scan`` messages (default: those ready at the start; at most 10,000 where
the broker returns unacked messages in place). On RabbitMQ the messages not taken are never acked, so they stay
where they were, in order; elsewhere they are published back to the tail (in order among themselves).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from taskctl import backends, events
from taskctl.config import Settings
from taskctl.errors import UsageError
from taskctl.formats.message import LineEncoder, drain_record, for_republish
from taskctl.models import DrainedLine, TransferSummary
from taskctl.queues.drainfile import POISON, LineFile, json_line, problem_of, raw_record, safe_select
from taskctl.queues.publish import report
from taskctl.transfer import BATCH, PREFETCH, Transfer, flush_stdout

if TYPE_CHECKING:
    from taskctl.backends.base import Broker, Publisher

FILESYSTEM_WARNING = (
    "kombu's filesystem:// transport deletes a message when it is delivered, before the ack: "
    "a kill during this command can lose the messages in flight"
)


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")


def _warn_transport(broker: Broker) -> None:
    if not broker.acks:
        events.warn(FILESYSTEM_WARNING)


def _putback(broker: Broker, task: str | None, purpose: str) -> AbstractContextManager[Publisher | None]:
    """A publisher to put back what --task does not take, where the broker cannot leave it in place."""
    if task and not broker.returns_in_place:
        return broker.publisher(purpose=purpose)
    return nullcontext(None)


def count(
    broker: Broker, queue: str, *, limit: int | None, task: str | None, scan: int | None, ready: int
) -> tuple[int, str | None]:
    """Dry run: how many messages a real run would take, and a note; nothing is acked or published."""
    n = ready if limit is None else min(limit, ready)
    if not task:
        return n, None
    if not broker.acks:
        return n, f"not counted by task: {broker.scheme}:// deletes a message when it is looked at"
    select = safe_select(task)
    assert select is not None
    taken = 0
    budget = ready if scan is None else min(scan, ready)
    with broker.getter(queue, purpose="dry run") as g:
        for _ in range(budget):
            d = g.get()
            if d is None or (limit is not None and taken >= limit):
                break
            taken += select(d.raw)
    return taken, None  # nothing acked: every message returns when the getter closes


def drain(
    settings: Settings,
    queue: str,
    *,
    file: str | None,
    limit: int | None,
    task: str | None,
    idle: float,
    dry_run: bool = False,
    scan: int | None = None,
    prefetch: int = PREFETCH,
    batch: int = BATCH,
) -> TransferSummary | Iterator[DrainedLine]:
    """Remove messages into FILE (a summary is returned) or, without FILE, yield the lines for stdout."""
    broker = backends.open_broker(settings)
    _check_limit(limit)
    c = broker.stats(queue)
    if scan is None and task:
        scan = c.messages
    if dry_run:
        n, note = count(broker, queue, limit=limit, task=task, scan=scan, ready=c.messages)
        return TransferSummary("drain", queue, file or "-", n, stopped=note, dry_run=True)
    _warn_transport(broker)
    if file is not None:
        return _drain_to_file(broker, queue, Path(file), limit, task, scan, idle, prefetch, batch)
    return _drain_to_stdout(broker, queue, limit, task, scan, idle, prefetch, batch)


def _drain_to_file(
    broker: Broker,
    queue: str,
    path: Path,
    limit: int | None,
    task: str | None,
    scan: int | None,
    idle: float,
    prefetch: int,
    batch: int,
) -> TransferSummary:
    out = LineFile(path)
    line = LineEncoder(queue).line
    problems: list[str] = []
    try:
        with _putback(broker, task, "drain put-back") as pub:
            t = Transfer(
                broker,
                queue,
                commit=out.commit,
                verb="written to",
                where=str(path),
                limit=limit,
                select=safe_select(task),
                putback=pub,
                scan=scan,
                idle=idle,
                prefetch=prefetch,
                batch=batch,
            )
            with t.guard() as tally, events.progress(f"draining {queue}", None) as bar:
                for item in t:
                    try:
                        data = line(item.raw)
                    except POISON as exc:
                        problems.append(f"message {tally.seen}: {problem_of(exc)}")
                        data = json_line(raw_record(item.raw, queue, problem_of(exc)))
                    out.write_line(data)
                    bar.advance()
    finally:
        out.close()
    report(problems)
    return TransferSummary(
        "drain",
        queue,
        str(path),
        tally.done,
        put_back=tally.put_back,
        stopped=tally.stopped,
        problems=tuple(problems),
    )


def _report(problems: list[str]) -> None:
    for p in problems[:20]:
        events.warn(p)
    if len(problems) > 20:
        events.warn(f"... and {len(problems) - 20} more")


def _drain_to_stdout(
    broker: Broker,
    queue: str,
    limit: int | None,
    task: str | None,
    scan: int | None,
    idle: float,
    prefetch: int,
    batch: int,
) -> Iterator[DrainedLine]:
    """Lines for the renderer; a line is acked only after the renderer asked for the next (it was written)."""
    with _putback(broker, task, "drain put-back") as pub:
        t = Transfer(
            broker,
            queue,
            commit=flush_stdout,
            verb="written to",
            where="stdout",
            limit=limit,
            select=safe_select(task),
            putback=pub,
            scan=scan,
            idle=idle,
            prefetch=prefetch,
            batch=batch,
        )
        with t.guard() as tally:
            for item in t:
                try:
                    record = drain_record(item.raw, queue)
                    json.dumps(record, default=str)
                except POISON as exc:
                    events.warn(f"message {tally.seen}: {problem_of(exc)}")
                    record = raw_record(item.raw, queue, problem_of(exc))
                yield DrainedLine(record)
    events.note(f"drained {tally.done} messages from {queue} (put back {tally.put_back}; stopped: {tally.stopped})")


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
    scan: int | None = None,
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
    if scan is None and task:
        scan = c.messages
    if dry_run:
        n, note = count(broker, source, limit=limit, task=task, scan=scan, ready=c.messages)
        return TransferSummary("move", source, destination, n, stopped=note, dry_run=True)
    _warn_transport(broker)
    with broker.publisher(purpose=f"move {source} -> {destination}") as pub:
        pub.check_destination("", destination)
        t = Transfer(
            broker,
            source,
            commit=lambda: None,  # the publisher's confirms are the commit (flushed before each ack)
            verb="published to",
            where=repr(destination),
            limit=limit,
            select=safe_select(task),
            putback=None if broker.returns_in_place else pub,
            sink=pub,
            scan=scan,
            idle=idle,
            prefetch=prefetch,
            batch=batch,
            purpose="move",
        )
        with t.guard() as tally, events.progress(f"moving {source} -> {destination}", c.messages or None) as bar:
            for item in t:
                pub.publish(for_republish(item.raw), "", destination)
                bar.advance()
    return TransferSummary("move", source, destination, tally.done, put_back=tally.put_back, stopped=tally.stopped)
