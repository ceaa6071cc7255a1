"""`taskctl top --once`: one snapshot of workers, queues, task rates and failures, in any output format."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from taskctl import config
from taskctl.commands.common import duration, lazy_module
from taskctl.errors import UsageError
from taskctl.models import Listing, TopRow

if TYPE_CHECKING:
    from taskctl import monitor
else:
    monitor = lazy_module("taskctl.monitor")

app = typer.Typer(help="One snapshot of workers, queues, task rates and failures (top --once).")


@app.callback(invoke_without_command=True)
def top(
    once: bool = typer.Option(False, "--once", help="Print one snapshot and exit (the only mode so far)."),
    window: str = typer.Option("2", "--window", metavar="D", help="Listen to events this long for task rates."),
    timeout: str = typer.Option("1", "--timeout", "-t", metavar="D", help="Wait at most this long for workers."),
) -> Listing:
    """Show workers (up, active, processed, load), queues (ready, unacked, consumers, rates in and out), tasks
    by name (received, succeeded, failed, retried per minute; runtime p50 and p95) and failures.

    Rates and failures come from the events sent during --window (workers need -E or `taskctl worker events
    --enable`); queues from RabbitMQ's management API. One row per item: kind, name, summary; `-o json`
    has every number under "values", for a cron job to alert on.

    Examples:

    \b
      taskctl top --once
      taskctl top --once --window 10s -o json | jq '.[] | select(.kind == "queue" and .values.ready > 1000)'
    """
    if not once:
        raise UsageError("the live view is not there yet", hint="use --once for one snapshot")
    win = duration(window, "--window")
    tmo = duration(timeout, "--timeout")
    assert win is not None and tmo is not None
    return Listing(TopRow, monitor.snapshot(config.current(), window=win, timeout=tmo))
