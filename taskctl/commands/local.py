"""`taskctl local ...`: the embedded stack on this machine (DynamoDB-compatible server, filesystem:// broker)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from taskctl.commands.common import DRY_RUN_HELP, YES_HELP, confirm, duration, lazy_module
from taskctl.models import LocalStack

if TYPE_CHECKING:
    from taskctl import local
else:
    local = lazy_module("taskctl.local")

app = typer.Typer(
    no_args_is_help=True,
    help="Start, inspect and stop an embedded local stack: DynamoDB server, filesystem:// broker, Celery worker.",
)


@app.command()
def up(
    worker: bool = typer.Option(False, "--worker", help="Also start a Celery worker (solo pool) on taskctl.demo_app."),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="DynamoDB port (default: the previous one, else 8000, else a free one)."
    ),
    timeout: str = typer.Option("90s", "--timeout", help="Give up starting a process after this long."),
) -> LocalStack:
    """Start the local stack in the background and write the 'local' environment to the config file.

    Running it again starts only what is not running and reports the rest.

    Examples:

    \b
      taskctl local up --worker
      taskctl --env local table describe
      TASKCTL_ENV=local taskctl queue peek celery
    """
    return local.up(port=port, worker=worker, timeout=duration(timeout, "--timeout") or 90.0)


@app.command()
def status() -> LocalStack:
    """Show what the local stack runs where: pids (checked), endpoints, URLs (masked), folders.

    Examples:

    \b
      taskctl local status
      taskctl local status -o json | jq .dynamodb.alive
    """
    return local.status()


@app.command()
def down(
    purge: bool = typer.Option(
        False, "--purge", help="Also delete the state folder (queued messages, logs) and [env.local]."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP + " Needed by --purge only."),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
) -> LocalStack:
    """Stop the local stack's worker and server and check that no process is left.

    The server keeps tables in memory: they are gone afterwards. Without --purge, queued messages, logs and
    the 'local' environment stay for the next 'local up'.

    Examples:

    \b
      taskctl local down
      taskctl local down --purge --dry-run
      taskctl local down --purge --yes
    """
    if purge:
        confirm(local.purge_summary(), yes=yes, dry_run=dry_run)
    return local.down(purge=purge, dry_run=dry_run)
