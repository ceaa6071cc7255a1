"""`taskctl doctor`: check the configuration, the result backend, the table and the broker in one go."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from taskctl import config
from taskctl.commands.common import lazy_module
from taskctl.models import Outcome

if TYPE_CHECKING:
    from taskctl import doctor
else:
    doctor = lazy_module("taskctl.doctor")

# a group whose callback is the command: `taskctl doctor` runs it (cli.py registers every module as a group)
app = typer.Typer(invoke_without_command=True, subcommand_metavar="")


@app.callback()
def run(
    queue: list[str] = typer.Option(
        ["celery"], "--queue", metavar="QUEUE", help="Queue to check on the broker (repeatable)."
    ),
    write_probe: bool = typer.Option(
        False,
        "--write-probe",
        help="Also check writing: put one probe item (celery-task-meta-taskctl-doctor-probe-*) and delete it.",
    ),
) -> Outcome:
    """Check the configuration, the result backend and its table, and the broker; exit 1 if a check fails.

    Reads only (a get of a key that does not exist) unless --write-probe. URLs are printed masked.

    Examples:

    \b
      taskctl doctor
      taskctl --env prod doctor -o json | jq -r '.[] | select(.status != "pass") | .name'
      taskctl doctor --queue celery --queue priority --write-probe
    """
    return doctor.run(config.current(), queues=tuple(queue), write_probe=write_probe)
