"""`taskctl top`: a live view of workers, queues, task rates and failures; one snapshot off a terminal."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from taskctl import config
from taskctl.commands.common import duration, lazy_module
from taskctl.errors import UsageError
from taskctl.models import Listing, TopRow

if TYPE_CHECKING:
    from taskctl import monitor, topview
else:
    monitor = lazy_module("taskctl.monitor")
    topview = lazy_module("taskctl.topview")

app = typer.Typer(help="Watch workers, queues, task rates and failures live; one snapshot with --once.")

SORT_HELP = "name, received, succeeded, failed, retried, runtime_p50, runtime_p95 (also ready, active, ...)."


def _on_terminal() -> bool:
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


@app.callback(invoke_without_command=True)
def top(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="Print one snapshot and exit (the default off a terminal)."),
    interval: str = typer.Option("1", "--interval", "-n", metavar="D", help="Live view: refresh this often."),
    window: str = typer.Option("2", "--window", metavar="D", help="Snapshot: listen to events this long for rates."),
    timeout: str = typer.Option("1", "--timeout", "-t", metavar="D", help="Wait at most this long for workers."),
    sort: str = typer.Option(
        "name", "--sort", metavar="KEY", help="Sort each section by KEY, largest first: " + SORT_HELP
    ),
    glob: str | None = typer.Option(None, "--filter", metavar="GLOB", help="Only rows whose name matches GLOB."),
    failures: int = typer.Option(10, "--failures", metavar="N", help="Show the latest N failures."),
) -> Listing | int:
    """Watch workers (up, active, processed, load), queues (ready, unacked, consumers, rates in and out), tasks
    by name (received, succeeded, failed, retried per minute; runtime p50 and p95) and failures as they happen.

    On a terminal the view refreshes every --interval; keys: q quit, s next sort column, / filter by a glob
    (Enter applies, Esc cancels). Off a terminal, with --once or with -o, it prints one snapshot: one row per
    item (kind, name, summary), every number under "values" in -o json, for a cron job to alert on.

    Rates and failures come from Celery's events (workers need -E or `taskctl worker events --enable`); queues
    from RabbitMQ's management API; workers from remote control and heartbeats.

    Examples:

    \b
      taskctl top
      taskctl top --sort failed --filter 'billing.*'
      taskctl top --once --window 10s -o json | jq '.[] | select(.kind == "queue" and .values.ready > 1000)'
    """
    if failures < 0:
        raise UsageError("--failures must be 0 or more")
    tmo = duration(timeout, "--timeout")
    assert tmo is not None
    fmt = ctx.find_root().params.get("output_fmt")
    if not once and fmt in (None, "table") and _on_terminal():
        every = duration(interval, "--interval")
        assert every is not None
        if every < 0.1:
            raise UsageError("--interval must be at least 0.1 s")
        return topview.run(config.current(), interval=every, timeout=tmo, failures=failures, sort=sort, glob=glob)
    win = duration(window, "--window")
    assert win is not None
    rows = monitor.snapshot(config.current(), window=win, timeout=tmo, sort=sort, glob=glob, failures=failures)
    return Listing(TopRow, rows)
