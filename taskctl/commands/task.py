"""`taskctl task ...`: revoke tasks on live workers, list revoked ids, requeue dead letters and failures."""

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
    read_ids,
)
from taskctl.errors import NotFoundError, UsageError
from taskctl.models import Listing, Outcome, RevokeMatch, RevokeReport

if TYPE_CHECKING:
    from taskctl import revokes, tasks
else:
    revokes = lazy_module("taskctl.revokes")
    tasks = lazy_module("taskctl.tasks")

app = typer.Typer(
    no_args_is_help=True,
    help="Revoke tasks on live workers, list revoked ids, requeue dead-lettered or failed tasks.",
)

IDS_HELP = "Task ids (UUIDs); '-' reads whitespace-separated ids from stdin."
ANY_ID_HELP = "Accept custom (non-UUID) task ids given with apply_async(task_id=...)."
REPLY_TIMEOUT_HELP = "Collect worker replies for this long (90, 1.5s); 0 sends without waiting."
RESET_EXPIRY_HELP = "Clear a past 'expires' or 'eta' header instead of skipping the message (the task runs now)."


@app.command()
def revoke(
    task_ids: list[str] = typer.Argument(None, metavar="[ID...]", help=IDS_HELP, show_default=False),
    task: str = typer.Option(None, "--task", metavar="GLOB", help="Tasks whose name matches (held, queued, stored)."),
    root: str = typer.Option(None, "--root", metavar="ID", help="Every unfinished task of this workflow."),
    queue: str = typer.Option(None, "--queue", metavar="Q", help="Tasks queued in Q, or held after delivery from Q."),
    scan: int = typer.Option(
        10_000,  # revokes.DEFAULT_SCAN, written out so --help does not import the operation
        "--scan",
        min=1,
        metavar="N",
        help="Selectors read at most N messages per queue (and N stored results for --task).",
    ),
    terminate: bool = typer.Option(False, "--terminate", help="Also kill the process running the task, if any."),
    signal: str = typer.Option("SIGTERM", "--signal", metavar="SIG", help="Signal for --terminate (TERM, KILL, 9)."),
    tree: bool = typer.Option(False, "--tree", help="Revoke every unfinished task in each id's result tree."),
    reply_timeout: str = typer.Option("1", "--reply-timeout", metavar="S", help=REPLY_TIMEOUT_HELP),
    no_mark: bool = typer.Option(False, "--no-mark", help="Do not store REVOKED in the result backend."),
    any_id: bool = typer.Option(False, "--any-id", help=ANY_ID_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
) -> RevokeReport | Listing:
    """Revoke tasks on every online worker and mark them REVOKED.

    The revoke is Celery's own remote-control broadcast: workers online now drop the tasks when they
    arrive (with --terminate also kill them while running) and keep the ids in memory for about 3 hours.
    Workers that are offline never see it. taskctl also stores REVOKED in the result backend, as
    Celery 5.7 workers do: never over SUCCESS, FAILURE or REVOKED, nor over a state a running worker set.

    Selectors (--task, --root, --queue; every one given must hold) look in three places: what online
    workers hold (active, reserved, scheduled), the ready messages of the queues (--queue, else the queues
    the workers consume, else 'celery'; peeked, never consumed nor reordered, at most --scan each; a quorum
    queue with a delivery limit is skipped) and the result backend (--root: the workflow's stored tree;
    --task: unfinished results whose stored meta names the task, written with result_extended). --dry-run
    lists each match with where it was found. A queued task revoked now is discarded by a worker online now
    when the message reaches it.

    Examples:

    \b
      taskctl task revoke 5f1c0a38-6f1e-4c55-9c1e-2f4c1d0f5a11 --yes
      taskctl task revoke ID --terminate --signal KILL --yes -o json
      taskctl task revoke ROOT_ID --tree --dry-run
      taskctl result list --state PENDING -o plain | awk 'NR>1{print $1}' | taskctl task revoke - --yes
      taskctl task revoke --task 'app.reports.*' --queue reports --dry-run
      taskctl task revoke --root 5f1c0a38-6f1e-4c55-9c1e-2f4c1d0f5a11 --dry-run -o json
    """
    timeout = duration(reply_timeout, "--reply-timeout") or 0.0
    if task or root or queue:
        if task_ids:
            raise UsageError("give task ids or selectors (--task, --root, --queue), not both")
        matches = revokes.select(
            config.current(), task_glob=task, root=root, queue=queue, timeout=timeout or 1.0, scan=scan
        )
        if dry_run:
            return Listing(RevokeMatch, matches)
        task_ids = [m.task_id for m in matches]
        if not task_ids:
            raise NotFoundError(
                "no task matched the selectors",
                hint="selectors look at what online workers hold, ready queued messages and stored results",
            )
        any_id = True
    ids = tasks.normalize_ids(read_ids(task_ids or []), any_id=any_id)
    confirm(f"revoke {len(ids)} task(s)", yes=yes, dry_run=dry_run)
    return tasks.revoke(
        config.current(),
        ids,
        terminate=terminate,
        signal=signal,
        tree=tree,
        reply_timeout=timeout,
        mark=not no_mark,
        dry_run=dry_run,
    )


@app.command()
def revoked(
    reply_timeout: str = typer.Option("1", "--reply-timeout", metavar="S", help="Collect replies for this long."),
) -> Listing:
    """List the task ids online workers hold as revoked.

    Examples:

    \b
      taskctl task revoked
      taskctl task revoked --reply-timeout 3 -o json
    """
    return tasks.revoked(config.current(), reply_timeout=duration(reply_timeout, "--reply-timeout") or 0.0)


@app.command()
def requeue(
    task_ids: list[str] = typer.Argument(
        None, metavar="[ID...]", help="With --from-results: the task ids.", show_default=False
    ),
    from_queue: str | None = typer.Option(
        None, "--from", metavar="QUEUE", help="Dead-letter queue to take messages from."
    ),
    from_results: bool = typer.Option(
        False, "--from-results", help="Rebuild each ID's message from its stored result."
    ),
    to: str | None = typer.Option(None, "--to", metavar="QUEUE", help="Publish here instead of the original queue."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, metavar="N", help=LIMIT_HELP),
    task: str | None = typer.Option(None, "--task", metavar="GLOB", help=TASK_GLOB_HELP),
    new_id: bool = typer.Option(False, "--new-id", help="--from-results: publish under a new task id."),
    reset_expiry: bool = typer.Option(False, "--reset-expiry", help=RESET_EXPIRY_HELP),
    unsafe_pickle: bool = typer.Option(False, "--unsafe-pickle", help="Read pickled result meta (runs pickle)."),
    any_id: bool = typer.Option(False, "--any-id", help=ANY_ID_HELP),
    checkpoint: str | None = typer.Option(None, "--checkpoint", metavar="FILE", help=CHECKPOINT_HELP),
    retries: int | None = typer.Option(
        None, "--retries", min=0, metavar="N", help=RETRIES_HELP + " --from only; default 5.", show_default=False
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
) -> Outcome:
    """Put dead-lettered or failed tasks back on their queues.

    --from DLQ: each message goes back to the queue it was dead-lettered from (its x-death header) or to
    --to, byte-exact except the AMQP expiration; published with a confirm, then acked in the DLQ (at least
    once: a kill in between leaves a copy in both). --from-results: a protocol-2 message is rebuilt from the
    result_extended meta (name, args, kwargs, queue), under the same task id unless --new-id. A rebuilt
    message cannot restore chain links, callbacks or errbacks: Celery never stores them in the result.
    A past 'expires' or 'eta' is reported and the message skipped unless --reset-expiry. Exit 1 when any
    message was skipped. --checkpoint FILE: run again with the same FILE (and the same ids), a killed
    requeue goes on where it stopped; only the batch in flight at the kill can be published twice.

    Examples:

    \b
      taskctl task requeue --from celery.dlq --yes
      taskctl task requeue --from celery.dlq --checkpoint requeue.ckpt --retries 10 --yes
      taskctl task requeue --from celery.dlq --to celery --limit 100 --dry-run
      taskctl task requeue --from-results 5f1c0a38-6f1e-4c55-9c1e-2f4c1d0f5a11 --yes
    """
    s = config.current()
    if from_results == (from_queue is not None):
        from taskctl.errors import UsageError

        if from_results:
            raise UsageError("--from and --from-results exclude each other", hint="requeue from one source at a time")
        raise UsageError("say where the tasks come from: --from QUEUE or --from-results ID...")
    if from_results:
        ids = tasks.normalize_ids(read_ids(task_ids or []), any_id=any_id)
        confirm(f"requeue {len(ids)} task(s) from their stored results", yes=yes, dry_run=dry_run)
        if retries is not None:
            raise UsageError("--retries goes with --from QUEUE")
        return tasks.requeue_from_results(
            s,
            ids,
            to=to,
            new_id=new_id,
            reset_expiry=reset_expiry,
            unsafe_pickle=unsafe_pickle,
            dry_run=dry_run,
            checkpoint=checkpoint,
        )
    if task_ids:
        from taskctl.errors import UsageError

        raise UsageError("task ids go with --from-results; --from QUEUE takes messages from the queue")
    assert from_queue is not None
    confirm(f"requeue messages from {from_queue}", yes=yes, dry_run=dry_run)
    return tasks.requeue_from_queue(
        s,
        from_queue,
        to=to,
        limit=limit,
        task_glob=task,
        reset_expiry=reset_expiry,
        dry_run=dry_run,
        checkpoint=checkpoint,
        retries=retries,
    )
