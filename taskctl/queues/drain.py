"""Taking messages off queues: drain (to a file or stdout) and move; `queue publish` is in taskctl.queues.publish.

Drain and move run on taskctl.transfer (a message is acked only once its line is fsynced, or stdout flushed, or
its copy confirmed by the broker). kombu's ``filesystem://`` transport deletes a message when it is delivered,
before the ack, so there a kill can lose the messages in flight.

``--checkpoint FILE``: the keys of each committed batch are written to FILE before the ack, and a drain file's
committed length with them; a rerun with the same FILE cuts a drain file back to that length (the lines after it
were never acked, so their messages are back in the queue) and acks the messages it recognises without writing
or publishing them again. ``--retries N``: a lost broker connection is opened again (taskctl.transfer).

``--task``: one pass over at most ``--scan`` messages (default: those ready at the start; at most 10,000 where
the broker returns unacked messages in place). On RabbitMQ the messages not taken are never acked, so they stay
where they were, in order; elsewhere they are published back to the tail (in order among themselves).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskctl import backends, events
from taskctl.config import Settings
from taskctl.errors import UsageError
from taskctl.formats.message import LineEncoder, drain_record, for_republish
from taskctl.models import DrainedLine, TransferSummary
from taskctl.queues.drainfile import POISON, LineFile, json_line, problem_of, raw_record, safe_select
from taskctl.queues.publish import report
from taskctl.transfer import BATCH, PREFETCH, RETRIES, Transfer, flush_stdout

if TYPE_CHECKING:
    from taskctl.backends.base import Broker, Publisher
    from taskctl.results.checkpoint import Checkpoint

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


def _putback(broker: Broker, task: str | None, purpose: str) -> Callable[[], AbstractContextManager[Publisher]] | None:
    """A publisher to put back what --task does not take, where the broker cannot leave it in place."""
    if task and not broker.returns_in_place:
        return lambda: broker.publisher(purpose=purpose)
    return None


def open_checkpoint(path: str | None, dry_run: bool, job: dict[str, Any]) -> Checkpoint | None:
    """The --checkpoint of a queue job (imported only when one is given)."""
    if path is None:
        return None
    if dry_run:
        raise UsageError("--checkpoint records progress; a --dry-run makes none")
    from taskctl.results.checkpoint import Checkpoint

    return Checkpoint.open(path, job)


def left_of(limit: int | None, cp: Checkpoint | None) -> int | None:
    """--limit counts every run with the same checkpoint: what earlier runs did is taken off."""
    if limit is None or cp is None:
        return limit
    return max(0, limit - cp.earlier)


def _resume_file(path: Path, cp: Checkpoint) -> None:
    """A drain file as its checkpoint left it: lines after the committed length were never acked (their messages
    are back in the queue), so they are cut off and written again; a file shorter than that was changed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = 0
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    offset = cp.state.get("offset")
    if not cp.resumed or not isinstance(offset, int):
        cp.state["offset"] = size
        cp.save()  # before any line: a kill before the first commit still resumes at this length
        return
    if size < offset:
        raise UsageError(
            f"{path} is shorter ({size} bytes) than checkpoint {cp.path} recorded ({offset} bytes): it was changed",
            hint="drain to a new file with a new checkpoint",
        )
    if size > offset:
        try:
            with path.open("r+b") as fh:
                fh.truncate(offset)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise UsageError(f"cannot cut {path} back to its checkpoint: {exc.strerror or exc}") from None
        events.note(f"{path}: {size - offset} bytes after the checkpoint removed (their messages were not acked)")


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
    checkpoint: str | None = None,
    retries: int = RETRIES,
) -> TransferSummary | Iterator[DrainedLine]:
    """Remove messages into FILE (a summary is returned) or, without FILE, yield the lines for stdout."""
    broker = backends.open_broker(settings)
    _check_limit(limit)
    job = {
        "command": "queue drain",
        "broker": broker.masked_url,
        "queue": queue,
        "file": str(Path(file).resolve()) if file is not None else "-",
        "task": task,
        "limit": limit,
    }
    cp = open_checkpoint(checkpoint, dry_run, job)
    c = broker.stats(queue)
    if scan is None and task:
        scan = c.messages
    if dry_run:
        n, note = count(broker, queue, limit=limit, task=task, scan=scan, ready=c.messages)
        return TransferSummary("drain", queue, file or "-", n, stopped=note, dry_run=True)
    _warn_transport(broker)
    run = _Run(left_of(limit, cp), task, scan, idle, prefetch, batch, retries, cp)
    if file is not None:
        return _drain_to_file(broker, queue, Path(file), run)
    return _drain_to_stdout(broker, queue, run)


class _Run:
    """How a drain or move runs (the options every transfer takes)."""

    def __init__(
        self,
        limit: int | None,
        task: str | None,
        scan: int | None,
        idle: float,
        prefetch: int,
        batch: int,
        retries: int,
        cp: Checkpoint | None,
    ) -> None:
        self.limit, self.task, self.scan, self.idle = limit, task, scan, idle
        self.prefetch, self.batch, self.retries, self.cp = prefetch, batch, retries, cp

    @property
    def earlier(self) -> int:
        return self.cp.earlier if self.cp is not None else 0


def _drain_to_file(broker: Broker, queue: str, path: Path, run: _Run) -> TransferSummary:
    if run.cp is not None:
        _resume_file(path, run.cp)
    out = LineFile(path)
    line = LineEncoder(queue).line
    problems: list[str] = []
    try:
        t = Transfer(
            broker,
            queue,
            commit=out.commit,
            verb="written to",
            where=str(path),
            limit=run.limit,
            select=safe_select(run.task),
            publisher=_putback(broker, run.task, "drain put-back"),
            scan=run.scan,
            idle=run.idle,
            prefetch=run.prefetch,
            batch=run.batch,
            retries=run.retries,
            checkpoint=run.cp,
            checkpoint_state=lambda: {"offset": out.fh.tell()},
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
        earlier=run.earlier,
        recovered=tally.recovered,
        reconnects=tally.reconnects,
    )


def _report(problems: list[str]) -> None:
    for p in problems[:20]:
        events.warn(p)
    if len(problems) > 20:
        events.warn(f"... and {len(problems) - 20} more")


def _drain_to_stdout(broker: Broker, queue: str, run: _Run) -> Iterator[DrainedLine]:
    """Lines for the renderer; a line is acked only after the renderer asked for the next (it was written)."""
    t = Transfer(
        broker,
        queue,
        commit=flush_stdout,
        verb="written to",
        where="stdout",
        limit=run.limit,
        select=safe_select(run.task),
        publisher=_putback(broker, run.task, "drain put-back"),
        scan=run.scan,
        idle=run.idle,
        prefetch=run.prefetch,
        batch=run.batch,
        retries=run.retries,
        checkpoint=run.cp,
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
    events.note(
        f"drained {tally.done} messages from {queue} (put back {tally.put_back}; stopped: {tally.stopped}"
        + (f"; {run.earlier} by earlier runs with this checkpoint" if run.cp is not None else "")
        + ")"
    )


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
    checkpoint: str | None = None,
    retries: int = RETRIES,
) -> TransferSummary:
    """Move messages SOURCE -> DESTINATION at least once: publish with confirms, then ack the source."""
    if source == destination:
        raise UsageError("source and destination are the same queue")
    _check_limit(limit)
    broker = backends.open_broker(settings)
    job = {
        "command": "queue move",
        "broker": broker.masked_url,
        "source": source,
        "destination": destination,
        "task": task,
        "limit": limit,
    }
    cp = open_checkpoint(checkpoint, dry_run, job)
    c = broker.stats(source)
    broker.stats(destination)
    if scan is None and task:
        scan = c.messages
    if dry_run:
        n, note = count(broker, source, limit=limit, task=task, scan=scan, ready=c.messages)
        return TransferSummary("move", source, destination, n, stopped=note, dry_run=True)
    _warn_transport(broker)
    t = Transfer(
        broker,
        source,
        commit=lambda: None,  # the publisher's confirms are the commit (flushed before each ack)
        verb="published to",
        where=repr(destination),
        limit=left_of(limit, cp),
        select=safe_select(task),
        publisher=lambda: broker.publisher(purpose=f"move {source} -> {destination}"),
        scan=scan,
        idle=idle,
        prefetch=prefetch,
        batch=batch,
        purpose="move",
        retries=retries,
        checkpoint=cp,
    )
    try:
        t.check_destination("", destination)
    except BaseException:
        t.close()
        raise
    with t.guard() as tally, events.progress(f"moving {source} -> {destination}", c.messages or None) as bar:
        for item in t:
            t.publish(item, for_republish(item.raw), "", destination)
            bar.advance()
    return TransferSummary(
        "move",
        source,
        destination,
        tally.done,
        put_back=tally.put_back,
        stopped=tally.stopped,
        earlier=cp.earlier if cp is not None else 0,
        recovered=tally.recovered,
        reconnects=tally.reconnects,
    )
