"""`taskctl events`: Celery's event stream as rows (or JSON lines), filtered by task name and state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from taskctl import config
from taskctl.commands.common import LIMIT_HELP, TASK_GLOB_HELP, duration, lazy_module
from taskctl.models import Listing, WorkerEvent

if TYPE_CHECKING:
    from taskctl import monitor
else:
    monitor = lazy_module("taskctl.monitor")

app = typer.Typer(help="Follow Celery's event stream: tasks received, started, succeeded, failed; workers up and down.")

STATE_HELP = (
    "Only events of this kind: received, started, succeeded, failed, retried, revoked, online, heartbeat, "
    "offline (or SUCCESS, FAILURE...); repeat for several."
)


@app.callback(invoke_without_command=True)
def events(
    task: str = typer.Option(None, "--task", metavar="GLOB", help=TASK_GLOB_HELP),
    state: list[str] = typer.Option(None, "--state", "-s", metavar="S", help=STATE_HELP),
    limit: int = typer.Option(None, "--limit", "-n", metavar="N", help=LIMIT_HELP),
    timeout: str = typer.Option(None, "--timeout", "-t", metavar="D", help="Stop after this long (10s, 5m)."),
) -> Listing:
    """Print Celery events as they happen, until --limit, --timeout or Ctrl-C.

    Workers send task events only with -E or after `taskctl worker events --enable`. `-o jsonl` writes
    one JSON object per event, with every field the worker sent under "event".

    Examples:

    \b
      taskctl events --state failed
      taskctl events --task 'app.billing.*' --timeout 1m -o jsonl
    """
    return Listing(
        WorkerEvent,
        monitor.stream(
            config.current(),
            task_glob=task,
            states=state or [],
            limit=limit,
            timeout=duration(timeout, "--timeout"),
        ),
    )
