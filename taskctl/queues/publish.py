"""`queue publish`: drained messages back to the broker, byte-exact except ``expiration``, with confirms.

Each message id is sent once unless told otherwise (a killed drain can write a message twice). A line that is
not a drain record, or a message that cannot be decoded, is reported and never stops the file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import IO

from taskctl import backends, events
from taskctl.config import Settings
from taskctl.errors import OperationError, UsageError
from taskctl.formats.message import RawMessage, decode, for_republish, from_record, message_key, republish_problems
from taskctl.models import TransferSummary
from taskctl.queues.drainfile import POISON, problem_of


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
                problems.append(f"line {n}: {problem_of(exc)}")
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
    report(problems)
    dest = to or (",".join(sorted(destinations)) if destinations else "-")
    return TransferSummary(
        "publish", path, dest, sent, skipped=skipped, stopped="end", dry_run=dry_run, problems=tuple(problems)
    )


def report(problems: list[str]) -> None:
    for p in problems[:20]:
        events.warn(p)
    if len(problems) > 20:
        events.warn(f"... and {len(problems) - 20} more")
