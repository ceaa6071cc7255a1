"""Requeue from a dead-letter queue (``task requeue --from``), on the one transfer engine (taskctl.transfer).

Applies celery-formats §5.5: body bytes, headers and properties are copied verbatim except the AMQP
``expiration`` (dropped); a past ``expires`` or ``eta`` is reported and the message skipped (put back to the tail
of the dead-letter queue) unless the caller resets it. Messages are published with confirms and only then acked
in the source; rows are shown once their batch is acked. A message that cannot be decoded (100,000 nested JSON
levels, bad bytes) is requeued as raw bytes with a note, never stopping the batch, and an error part-way first
commits what was confirmed, so a rerun never publishes it again. ``--checkpoint`` and ``--retries`` work as for
`queue move` (taskctl.transfer): a rerun with the same checkpoint acks what an earlier run published without
publishing it again, and a lost broker connection is opened again.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from taskctl import backends, events
from taskctl.formats import message as msgfmt
from taskctl.models import Outcome, RequeuedTask
from taskctl.queues.drain import left_of, open_checkpoint
from taskctl.tasks import REQUEUE_BATCH, _streaming, _Tally
from taskctl.transfer import RETRIES, Item, Transfer

if TYPE_CHECKING:
    from taskctl.config import Settings


def _past(value: Any, now: dt.datetime) -> bool:
    t = msgfmt.parse_time(value)
    return t is not None and t <= now


def _expiry_fix(raw: msgfmt.RawMessage, reset: bool, now: dt.datetime) -> tuple[msgfmt.RawMessage | None, str | None]:
    """The message to publish (None: skip) and a note, after the §5.5 expires/eta check."""
    problems = msgfmt.republish_problems(raw, now)
    if not problems:
        return raw, None
    if not reset:
        return None, "; ".join(problems) + " (--reset-expiry to run it now)"
    headers = dict(raw.headers or {})
    if "task" not in headers:
        return None, "protocol 1 message: its expires/eta live in the body and are not rewritten"
    cleared = [h for h in ("expires", "eta") if _past(headers.get(h), now)]
    for h in cleared:
        headers[h] = None
    return replace(raw, headers=headers), "cleared past " + " and ".join(cleared)


def _death_queue(raw: msgfmt.RawMessage) -> str | None:
    """The queue RabbitMQ dead-lettered the message from: the newest ``x-death`` entry's ``queue``."""
    deaths = (raw.headers or {}).get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        q = deaths[0].get("queue")
        if isinstance(q, bytes):
            q = q.decode("utf-8", "replace")
        return str(q) if q else None
    first = (raw.headers or {}).get("x-first-death-queue")
    return str(first) if first else None


def _requeue_row(raw: msgfmt.RawMessage, source: str, to: str | None) -> tuple[RequeuedTask, str | None]:
    """The row for RAW and its task name; a message that cannot be decoded still gets one (no id, no name)."""
    try:
        dec = msgfmt.decode(raw)
        task_id, task = dec.task_id, dec.task
        problem = None
    except _POISON as exc:
        task_id, task = None, None
        problem = f"undecodable ({type(exc).__name__}): requeued as raw bytes"
    try:
        target = to or _death_queue(raw)
    except _POISON:
        target = to
    return RequeuedTask(task_id, task, source, target, "requeued", note=problem), task


#: what decoding a hostile message can raise (deep nesting, bad bytes, huge numbers)
_POISON = (RecursionError, ValueError, TypeError, UnicodeError, OverflowError, KeyError)


def requeue_from_queue(
    settings: Settings,
    source: str,
    *,
    to: str | None = None,
    limit: int | None = None,
    task_glob: str | None = None,
    reset_expiry: bool = False,
    dry_run: bool = False,
    checkpoint: str | None = None,
    retries: int = RETRIES,
) -> Outcome:
    """Each message of SOURCE (a dead-letter queue) back to the queue it died in, or TO; one pass.

    Runs on taskctl.transfer: published with confirms, then acked; rows are shown once their batch is acked,
    and an error part-way first commits what was confirmed, so a rerun never publishes it again.
    """
    broker = backends.open_broker(settings)
    job = {
        "command": "task requeue --from",
        "broker": broker.masked_url,
        "source": source,
        "to": to,
        "task": task_glob,
        "limit": limit,
        "reset_expiry": reset_expiry,
    }
    cp = open_checkpoint(checkpoint, dry_run, job)
    start = broker.stats(source)  # NotFoundError (exit 3) before anything streams
    if not start.certain and start.messages == 0:
        events.warn(f"queue {source!r} is empty or missing ({broker.scheme}:// cannot tell)")
    no_target = "no x-death header: pass --to QUEUE"
    if to is None and broker.knows_dead_letter_sources:
        # SQS: no x-death; the queue whose redrive policy names SOURCE is where its messages died
        sources = broker.dead_letter_sources(source)
        if len(sources) == 1:
            to = sources[0]
        else:
            which = (
                f"several queues dead-letter into it ({', '.join(sources[:3])})"
                if sources
                else "no queue's redrive policy names it"
            )
            no_target = f"{which}: pass --to QUEUE"

    def matches(raw: msgfmt.RawMessage) -> bool:
        try:
            name = msgfmt.task_name(raw)
        except _POISON:
            return False
        return bool(name and task_glob and fnmatch.fnmatchcase(name, task_glob))

    def dry(tally: _Tally) -> Iterator[RequeuedTask]:
        """Nothing is published or acked: every message returns when the getter closes."""
        budget = start.messages if limit is None else min(limit, start.messages)
        now = dt.datetime.now(dt.UTC)
        with broker.getter(source, purpose="requeue dry run") as getter:
            seen = 0
            while seen < start.messages and tally.total < budget:
                d = getter.get()
                if d is None:
                    break
                seen += 1
                if task_glob and not matches(d.raw):
                    continue
                row, _ = _requeue_row(d.raw, source, to)
                tally.total += 1
                try:
                    fixed, note = _expiry_fix(d.raw, reset_expiry, now)
                except _POISON:
                    fixed, note = d.raw, None
                if row.queue is None:
                    tally.skipped += 1
                    yield replace(row, action="skipped", note=no_target)
                elif fixed is None:
                    tally.skipped += 1
                    yield replace(row, action="skipped", note=note)
                else:
                    tally.done += 1
                    yield replace(row, action="would-requeue", note=note or row.note)

    def gen(tally: _Tally) -> Iterator[RequeuedTask]:
        if dry_run:
            yield from dry(tally)
            return
        now = dt.datetime.now(dt.UTC)
        ready: list[RequeuedTask] = []

        def committed(items: list[Item]) -> None:
            for item in items:
                if isinstance(item.row, RequeuedTask):
                    if item.row.action == "requeued":
                        tally.done += 1
                    ready.append(item.row)

        t = Transfer(
            broker,
            source,
            commit=lambda: None,  # the publisher's confirms are the commit
            verb="requeued from",
            where=repr(source),
            limit=left_of(limit, cp),
            select=matches if task_glob else None,
            publisher=lambda: broker.publisher(purpose="requeue"),
            scan=start.messages,
            batch=REQUEUE_BATCH,
            use_get=True,
            purpose="requeue",
            on_commit=committed,
            retries=retries,
            checkpoint=cp,
        )
        with t.guard() as moved:
            for item in t:
                row, _ = _requeue_row(item.raw, source, to)
                tally.total += 1
                try:
                    fixed, note = _expiry_fix(item.raw, reset_expiry, now)
                except _POISON:
                    fixed, note = item.raw, None
                if row.queue is None:
                    item.row = replace(row, action="skipped", note=no_target)
                    tally.skipped += 1
                    t.put_back(item)
                elif fixed is None:
                    item.row = replace(row, action="skipped", note=note)
                    tally.skipped += 1
                    t.put_back(item)
                else:
                    t.check_destination("", row.queue)
                    t.publish(item, msgfmt.for_republish(fixed), "", row.queue)
                    item.row = replace(row, note=note or row.note)
                yield from ready
                ready.clear()
        yield from ready
        if cp is not None:
            tally.summary = f"{cp.earlier} requeued by earlier runs with checkpoint {cp.path}" + (
                f" ({moved.recovered} of them acked now without publishing again)" if moved.recovered else ""
            )

    return _streaming(gen)
