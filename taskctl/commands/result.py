"""`taskctl result ...`: task results as Celery stored them, on DynamoDB, Redis or the file backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from taskctl import config
from taskctl.commands.common import (
    DRY_RUN_HELP,
    LIMIT_HELP,
    TASK_GLOB_HELP,
    YES_HELP,
    confirm,
    duration,
    lazy_module,
    read_ids,
)
from taskctl.models import ForgetReport, Listing, Outcome
from taskctl.units import parse_size

if TYPE_CHECKING:
    from taskctl import results
else:
    results = lazy_module("taskctl.results")

app = typer.Typer(
    no_args_is_help=True,
    help="Show, list, wait for, walk and forget stored task results (DynamoDB, Redis, file).",
)

IDS_HELP = "Task ids; '-' reads whitespace-separated ids from stdin."
SERIALIZER_HELP = "The workers' result_serializer: json, msgpack, yaml, pickle (default: config, else sniffed)."
KEY_PREFIX_HELP = "The workers' global_keyprefix (result_backend_transport_options)."
UNSAFE_HELP = "Really unpickle pickled values (runs code named in them: only for results you trust)."
STATE_HELP = "Only results in this state (repeat or comma-separate: SUCCESS,FAILURE)."


def _opts(serializer: str | None, key_prefix: str | None, unsafe_pickle: bool) -> results.Options:
    return results.Options(serializer=serializer, key_prefix=key_prefix, unsafe_pickle=unsafe_pickle)


_SER = typer.Option(None, "--serializer", metavar="NAME", help=SERIALIZER_HELP)
_PREFIX = typer.Option(None, "--key-prefix", metavar="PREFIX", help=KEY_PREFIX_HELP)
_UNSAFE = typer.Option(False, "--unsafe-pickle", help=UNSAFE_HELP)
_SEGMENT = typer.Option(
    None,
    "--segment",
    metavar="I/N",
    help="Only share I of N (0 <= I < N): N runs with I = 0..N-1 see every item exactly once between them.",
)
_SEGMENTS = typer.Option(
    None,
    "--segments",
    metavar="N",
    help="Parallel scan segments (DynamoDB; default: one per 2,000 items or 4 MiB of table, 4 to 1,024).",
)
_MAX_RATE = typer.Option(
    None, "--max-rate", metavar="N", help="At most N items a second (leaves capacity to the workers)."
)


@app.command()
def show(
    ids: list[str] = typer.Argument(..., help=IDS_HELP, metavar="ID..."),
    missing_ok: bool = typer.Option(False, "--missing-ok", help="Exit 0 even when an id has no stored result."),
    serializer: str | None = _SER,
    key_prefix: str | None = _PREFIX,
    unsafe_pickle: bool = _UNSAFE,
) -> Outcome:
    """Show stored results: state, result or exception, date done, worker, parent, children.

    An id with nothing stored is shown as PENDING with found=false, and the exit code is 3.

    Examples:

    \b
      taskctl result show 9f3c2a1e-6b7d-4c59-a7e0-3d1f0b6c8e42
      taskctl result show -o json ID1 ID2
      taskctl result list --state FAILURE -o plain | awk 'NR>1{print $1}' | taskctl result show -
    """
    return results.show(
        config.current(), read_ids(ids), missing_ok=missing_ok, opts=_opts(serializer, key_prefix, unsafe_pickle)
    )


@app.command()
def forget(
    ids: list[str] = typer.Argument(None, help=IDS_HELP, metavar="[ID...]", show_default=False),
    tree: bool = typer.Option(False, "--tree", help="Also forget each id's subtree (children, group members)."),
    deep: bool = typer.Option(False, "--deep", help="With --tree: also find chord bodies by scanning the store."),
    keep: list[str] = typer.Option([], "--keep", metavar="ID", help="Spare this id and its subtree (repeatable)."),
    state: list[str] = typer.Option([], "--state", metavar="STATE", help=STATE_HELP),
    task: str | None = typer.Option(None, "--task", metavar="GLOB", help=TASK_GLOB_HELP),
    older_than: str | None = typer.Option(None, "--older-than", metavar="DURATION", help="Done before this long ago."),
    newer_than: str | None = typer.Option(None, "--newer-than", metavar="DURATION", help="Done within this long."),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    yes: bool = typer.Option(False, "--yes", help=YES_HELP),
    segment: str | None = _SEGMENT,
    segments: int | None = _SEGMENTS,
    max_rate: float | None = _MAX_RATE,
    checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        metavar="FILE",
        help="Record progress in FILE; the same command run again with it goes on where it stopped.",
    ),
    serializer: str | None = _SER,
    key_prefix: str | None = _PREFIX,
    unsafe_pickle: bool = _UNSAFE,
) -> ForgetReport:
    """Delete stored results; with --tree each id's subtree too, never a parent.

    Examples:

    \b
      taskctl result forget 9f3c2a1e-6b7d-4c59-a7e0-3d1f0b6c8e42 --yes
      taskctl result forget ROOT --tree --keep KEEP_ID --dry-run -o json
      taskctl result forget --state SUCCESS --older-than 7d --yes
      taskctl result forget --state SUCCESS --older-than 7d --max-rate 500 --checkpoint forget.ckpt --yes
    """
    task_ids = read_ids(ids or [])
    filters = results.make_filters(
        state, task, duration(older_than, "--older-than"), duration(newer_than, "--newer-than")
    )
    what = f"{len(task_ids)} results" + (" and their subtrees" if tree else "") if task_ids else "matching results"
    confirm(f"forget {what}", yes=yes, dry_run=dry_run)
    return results.forget(
        config.current(),
        task_ids,
        tree=tree,
        deep=deep,
        keep=keep,
        filters=filters,
        dry_run=dry_run,
        opts=_opts(serializer, key_prefix, unsafe_pickle),
        shard=results.parse_shard(segment),
        segments=segments,
        max_rate=max_rate,
        checkpoint=checkpoint,
    )


@app.command("list")
def list_(
    state: list[str] = typer.Option([], "--state", metavar="STATE", help=STATE_HELP),
    task: str | None = typer.Option(None, "--task", metavar="GLOB", help=TASK_GLOB_HELP),
    older_than: str | None = typer.Option(None, "--older-than", metavar="DURATION", help="Done before this long ago."),
    newer_than: str | None = typer.Option(None, "--newer-than", metavar="DURATION", help="Done within this long."),
    limit: int | None = typer.Option(None, "--limit", "-n", metavar="N", min=0, help=LIMIT_HELP),
    kind: str = typer.Option("task", "--kind", metavar="KIND", help="task, group or chord-counter."),
    larger_than: str | None = typer.Option(
        None, "--larger-than", metavar="SIZE", help="Only values larger than SIZE: 100KB, 390KiB, 1MiB."
    ),
    segment: str | None = _SEGMENT,
    segments: int | None = _SEGMENTS,
    max_rate: float | None = _MAX_RATE,
    serializer: str | None = _SER,
    key_prefix: str | None = _PREFIX,
    unsafe_pickle: bool = _UNSAFE,
) -> Listing:
    """List stored results by scanning the store; rows stream as they are found.

    Examples:

    \b
      taskctl result list --state FAILURE --newer-than 1h
      taskctl result list --task 'app.tasks.*' --older-than 7d -n 100 -o jsonl
      taskctl result list --kind chord-counter
      taskctl result list --larger-than 300KB -o jsonl
      taskctl result list --state FAILURE --segment 0/4 -o jsonl   # and 1/4, 2/4, 3/4 elsewhere
    """
    filters = results.make_filters(
        state,
        task,
        duration(older_than, "--older-than"),
        duration(newer_than, "--newer-than"),
        None if larger_than is None else parse_size(larger_than, option="--larger-than"),
    )
    return results.list_results(
        config.current(),
        filters=filters,
        limit=limit,
        kind=kind,
        opts=_opts(serializer, key_prefix, unsafe_pickle),
        shard=results.parse_shard(segment),
        segments=segments,
        max_rate=max_rate,
    )


@app.command()
def wait(
    task_id: str = typer.Argument(..., metavar="ID", help="Task id."),
    timeout: str | None = typer.Option(
        None, "--timeout", metavar="DURATION", help="Give up after this long; exit 124."
    ),
    interval: str = typer.Option("0.5", "--interval", metavar="DURATION", help="Time between polls."),
    serializer: str | None = _SER,
    key_prefix: str | None = _PREFIX,
    unsafe_pickle: bool = _UNSAFE,
) -> Outcome:
    """Wait until a task is ready; a PROGRESS state with current/total drives a progress bar.

    Exit 0 on SUCCESS, 1 on FAILURE or REVOKED, 124 on timeout.

    Examples:

    \b
      taskctl result wait 9f3c2a1e-6b7d-4c59-a7e0-3d1f0b6c8e42 --timeout 5m
      taskctl result wait ID --interval 2s -o json
    """
    return results.wait(
        config.current(),
        task_id,
        timeout=duration(timeout, "--timeout"),
        interval=duration(interval, "--interval") or 0.5,
        opts=_opts(serializer, key_prefix, unsafe_pickle),
    )


@app.command()
def tree(
    task_id: str = typer.Argument(..., metavar="ID", help="Task id at the top of the tree."),
    up: bool = typer.Option(False, "--up", help="First climb parent_id links to the root."),
    deep: bool = typer.Option(False, "--deep", help="Also find chord bodies by scanning the store (costly)."),
    depth: int | None = typer.Option(None, "--depth", metavar="N", min=0, help="Walk at most N levels down."),
    check: bool = typer.Option(False, "--check", help="Exit 1 when a task in the tree is FAILURE or REVOKED."),
    serializer: str | None = _SER,
    key_prefix: str | None = _PREFIX,
    unsafe_pickle: bool = _UNSAFE,
) -> Outcome:
    """Walk everything Celery recorded below a task: chains, groups, chords, tasks spawned by tasks.

    Examples:

    \b
      taskctl result tree 9f3c2a1e-6b7d-4c59-a7e0-3d1f0b6c8e42
      taskctl result tree ID --up --check
      taskctl result tree ID -o jsonl | jq -r 'select(.state=="FAILURE") | .id'
    """
    return results.tree(
        config.current(),
        task_id,
        up=up,
        deep=deep,
        depth=depth,
        check=check,
        opts=_opts(serializer, key_prefix, unsafe_pickle),
    )
