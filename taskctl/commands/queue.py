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


MAX_MESSAGE_SIZE_HELP = (
    "The broker's largest message (RabbitMQ's max_message_size) when not its default: 16MiB, 134217728."
)


def _max_size(text: str | None) -> int | None:
    from taskctl.units import parse_size

    if text is None:
        return None
    size = parse_size(text, option="--max-message-size")
    if size < 1:
        raise UsageError("--max-message-size must be more than 0")
    return size


@app.command()
def stats(
    queue: list[str] = typer.Argument(None, metavar="QUEUE...", help="Queues (default: celery)."),
    max_message_size: str = typer.Option(None, "--max-message-size", metavar="SIZE", help=MAX_MESSAGE_SIZE_HELP),
) -> Outcome:
    """Show ready messages and consumers of queues, without declaring or changing them.

    A missing queue exits 3, after the rows of the queues that exist. On Redis (and filesystem://) an empty queue does not exist: it shows 0 with
    the note "empty or missing". size_limit is the largest message the broker accepts (SQS: 256 KiB; RabbitMQ:
    its version's default max_message_size, which its management API does not show, unless --max-message-size).

    Examples:

    \b
      taskctl queue stats
      taskctl queue stats celery priority -o json
    """
    return queues.stats(config.current(), queue or ["celery"], max_message_size=_max_size(max_message_size))


@app.command("list")
def list_(
    match: str = typer.Option(None, "--match", metavar="GLOB", help="Only queues whose name matches."),
) -> Listing:
    """List every queue of the vhost with counts, consumers and idle time (RabbitMQ management API).

    Uses --management-url, else the broker's host on port 15672 with the broker's user and password. On Redis the
    queues come from kombu's bindings: ready messages (all priority lists), unacked ones (kombu's unacked hash)
    and the bound exchanges; consumers cannot be counted there.

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
        False,
        "--force",
        help="Peek a quorum queue with a delivery limit (or one whose limit cannot be read), or an SQS queue with a redrive policy.",
    ),
    max_message_size: str = typer.Option(None, "--max-message-size", metavar="SIZE", help=MAX_MESSAGE_SIZE_HELP),
) -> Listing:
    """Show messages at the head of a queue and leave them there, decoded.

    On Redis: read with LRANGE in the order workers receive them (highest priority list first, oldest first);
    nothing is popped or moved. Elsewhere: reads with basic_get and gives every message back by closing the channel (order kept on RabbitMQ);
    meanwhile workers cannot see them, and they come back marked redelivered. On quorum queues each peek
    counts as a delivery: taskctl warns, and refuses (exit 4) where a delivery limit could drop messages,
    or where it cannot read the limit (management API unreachable or login refused), unless --force. Pickle bodies are never unpickled. -o json shows each complete message.

    A message of at least 90% of the broker's size limit (see queue stats) is flagged: a note, and
    "near_limit": true with "size_limit" in -o json.

    Examples:

    \b
      taskctl queue peek celery -n 5
      taskctl queue peek celery -o json | jq '.[].size'
    """
    found = queues.peek(config.current(), queue, limit, force=force, max_message_size=_max_size(max_message_size))
    return Listing(QueueMessage, found)


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


@app.command()
def unacked(
    queue: str = typer.Argument(None, metavar="[QUEUE]", help="Only this queue (a glob); default: every queue."),
) -> Listing:
    """Show what workers hold without an ack (Redis): task id, name, queue, age, past the visibility timeout.

    kombu keeps a message a worker received and has not acked in the Redis 'unacked' hash; if the worker
    dies it stays there until some worker restores it after visibility_timeout (default one hour): such
    tasks show overdue=yes and are lost until then (see `queue restore`). Also lists taskctl's own
    in-flight lists (kind inflight): messages a running drain or move holds, or a killed one left behind
    (overdue=yes), which its next run or `queue restore` puts back.

    Examples:

    \b
      taskctl queue unacked
      taskctl queue unacked celery -o json | jq '.[] | select(.overdue)'
    """
    from taskctl.models import UnackedMessage

    return Listing(UnackedMessage, queues.unacked(config.current(), queue))


@app.command()
def restore(
    queue: str = typer.Argument(None, metavar="[QUEUE]", help="Only this queue (a glob); default: every queue."),
    older_than: str = typer.Option(
        None,
        "--older-than",
        metavar="D",
        help="Held at least this long (90, 10m, 1h; 0: all). Default: the visibility timeout, as kombu.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
) -> Listing:
    """Put unacked messages back on their queues as kombu's restore does (Redis).

    Each message goes back at the consuming end of its queue, marked redelivered, in one step that first
    checks it is still in 'unacked': safe while live workers restore or ack too, at least once (it is in
    its queue before it leaves 'unacked'). A message a live worker is still running is run twice if
    restored: the default restores only what is past the visibility timeout. Also puts back taskctl's
    in-flight lists left by a killed drain or move.

    Examples:

    \b
      taskctl queue restore --dry-run
      taskctl queue restore celery --older-than 10m --yes
    """
    from taskctl.models import RestoredMessage

    age = duration(older_than, "--older-than")
    confirm(f"restore unacked messages{' of ' + queue if queue else ''}", yes=yes, dry_run=dry_run)
    return Listing(RestoredMessage, queues.restore(config.current(), queue, older_than=age, dry_run=dry_run))
