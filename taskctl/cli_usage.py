"""How the root app reads a command line: global options anywhere, usage errors in the documented format.

Kept apart from taskctl.cli so the root app stays one screenful: these are pure functions of the arguments and
click's exceptions (difflib and ast load only when a usage error is reported).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import typer
from typer._click import exceptions as click_exc
from typer._click.formatting import HelpFormatter

from taskctl.errors import OperationError, TaskctlError, UsageError
from taskctl.urls import mask

#: global options: name -> takes a value
GLOBAL_OPTIONS: dict[str, bool] = {
    "-o": True,
    "--output": True,
    "--backend": True,
    "--broker": True,
    "--endpoint-url": True,
    "--region": True,
    "--aws-profile": True,
    "--env": True,
    "--config": True,
    "--management-url": True,
    "-q": False,
    "--quiet": False,
    "-v": False,
    "--verbose": False,
    "--debug": False,
}


def hoist_global_options(args: Sequence[str]) -> list[str]:
    """Move global options found after the command to the front, as the AWS CLI accepts them anywhere."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    args = list(args)
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        name, eq, _ = a.partition("=")
        if name in GLOBAL_OPTIONS and (eq or not GLOBAL_OPTIONS[name]):
            front.append(a)
        elif GLOBAL_OPTIONS.get(a):
            front.append(a)
            if i + 1 < len(args):
                front.append(args[i + 1])
                i += 1
        elif a.startswith("-o") and len(a) > 2 and not a.startswith("--"):
            front.append(a)
        else:
            rest.append(a)
        i += 1
    return front + rest


def sniff_format(args: Sequence[str]) -> str | None:
    fmt = None
    for i, a in enumerate(args):
        if a in ("-o", "--output") and i + 1 < len(args):
            fmt = args[i + 1]
        elif a.startswith("--output="):
            fmt = a.split("=", 1)[1]
        elif a.startswith("-o") and len(a) > 2 and not a.startswith("--"):
            fmt = a[2:]
    return fmt


#: broker schemes taskctl supports (kombu transport aliases); checked without importing kombu at start-up
BROKER_SCHEMES = ("amqp", "amqps", "pyamqp", "redis", "rediss", "sqs", "filesystem", "memory")


def broker_scheme_error(url: str | None) -> UsageError | None:
    """A usage error for a broker URL whose scheme no supported transport has (each of a failover list)."""
    if not url:
        return None
    import difflib

    for part in url.split(";"):
        part = part.strip()
        if "://" not in part:
            continue  # kombu reads a bare host as amqp
        scheme = part.split("://", 1)[0].lower().split("+", 1)[0]
        if scheme not in BROKER_SCHEMES:
            close = difflib.get_close_matches(scheme, BROKER_SCHEMES, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            return UsageError(
                f"unknown broker scheme {scheme!r} in {mask(part)!r}",
                hint=hint + "supported: " + ", ".join(f"{s}://" for s in BROKER_SCHEMES),
                code="unknown-scheme",
            )
    return None


def _lower_first(text: str) -> str:
    text = text.strip().rstrip(".")
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        text = text[0].lower() + text[1:]
    return text


def _usage_line(ctx: Any) -> str:
    pieces = ctx.command.collect_usage_pieces(ctx)
    return _REQUIRED_METAVAR.sub(r"\1", f"{ctx.command_path} {' '.join(pieces)}")


def usage_error(exc: Any) -> TaskctlError:
    """Click's usage errors in the documented format, with did-you-mean for commands and options."""
    import ast
    import difflib

    ctx = getattr(exc, "ctx", None)
    if not isinstance(exc, click_exc.UsageError):  # e.g. click's FileError: a failure, not a usage error
        return OperationError(_lower_first(exc.format_message()))
    guesses: list[str] = []
    if isinstance(exc, click_exc.NoSuchOption):
        message = _lower_first(exc.message)  # format_message() appends click's "(Possible options: ...)"
        if ctx is not None and exc.option_name.startswith("--"):
            names = [o for p in ctx.command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
            names += [o for o in GLOBAL_OPTIONS if o.startswith("--")]
            guesses = difflib.get_close_matches(exc.option_name, names, n=3, cutoff=0.75)
    else:
        message = _lower_first(exc.format_message())
    if message.startswith("no such command ") and ctx is not None:
        message = message.split(". Did you mean", 1)[0].rstrip(".")
        typo = message[len("no such command ") :]
        try:
            typo = str(ast.literal_eval(typo))
        except (ValueError, SyntaxError):
            pass
        guesses = [repr(c) for c in difflib.get_close_matches(typo, ctx.command.list_commands(ctx), n=3, cutoff=0.5)]
    hint = f"did you mean {' or '.join(guesses)}? " if guesses else ""
    if ctx is not None:
        hint += f"usage: {_usage_line(ctx)} (see '{ctx.command_path} --help')"
    else:
        hint += "see 'taskctl --help'"
    return UsageError(message, hint=hint)


#: typer writes a required argument as {NAME} in usage lines; show the metavar as click and --help text do
_REQUIRED_METAVAR = re.compile(r"\{([^{}\s]+)\}")


class _Formatter(HelpFormatter):
    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, _REQUIRED_METAVAR.sub(r"\1", args), prefix)


class Context(typer.Context):
    formatter_class = _Formatter
