"""`taskctl rpc ...`: the reply queues of Celery's rpc:// result backend and the results waiting in them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from taskctl import config
from taskctl.commands.common import DRY_RUN_HELP, YES_HELP, confirm, duration, lazy_module
from taskctl.errors import UsageError
from taskctl.models import BrokerQueue, Listing, RpcResult, TransferSummary

if TYPE_CHECKING:
    from taskctl import rpc
else:
    rpc = lazy_module("taskctl.rpc")

app = typer.Typer(no_args_is_help=True, help="List rpc:// reply queues; show and remove the results left in them.")

IDLE_FOR_HELP = "Only reply queues with no consumer for at least this long (30m, 1h, 7d)."


@app.command("list")
def list_(idle_for: str = typer.Option(None, "--idle-for", metavar="D", help=IDLE_FOR_HELP)) -> Listing:
    """List rpc:// reply queues (UUID names) with size, idle time and expiry (RabbitMQ management API).

    Each Celery client process that used backend='rpc://' leaves one; results pile up there when the
    client exits without collecting them, until the queue expires (result_expires, default 1 day).

    Examples:

    \b
      taskctl rpc list
      taskctl rpc list --idle-for 1h -o json
    """
    return Listing(BrokerQueue, rpc.list_reply_queues(config.current(), duration(idle_for, "--idle-for")))


@app.command()
def drain(
    ctx: typer.Context,
    queues: list[str] = typer.Argument(None, metavar="[REPLY_QUEUE...]", help="Reply queues (a client's oid)."),
    peek: bool = typer.Option(False, "--peek", help="Show the results and leave them in the queue."),
    file: str = typer.Option(None, "--file", metavar="FILE", help="Append the results here as drain lines."),
    all_: bool = typer.Option(False, "--all", help="Every reply queue idle for --idle-for; deleted once emptied."),
    idle_for: str = typer.Option(None, "--idle-for", metavar="D", help=IDLE_FOR_HELP + " With --all; default 1h."),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP + " Shows the results and queues."),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
) -> Listing:
    """Show the results waiting in rpc:// reply queues and remove them.

    Task id = the message's correlation id; state, result or exception from the body. Reads with
    basic_get only: consuming and then cancelling would delete the auto-delete queue with its results.
    A result is acked only after it was written (with --file: fsynced). --all --idle-for D takes the
    results out of every reply queue idle that long, then deletes those queues (abandoned clients).

    Examples:

    \b
      taskctl rpc drain d3f8c0c4-5e1e-3e70-88b8-fde5470ce3a6 --peek
      taskctl rpc drain --all --idle-for 1h --dry-run
      taskctl rpc drain --all --idle-for 1h --file rpc-results.jsonl --yes
    """
    if file is None and not peek and ctx.find_root().params.get("quiet"):
        raise UsageError("rpc drain to stdout with --quiet would discard the results", hint="use --file or --peek")
    what = "every reply queue idle for --idle-for and delete them" if all_ else ", ".join(queues or [])
    confirm(f"remove the results from {what}", yes=yes, dry_run=dry_run or peek)
    out = rpc.drain(
        config.current(),
        queues or [],
        peek=peek,
        file=file,
        all_=all_,
        idle_for=duration(idle_for, "--idle-for"),
        dry_run=dry_run,
    )
    if isinstance(out, list):
        return Listing(TransferSummary, out)
    return Listing(RpcResult, out)
