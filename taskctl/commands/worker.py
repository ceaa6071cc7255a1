"""`taskctl worker ...`: which workers are up, what they run, hold and consume (Celery remote control)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from taskctl import config
from taskctl.commands.common import DRY_RUN_HELP, YES_HELP, confirm, duration, lazy_module
from taskctl.errors import ExitCode, UsageError
from taskctl.models import (
    ConsumerChange,
    Listing,
    Outcome,
    RegisteredTask,
    Worker,
    WorkerReply,
    WorkerStats,
    WorkerTask,
)

if TYPE_CHECKING:
    from taskctl import workers
else:
    workers = lazy_module("taskctl.workers")

app = typer.Typer(no_args_is_help=True, help="List workers, what they run and hold; change the queues they consume.")

TIMEOUT_HELP = "Wait at most this long without a reply (1, 1.5s, 500ms); ends early once every bound worker answered."
WORKER_HELP = "Only this worker (its node name, e.g. celery@host); repeat for several."


def _timeout(value: str) -> float:
    seconds = duration(value, "--timeout")
    assert seconds is not None
    return seconds


def _list(timeout: str, worker: list[str] | None, check: bool) -> Listing | Outcome:
    rows = workers.list_workers(config.current(), timeout=_timeout(timeout), workers=worker or [])
    listing = Listing(Worker, rows)
    silent = [w.worker for w in rows if w.state == "no reply"]
    if check and (silent or not rows):
        why = f"no reply from {', '.join(silent)}" if silent else "no worker answered"
        return Outcome(listing, ExitCode.FAILED, why)
    return listing


@app.command("list")
def list_(
    timeout: str = typer.Option("1", "--timeout", "-t", metavar="D", help=TIMEOUT_HELP),
    worker: list[str] = typer.Option(None, "--worker", "-w", metavar="NAME", help=WORKER_HELP),
    check: bool = typer.Option(False, "--check", help="Exit 1 when a bound worker did not answer, or none did."),
) -> Listing | Outcome:
    """List workers: hostname, pid, pool, concurrency, queues, tasks processed, Celery version, uptime.

    Returns as soon as every worker bound to the broker's celery.pidbox exchange has answered (RabbitMQ:
    through the management API; Redis: the binding set), else after --timeout. A bound worker that did not
    answer is listed with state "no reply" (exit 0; with --check, exit 1).

    Examples:

    \b
      taskctl worker list
      taskctl worker list --check --timeout 3 -o json
    """
    return _list(timeout, worker, check)


@app.command("ping")
def ping(
    timeout: str = typer.Option("1", "--timeout", "-t", metavar="D", help=TIMEOUT_HELP),
    worker: list[str] = typer.Option(None, "--worker", "-w", metavar="NAME", help=WORKER_HELP),
    check: bool = typer.Option(False, "--check", help="Exit 1 when a bound worker did not answer, or none did."),
) -> Listing | Outcome:
    """Same as `worker list`.

    Examples:

    \b
      taskctl worker ping --check
    """
    return _list(timeout, worker, check)


def _replies(listing: Listing, replies: list[ConsumerChange] | list[WorkerReply]) -> Listing | Outcome:
    """Exit 1 when a worker refused (e.g. 'event dispatcher unavailable') or none answered."""
    refused = [r.worker for r in replies if not r.ok]
    if refused:
        return Outcome(listing, ExitCode.FAILED, f"refused by {', '.join(refused)}")
    if not replies:
        return Outcome(listing, ExitCode.FAILED, "no worker answered")
    return listing


def _tasks(kind: str, timeout: str, worker: list[str] | None) -> Listing:
    return Listing(WorkerTask, workers.tasks(config.current(), kind, timeout=_timeout(timeout), workers=worker or []))


@app.command()
def active(
    timeout: str = typer.Option("1", "--timeout", "-t", metavar="D", help=TIMEOUT_HELP),
    worker: list[str] = typer.Option(None, "--worker", "-w", metavar="NAME", help=WORKER_HELP),
) -> Listing:
    """List the tasks workers are running now: id, name, args, kwargs, started, runtime so far.

    Examples:

    \b
      taskctl worker active
      taskctl worker active -w celery@web1 -o json
    """
    return _tasks("active", timeout, worker)


@app.command()
def reserved(
    timeout: str = typer.Option("1", "--timeout", "-t", metavar="D", help=TIMEOUT_HELP),
    worker: list[str] = typer.Option(None, "--worker", "-w", metavar="NAME", help=WORKER_HELP),
) -> Listing:
    """List the tasks workers have prefetched and not yet started.

    Examples:

    \b
      taskctl worker reserved -o json
    """
    return _tasks("reserved", timeout, worker)


@app.command()
def scheduled(
    timeout: str = typer.Option("1", "--timeout", "-t", metavar="D", help=TIMEOUT_HELP),
    worker: list[str] = typer.Option(None, "--worker", "-w", metavar="NAME", help=WORKER_HELP),
) -> Listing:
    """List the tasks workers hold until their ETA or countdown.

    Examples:

    \b
      taskctl worker scheduled
    """
    return _tasks("scheduled", timeout, worker)


@app.command()
def registered(
    timeout: str = typer.Option("1", "--timeout", "-t", metavar="D", help=TIMEOUT_HELP),
    worker: list[str] = typer.Option(None, "--worker", "-w", metavar="NAME", help=WORKER_HELP),
) -> Listing:
    """List the task names each worker knows.

    Examples:

    \b
      taskctl worker registered -w celery@web1
    """
    return Listing(
        RegisteredTask, workers.registered(config.current(), timeout=_timeout(timeout), workers=worker or [])
    )


@app.command()
def stats(
    timeout: str = typer.Option("1", "--timeout", "-t", metavar="D", help=TIMEOUT_HELP),
    worker: list[str] = typer.Option(None, "--worker", "-w", metavar="NAME", help=WORKER_HELP),
) -> Listing:
    """Show each worker's statistics: pid, pool, concurrency, prefetch, tasks processed, uptime, memory.

    Examples:

    \b
      taskctl worker stats -o json
    """
    return Listing(WorkerStats, workers.stats(config.current(), timeout=_timeout(timeout), workers=worker or []))


@app.command()
def consume(
    queue: str = typer.Argument(..., metavar="QUEUE", help="The task queue.", show_default=False),
    add: bool = typer.Option(False, "--add", help="Start consuming QUEUE (add_consumer)."),
    cancel: bool = typer.Option(False, "--cancel", help="Stop consuming QUEUE (cancel_consumer)."),
    exchange: str = typer.Option(None, "--exchange", metavar="NAME", help="With --add: exchange (default QUEUE)."),
    exchange_type: str = typer.Option(None, "--exchange-type", metavar="TYPE", help="With --add: default direct."),
    routing_key: str = typer.Option(None, "--routing-key", metavar="KEY", help="With --add: default QUEUE."),
    timeout: str = typer.Option("1", "--timeout", "-t", metavar="D", help=TIMEOUT_HELP),
    worker: list[str] = typer.Option(None, "--worker", "-w", metavar="NAME", help=WORKER_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
) -> Listing | Outcome:
    """Make workers start (--add) or stop (--cancel) consuming a queue, as `celery control add_consumer` does.

    Incident response: cancel a poisoned queue on every worker before draining it. The change lasts until
    the worker restarts.

    Examples:

    \b
      taskctl worker consume poisoned --cancel --yes
      taskctl worker consume priority --add -w celery@web1 --yes
    """
    if add == cancel:
        raise UsageError("pass exactly one of --add or --cancel")
    who = ", ".join(worker) if worker else "every worker"
    confirm(f"make {who} {'start' if add else 'stop'} consuming {queue!r}", yes=yes, dry_run=dry_run)
    changes = workers.consume(
        config.current(),
        queue,
        add=add,
        exchange=exchange,
        exchange_type=exchange_type,
        routing_key=routing_key,
        timeout=_timeout(timeout),
        workers=worker or [],
        dry_run=dry_run,
    )
    return _replies(Listing(ConsumerChange, changes), changes)


@app.command()
def events(
    enable: bool = typer.Option(None, "--enable/--disable", help="Start or stop sending task events."),
    timeout: str = typer.Option("1", "--timeout", "-t", metavar="D", help=TIMEOUT_HELP),
    worker: list[str] = typer.Option(None, "--worker", "-w", metavar="NAME", help=WORKER_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
) -> Listing | Outcome:
    """Make workers start (--enable) or stop (--disable) sending task events, as `celery control enable_events`.

    Task events feed `taskctl events`, `taskctl top` and Flower; the change lasts until the worker restarts
    (start workers with -E to have them always on).

    Examples:

    \b
      taskctl worker events --enable
      taskctl worker events --disable -w celery@web1
    """
    if enable is None:
        raise UsageError("pass --enable or --disable")
    replies = workers.set_events(
        config.current(), enable=enable, timeout=_timeout(timeout), workers=worker or [], dry_run=dry_run
    )
    return _replies(Listing(WorkerReply, replies), replies)
