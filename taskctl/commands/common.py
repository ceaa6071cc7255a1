"""What every command shares: confirmation of destructive actions, ids from stdin, durations."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import typer

from taskctl.errors import NotConfirmedError, UsageError
from taskctl.units import parse_duration

YES_HELP = "Do it without asking (required when stdin is not a terminal)."
DRY_RUN_HELP = "Show what would change and change nothing."
LIMIT_HELP = "At most N items."
TASK_GLOB_HELP = "Only tasks whose name matches this glob (e.g. 'app.tasks.*')."
CHECKPOINT_HELP = (
    "Record progress in FILE; the same command run again with it goes on where it stopped, repeating nothing "
    "that was acked."
)
RETRIES_HELP = "Reconnect up to N times, with backoff, when the broker connection is lost mid-run (0: exit 5)."


def confirm(action: str, *, yes: bool, dry_run: bool = False) -> None:
    """Destructive commands: --yes, a prompt on a terminal, or exit 2 without --yes off a terminal.

    Never prompts off a terminal (a script would hang or read its data as the answer). A "no" at the prompt
    exits 1 (not-confirmed): 130 is Ctrl-C's, and a script must tell a refusal from an interrupt.
    """
    if yes or dry_run:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"refusing to {action} without --yes (stdin is not a terminal)",
            hint="pass --yes to confirm, or --dry-run to see what would change",
        )
    try:
        ok = typer.confirm(f"{action[:1].upper()}{action[1:]}?", default=False, err=True)
    except typer.Abort:  # Ctrl-C or end of input: end the prompt's line so the error starts a line of its own
        sys.stderr.write("\n")
        raise
    if not ok:
        raise NotConfirmedError("not confirmed; nothing changed")


def read_ids(ids: Iterable[str]) -> list[str]:
    """IDs from the arguments; '-' reads whitespace-separated ids from stdin."""
    out: list[str] = []
    for i in ids:
        if i == "-":
            out.extend(sys.stdin.read().split())
        elif i.strip():
            out.append(i.strip())
    seen: set[str] = set()
    return [i for i in out if not (i in seen or seen.add(i))]  # type: ignore[func-returns-value]


def duration(value: str | None, option: str) -> float | None:
    return None if value is None else parse_duration(value, option=option)


def lazy_module(name: str) -> Any:
    """A module imported on first attribute access: command modules load at every start-up (and every TAB)."""
    import importlib

    class _Lazy:
        def __getattr__(self, attr: str) -> Any:
            return getattr(importlib.import_module(name), attr)

    return _Lazy()
