"""Taking messages off queues and putting them back: drain (to a file or stdout), move, publish.

Drain and move run on taskctl.transfer (a message is acked only once its line is fsynced, or stdout flushed, or
its copy confirmed by the broker). kombu's ``filesystem://`` transport deletes a message when it is delivered,
before the ack, so there a kill can lose the messages in flight.

``--task``: one pass over at most ``--scan`` messages (default: those ready at the start; at most 10,000 where
the broker returns unacked messages in place). On RabbitMQ the messages not taken are never acked, so they stay
where they were, in order; elsewhere they are published back to the tail (in order among themselves).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from taskctl import backends, events
from taskctl.config import Settings
from taskctl.errors import OperationError, UsageError
from taskctl.formats.message import (
    LineEncoder,
    RawMessage,
    decode,
    drain_record,
    encode_value,
    for_republish,
    from_record,
    matches_task,
    message_key,
    republish_problems,
)
from taskctl.models import DrainedLine, TransferSummary
from taskctl.transfer import BATCH, DISK_FULL, PREFETCH, Transfer, flush_stdout

if TYPE_CHECKING:
    from taskctl.backends.base import Broker, Publisher

FILESYSTEM_WARNING = (
    "kombu's filesystem:// transport deletes a message when it is delivered, before the ack: "
    "a kill during this command can lose the messages in flight"
)
#: what decoding a hostile message can raise (100,000 nested JSON levels, bad bytes, huge numbers)
POISON = (RecursionError, ValueError, TypeError, UnicodeError, OverflowError, KeyError)


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
        """Flush and fsync; an OSError (a full disk) propagates, so nothing more is acked."""
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        try:
            self.commit()
        except OSError:
            pass  # already reported by the transfer; the lines not synced were not acked
        finally:
            try:
                self.fh.close()
            except OSError:
                pass


def raw_record(raw: RawMessage, queue: str, problem: str) -> dict[str, Any]:
    """A drain line for a message that cannot be decoded: the body as base64 bytes, nothing interpreted."""
    try:
        headers = encode_value(raw.headers or {})
        props = encode_value(raw.properties or {})
        json.dumps([headers, props])
    except POISON:
        headers, props = {}, {}
        problem += "; headers not kept (too deep to encode)"
    return {
        "queue": queue,
        "kind": "other",
        "task_id": None,
        "task": None,
        "state": None,
        "size": len(raw.body),
        "error": problem,
        "message": {
            "exchange": raw.exchange,
            "routing_key": raw.routing_key,
            "redelivered": raw.redelivered,
            "content_type": raw.content_type,
            "content_encoding": raw.content_encoding,
            "headers": headers,
            "properties": props,
            "body_encoding": "base64",
            "body": base64.b64encode(raw.body).decode("ascii"),
        },
    }


def _problem(exc: BaseException) -> str:
    return f"undecodable ({type(exc).__name__}): kept as raw bytes"


def safe_select(task: str | None) -> Callable[[RawMessage], bool] | None:
    """The --task filter; a message whose name cannot be read does not match (it stays in the queue)."""
    if not task:
        return None

    def select(raw: RawMessage) -> bool:
        try:
            return matches_task(raw, task)
        except POISON:
            return False

    return select


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
                        problems.append(f"message {tally.seen}: {_problem(exc)}")
                        data = _json_line(raw_record(item.raw, queue, _problem(exc)))
                    out.write_line(data)
                    bar.advance()
    finally:
        out.close()
    _report(problems)
    return TransferSummary(
        "drain",
        queue,
        str(path),
        tally.done,
        put_back=tally.put_back,
        stopped=tally.stopped,
        problems=tuple(problems),
    )


def _json_line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


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
                    events.warn(f"message {tally.seen}: {_problem(exc)}")
                    record = raw_record(item.raw, queue, _problem(exc))
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


# -- publish --------------------------------------------------------------------------------------------------------


def read_records(path: str) -> Iterator[tuple[int, RawMessage | None, str | None]]:
    """(line number, message or None, problem) for each non-empty line of a drain file ('-': stdin)."""
    fh: IO[str]
    if path == "-":
        fh = sys.stdin
    else:
        try:
            fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
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
            except POISON as exc:
                yield n, None, f"line {n}: not a drain record ({type(exc).__name__}: {str(exc)[:60]})"
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
            try:
                if dedupe:
                    key = message_key(raw)
                    if key in seen:
                        skipped += 1
                        continue
                    seen.add(key)
                for p in republish_problems(raw):
                    problems.append(f"{decode(raw).task_id}: {p}")
            except POISON as exc:
                problems.append(f"line {n}: {_problem(exc)}")
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
            try:
                for raw, exchange, rk in plan():
                    pub.check_destination(exchange, rk)
                    pub.publish(raw, exchange, rk)
                    destinations.add(f"{exchange}/{rk}" if exchange else rk)
                pub.flush()
            except OperationError as exc:
                raise type(exc)(f"{exc.message}; {pub.confirmed} published and confirmed", hint=exc.hint) from None
            sent = pub.confirmed
    _report(problems)
    dest = to or (",".join(sorted(destinations)) if destinations else "-")
    return TransferSummary(
        "publish", path, dest, sent, skipped=skipped, stopped="end", dry_run=dry_run, problems=tuple(problems)
    )


__all__ = ["DISK_FULL", "FILESYSTEM_WARNING", "LineFile", "count", "drain", "move", "publish", "read_records"]
