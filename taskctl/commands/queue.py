"""`taskctl queue ...`: look at, empty, save, restore and move broker queues (RabbitMQ, Redis, any kombu transport)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from taskctl import config
from taskctl.commands.common import (
    CHECKPOINT_HELP,
    DRY_RUN_HELP,
    LIMIT_HELP,
    RETRIES_HELP,
    TASK_GLOB_HELP,
    YES_HELP,
    confirm,
    duration,
    lazy_module,
)
from taskctl.errors import UsageError
from taskctl.models import DrainedLine, Listing, Outcome, PurgedQueue, QueueMessage, TransferSummary

if TYPE_CHECKING:
    from taskctl import queues
else:
    queues = lazy_module("taskctl.queues")

app = typer.Typer(no_args_is_help=True, help="Look at, purge, drain to a file, publish back and move queue messages.")

IDLE_HELP = "Stop after this long with no message (90, 2s, 1m)."
SCAN_HELP = "With --task: look at no more than N messages (default: those ready at the start)."


@app.command()
def stats(queue: list[str] = typer.Argument(None, metavar="QUEUE...", help="Queues (default: celery).")) -> Outcome:
    """Show ready messages and consumers of queues, without declaring or changing them.

    A missing queue exits 3, after the rows of the queues that exist. On Redis (and filesystem://) an empty queue does not exist: it shows 0 with
    the note "empty or missing".

    Examples:

    \b
      taskctl queue stats
      taskctl queue stats celery priority -o json
    """
    return queues.stats(config.current(), queue or ["celery"])


@app.command("list")
def list_(
    match: str = typer.Option(None, "--match", metavar="GLOB", help="Only queues whose name matches."),
) -> Listing:
    """List every queue of the vhost with counts, consumers and idle time (RabbitMQ management API).

    Uses --management-url, else the broker's host on port 15672 with the broker's user and password.

    Examples:

    \b
      taskctl queue list
      taskctl queue list --match 'celery*' -o json
    """
    from taskctl.models import BrokerQueue

    return Listing(BrokerQueue, queues.list_queues(config.current(), match))


@app.command()
def purge(
    queue: list[str] = typer.Argument(..., metavar="QUEUE...", help="Queues to empty."),
    missing_ok: bool = typer.Option(False, "--missing-ok", help="A missing queue counts as 0 instead of exit 3."),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
) -> Listing:
    """Remove the ready messages of queues and print how many went from each.

    Messages held unacked by workers stay (they return if the worker dies). Every queue is checked
    before any is purged; a missing one exits 3 unless --missing-ok.

    Examples:

    \b
      taskctl queue purge celery --dry-run
      taskctl queue purge celery priority --yes -o json
    """
    confirm(f"purge {', '.join(queue)}", yes=yes, dry_run=dry_run)
    return Listing(PurgedQueue, queues.purge(config.current(), queue, dry_run=dry_run, missing_ok=missing_ok))


@app.command()
def peek(
    queue: str = typer.Argument("celery", metavar="QUEUE", help="Queue to look into."),
    limit: int = typer.Option(10, "--limit", "-n", metavar="N", help=LIMIT_HELP),
    force: bool = typer.Option(
        False, "--force", help="Peek a quorum queue with a delivery limit, or one whose limit cannot be read."
    ),
) -> Listing:
    """Show messages at the head of a queue and leave them there, decoded.

    Reads with basic_get and gives every message back by closing the channel (order kept on RabbitMQ);
    meanwhile workers cannot see them, and they come back marked redelivered. On quorum queues each peek
    counts as a delivery: taskctl warns, and refuses (exit 4) where a delivery limit could drop messages,
    or where it cannot read the limit (management API unreachable or login refused), unless --force. Pickle bodies are never unpickled. -o json shows each complete message.

    Examples:

    \b
      taskctl queue peek celery -n 5
      taskctl queue peek celery -o json | jq '.[].size'
    """
    return Listing(QueueMessage, queues.peek(config.current(), queue, limit, force=force))


@app.command()
def drain(
    ctx: typer.Context,
    queue: str = typer.Argument(..., metavar="QUEUE", help="Queue to empty."),
    file: str = typer.Option(None, "--file", metavar="FILE", help="Append lines here (never truncated)."),
    limit: int = typer.Option(None, "--limit", "-n", metavar="N", help="Stop after N messages."),
    task: str = typer.Option(None, "--task", metavar="GLOB", help=TASK_GLOB_HELP + " Others go back to the tail."),
    idle: str = typer.Option("2", "--idle", metavar="S", help=IDLE_HELP),
    scan: int = typer.Option(None, "--scan", metavar="N", help=SCAN_HELP),
    checkpoint: str = typer.Option(None, "--checkpoint", metavar="FILE", help=CHECKPOINT_HELP),
    retries: int = typer.Option(5, "--retries", min=0, metavar="N", help=RETRIES_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
) -> TransferSummary | Listing:
    """Remove messages from a queue, writing each as one JSON line to FILE or stdout.

    Each line holds the decoded fields and the complete original message (body base64, headers,
    properties, exchange, routing key); `queue publish` puts them back. Without --file the lines go to
    stdout, where durability ends at the pipe. With --task, one pass over the messages ready at the start
    (at most --scan N; at most 10,000 on RabbitMQ): matching ones are taken; on RabbitMQ the others stay
    where they are, elsewhere they are published back to the tail (order kept among themselves).

    At-least-once: a message is acked only after its line is durably written (fsync, in batches smaller
    than the prefetch window), so a kill leaves each message in the output or back in the queue, or both;
    `queue publish` removes the duplicates by task id. kombu's filesystem:// transport deletes a message
    before the ack: there a kill can lose the messages in flight. Stops after --limit messages, or after
    --idle seconds with none.

    --checkpoint FILE: a killed drain run again with the same FILE cuts --file back to its last committed
    line and acks the messages that were written but not acked without writing them again (no duplicates).
    A lost broker connection is reconnected up to --retries times.

    Examples:

    \b
      taskctl queue drain celery --file celery-backup.jsonl --yes
      taskctl queue drain celery --file celery-backup.jsonl --checkpoint drain.ckpt --yes
      taskctl queue drain celery --task 'app.reports.*' --limit 100 --file reports.jsonl --dry-run
      taskctl queue drain dead-letters --yes > dead.jsonl
    """
    if file is None and ctx.find_root().params.get("quiet"):
        raise UsageError("drain to stdout with --quiet would discard the messages", hint="use --file FILE")
    idle_s = duration(idle, "--idle") or 0.0
    confirm(f"remove messages from {queue}", yes=yes, dry_run=dry_run)
    out = queues.drain(
        config.current(),
        queue,
        file=file,
        limit=limit,
        task=task,
        idle=idle_s,
        dry_run=dry_run,
        scan=scan,
        checkpoint=checkpoint,
        retries=retries,
    )
    return out if isinstance(out, TransferSummary) else Listing(DrainedLine, out)


@app.command()
def publish(
    file: str = typer.Argument(..., metavar="FILE", help="Drain file ('-': stdin)."),
    to: str = typer.Option(None, "--to", metavar="QUEUE", help="Publish to this queue instead of the original route."),
    no_dedupe: bool = typer.Option(False, "--no-dedupe", help="Send every line, even a message id seen before."),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
) -> TransferSummary:
    """Publish drained messages back, byte-exact, with publisher confirms.

    Body, headers and properties are sent as drained, except the AMQP 'expiration' (a relative TTL that
    would restart), which is dropped. Each message id is sent once (a killed drain can write a message
    twice) unless --no-dedupe. A past 'expires' is reported: workers will revoke such tasks as expired.

    Examples:

    \b
      taskctl queue publish celery-backup.jsonl
      taskctl queue publish dead.jsonl --to celery --dry-run
    """
    return queues.publish(config.current(), file, to=to, dedupe=not no_dedupe, dry_run=dry_run)


@app.command()
def move(
    source: str = typer.Argument(..., metavar="SRC", help="Queue to take messages from."),
    destination: str = typer.Argument(..., metavar="DST", help="Queue to put them in (must exist)."),
    limit: int = typer.Option(None, "--limit", "-n", metavar="N", help="Stop after N messages."),
    task: str = typer.Option(None, "--task", metavar="GLOB", help=TASK_GLOB_HELP + " Others stay in SRC."),
    idle: str = typer.Option("2", "--idle", metavar="S", help=IDLE_HELP),
    scan: int = typer.Option(None, "--scan", metavar="N", help=SCAN_HELP),
    checkpoint: str = typer.Option(None, "--checkpoint", metavar="FILE", help=CHECKPOINT_HELP),
    retries: int = typer.Option(5, "--retries", min=0, metavar="N", help=RETRIES_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
) -> TransferSummary:
    """Move messages from one queue to another, at least once.

    Each message is published to DST with a publisher confirm on a second connection, then acked in
    SRC; copies are byte-exact as with `queue publish` (no 'expiration'). A kill leaves each message in
    DST or back in SRC, or both (duplicates at most the prefetch window, 1000). With --checkpoint FILE the
    ids of each confirmed batch are recorded before its ack: a rerun acks those without publishing them
    again, so only the publishes of the batch in flight at a kill can be repeated. A lost broker connection
    is reconnected up to --retries times.

    Examples:

    \b
      taskctl queue move celery.retry celery --yes
      taskctl queue move celery.retry celery --checkpoint move.ckpt --yes
      taskctl queue move celery slow --task 'app.reports.*' --limit 500 --dry-run
    """
    idle_s = duration(idle, "--idle") or 0.0
    confirm(f"move messages from {source} to {destination}", yes=yes, dry_run=dry_run)
    return queues.move(
        config.current(),
        source,
        destination,
        limit=limit,
        task=task,
        idle=idle_s,
        dry_run=dry_run,
        scan=scan,
        checkpoint=checkpoint,
        retries=retries,
    )
