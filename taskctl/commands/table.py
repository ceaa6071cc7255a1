"""`taskctl table ...`: the DynamoDB tables Celery's DynamoDB result backend stores results in."""

from __future__ import annotations

import typer

from taskctl import config
from taskctl.commands.common import DRY_RUN_HELP, YES_HELP, confirm, duration
from taskctl.errors import UsageError
from taskctl.models import Listing, TableInfo

# taskctl.tables is imported in each command, not here: `taskctl --help` stays cheap

app = typer.Typer(
    no_args_is_help=True,
    help="Create, inspect, list and delete the DynamoDB tables Celery stores results in.",
)

TABLE_HELP = "Table name (default: the backend URL's table, else 'celery')."
TIMEOUT_HELP = "Give up waiting after this long (90, 90s, 5m, 2h); exit 124."


@app.command()
def create(
    table: str | None = typer.Argument(None, help=TABLE_HELP, metavar="TABLE", show_default=False),
    read: int | None = typer.Option(
        None, "--read", min=1, metavar="N", help="Read capacity units (default: URL's read, else 1)."
    ),
    write: int | None = typer.Option(
        None, "--write", min=1, metavar="N", help="Write capacity units (default: URL's write, else 1)."
    ),
    on_demand: bool = typer.Option(False, "--on-demand", help="Bill per request (PAY_PER_REQUEST), no capacity."),
    ttl: bool | None = typer.Option(
        None, "--ttl/--no-ttl", help="Enable TTL on attribute 'ttl' (default: on when the URL has ttl_seconds >= 0)."
    ),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return while the table is still CREATING."),
    timeout: str = typer.Option("5m", "--timeout", metavar="DURATION", help=TIMEOUT_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
) -> TableInfo:
    """Create a result table with Celery's key schema, unless it exists; wait until ACTIVE.

    Examples:

    \b
      taskctl table create --backend 'dynamodb://@us-east-1/celery' --ttl
      taskctl table create results --on-demand
      taskctl table create --read 5 --write 5 --dry-run -o json
    """
    from taskctl import tables

    return tables.create(
        config.current(),
        table,
        read=read,
        write=write,
        on_demand=on_demand,
        ttl=ttl,
        wait=not no_wait,
        timeout=duration(timeout, "--timeout") or 0.0,
        dry_run=dry_run,
    )


@app.command()
def describe(
    table: str | None = typer.Argument(None, help=TABLE_HELP, metavar="TABLE", show_default=False),
    sample: int = typer.Option(
        500, "--sample", metavar="N", help="Read up to N items for their sizes (a few requests; 0: none)."
    ),
) -> TableInfo:
    """Show a table's status, capacity, key schema, TTL, whether Celery can use it, and items near DynamoDB's
    400 KB item limit.

    item_sizes counts the sampled items of at least 300 KiB and names the largest: Celery cannot store a result
    whose item passes 400 KB, so a result that grows a little more is lost (a warning says so).

    Examples:

    \b
      taskctl table describe
      taskctl table describe celery -o json
      taskctl table describe celery --sample 2000
    """
    from taskctl import tables

    return tables.describe(config.current(), table, sample=sample)


@app.command("list")
def list_() -> Listing:
    """List every table at the endpoint with its status and whether Celery can use it.

    Examples:

    \b
      taskctl table list --endpoint-url http://localhost:8000
      taskctl table list -o json
    """
    from taskctl import tables

    return Listing(model=TableInfo, items=tables.list_tables(config.current()))


@app.command()
def ttl(
    table: str | None = typer.Argument(None, help=TABLE_HELP, metavar="TABLE", show_default=False),
    enable: bool = typer.Option(False, "--enable", help="Switch TTL on (neither --enable nor --disable: show it)."),
    disable: bool = typer.Option(False, "--disable", help="Switch TTL off."),
    attribute: str = typer.Option("ttl", "--attribute", metavar="NAME", help="TTL attribute to enable."),
    wait: bool = typer.Option(False, "--wait", help="Wait until ENABLED/DISABLED (on AWS this can take an hour)."),
    timeout: str = typer.Option("1h", "--timeout", metavar="DURATION", help=TIMEOUT_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
) -> TableInfo:
    """Show, enable or disable Time to Live on a table (Celery writes expiry times to 'ttl').

    Examples:

    \b
      taskctl table ttl
      taskctl table ttl celery --enable --wait
      taskctl table ttl celery --disable --dry-run
    """
    from taskctl import tables

    if enable and disable:
        raise UsageError("--enable and --disable exclude each other", hint="pass one of them, or neither to show TTL")
    return tables.set_ttl(
        config.current(),
        table,
        enable=True if enable else (False if disable else None),
        attribute=attribute,
        wait=wait,
        timeout=duration(timeout, "--timeout") or 0.0,
        dry_run=dry_run,
    )


@app.command()
def delete(
    table: str = typer.Argument(..., help="Table to delete (never defaulted).", metavar="TABLE", show_default=False),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return while the table is still DELETING."),
    timeout: str = typer.Option("5m", "--timeout", metavar="DURATION", help=TIMEOUT_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
) -> TableInfo:
    """Delete a table and every result in it.

    Examples:

    \b
      taskctl table delete old-results --dry-run
      taskctl table delete old-results --yes
    """
    from taskctl import tables

    wait_s = duration(timeout, "--timeout") or 0.0
    tables.check_name(table)  # before the prompt: "" must not ask to delete anything
    confirm(f"delete table {table!r} and every item in it", yes=yes, dry_run=dry_run)
    return tables.delete(config.current(), table, wait=not no_wait, timeout=wait_s, dry_run=dry_run)
