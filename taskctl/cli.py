"""The root app: global options (accepted anywhere on the line), the one error catch site, the one render site."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer
from typer._click import exceptions as click_exc
from typer.core import TyperGroup

from taskctl import __version__, config
from taskctl.commands.common import lazy_module
from taskctl.errors import ExitCode, InterruptedError_, TaskctlError
from taskctl.formats.output import FORMATS
from taskctl.urls import mask_text

if TYPE_CHECKING:
    from taskctl import output
else:
    # the renderer (and every model) loads only when something is rendered: `taskctl --help` stays fast
    output = lazy_module("taskctl.output")

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


def _sniff_format(args: Sequence[str]) -> str | None:
    fmt = None
    for i, a in enumerate(args):
        if a in ("-o", "--output") and i + 1 < len(args):
            fmt = args[i + 1]
        elif a.startswith("--output="):
            fmt = a.split("=", 1)[1]
        elif a.startswith("-o") and len(a) > 2 and not a.startswith("--"):
            fmt = a[2:]
    return fmt


class _State:
    fmt: str | None = None
    debug: bool = False
    quiet: bool = False


STATE = _State()


class RootGroup(TyperGroup):
    """Hoists global options, renders what commands return, maps every error to its exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if os.environ.get("_TASKCTL_COMPLETE"):
            # shell completion (TAB): typer's completion classes, registered only when asked for
            from typer._completion_classes import completion_init

            completion_init()
        argv = hoist_global_options(sys.argv[1:] if args is None else args)
        STATE.fmt = _sniff_format(argv)
        STATE.debug = "--debug" in argv
        code: int = 0
        try:
            rv = super().main(argv, prog_name or "taskctl", complete_var, standalone_mode=False, **extra)
            code = int(rv) if isinstance(rv, int) else 0
        except TaskctlError as exc:
            code = self._report(exc)
        except click_exc.ClickException as exc:  # bad option, missing argument: usage, exit 2
            if STATE.fmt in ("json", "jsonl"):
                from taskctl.errors import UsageError

                output.render_error(UsageError(exc.format_message()), STATE.fmt)
            else:
                exc.show()
            code = exc.exit_code
        except (typer.Abort, KeyboardInterrupt):
            code = self._report(InterruptedError_("interrupted"))
        except BrokenPipeError:
            # `taskctl ... | head`: the reader went away; exit quietly without a second EPIPE on flush
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            code = 0
        except SystemExit:
            raise
        except Exception as exc:  # anything else is a bug; never print locals or secrets
            if STATE.debug:
                traceback.print_exc()
            msg = mask_text(f"{type(exc).__name__}: {exc}", *_known_urls())
            print(f"error: internal error: {msg} (run with --debug for the traceback)", file=sys.stderr)
            code = ExitCode.FAILED
        if standalone_mode:
            sys.exit(code)
        return code

    def _report(self, exc: TaskctlError) -> int:
        if STATE.debug:
            traceback.print_exc()
        output.render_error(exc, STATE.fmt)
        return int(exc.exit_code)

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMAND_GROUPS, *(n for n in self.commands if n not in COMMAND_GROUPS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = self.commands.get(cmd_name)
        if cmd is None and cmd_name in COMMAND_GROUPS:
            cmd = self.commands[cmd_name] = load_group(cmd_name)
        return cmd

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [(name, COMMAND_GROUPS.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: Any) -> Any:
        rv = super().invoke(ctx)
        if isinstance(rv, int) and not isinstance(rv, bool):
            return rv
        fmt = STATE.fmt or output.default_format()
        if STATE.quiet:
            # still drain generators so the work happens, but print nothing
            from taskctl.models import Listing, Outcome

            inner = rv.value if isinstance(rv, Outcome) else rv
            if isinstance(inner, Listing):
                for _ in inner:
                    pass
            return int(rv.exit_code) if isinstance(rv, Outcome) else 0
        return int(output.Renderer(fmt).render(rv))


def _known_urls() -> list[str]:
    try:
        s = config.current()
    except Exception:
        return []
    return [u for u in (s.backend, s.broker) if u]


def _version(value: bool) -> None:
    if value:
        print(f"taskctl {__version__}")
        raise typer.Exit(0)


_APP_SETTINGS: dict[str, Any] = {
    "no_args_is_help": True,
    "pretty_exceptions_enable": False,
    "add_completion": False,
    "rich_markup_mode": None,
    "context_settings": {"help_option_names": ["-h", "--help"], "max_content_width": 100},
}
app = typer.Typer(cls=RootGroup, name="taskctl", **_APP_SETTINGS)


@app.callback()
def root(
    output_fmt: str | None = typer.Option(
        None,
        "-o",
        "--output",
        help="|".join(FORMATS) + " (default: table on a terminal, else plain)",
    ),
    backend: str | None = typer.Option(None, "--backend", help="Result backend URL (dynamodb://, redis://, file://)."),
    broker: str | None = typer.Option(None, "--broker", help="Broker URL (amqp://, redis://, filesystem://)."),
    endpoint_url: str | None = typer.Option(None, "--endpoint-url", help="DynamoDB endpoint, overrides the URL."),
    region: str | None = typer.Option(None, "--region", help="AWS region, overrides the URL."),
    aws_profile: str | None = typer.Option(None, "--aws-profile", help="AWS profile for credentials."),
    management_url: str | None = typer.Option(
        None, "--management-url", help="RabbitMQ management API (default: broker host, port 15672)."
    ),
    env: str | None = typer.Option(None, "--env", help="Named environment from the config file (TASKCTL_ENV)."),
    config_file: str | None = typer.Option(None, "--config", help="Config file (default ./taskctl.toml, then XDG)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print nothing but errors."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Say what is being done (stderr)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Operations toolkit for Celery: DynamoDB result tables, stored results, queues, revokes.

    Global options are accepted anywhere on the command line. Exit codes: 0 ok, 1 failed, 2 usage,
    3 not found, 4 conflict/refused, 5 unreachable/denied, 124 timed out, 130 interrupted.
    """
    if output_fmt is not None and output_fmt not in FORMATS:
        from taskctl.errors import UsageError

        raise UsageError(f"unknown output format {output_fmt!r}", hint="use one of: " + ", ".join(FORMATS))
    STATE.fmt = output_fmt
    STATE.quiet = quiet
    STATE.debug = debug
    output.install_event_handlers(quiet=quiet, verbose=verbose)
    flags = {
        "backend": backend,
        "broker": broker,
        "endpoint_url": endpoint_url,
        "region": region,
        "aws_profile": aws_profile,
        "management_url": management_url,
    }
    config.set_resolver(lambda: config.resolve(flags, env_name=env, config=config_file))
    if verbose:
        s = config.current()
        from taskctl import events
        from taskctl.urls import mask

        events.note(f"config file: {s.config_file or 'none'}; environment: {s.env or 'none'}")
        for name, src in s.sources.items():
            val = getattr(s, name, None)
            shown = mask(val) if isinstance(val, str) and "://" in val else val
            events.note(f"{name} = {shown}  ({src})")


#: command groups in help order, with the one line `taskctl --help` shows (a test keeps it equal to each
#: group's own help). Groups are imported only when used: start-up is also TAB-completion latency.
COMMAND_GROUPS: dict[str, str] = {
    "table": "Create, inspect, list and delete the DynamoDB tables Celery stores results in.",
    "result": "Show, list, wait for, walk and forget stored task results (DynamoDB, Redis, file).",
    "queue": "Look at, purge, drain to a file, publish back and move queue messages.",
    "rpc": "List rpc:// reply queues; show and remove the results left in them.",
    "task": "Revoke tasks on live workers, list revoked ids, requeue dead-lettered or failed tasks.",
    "local": "Start, inspect and stop an embedded local stack: DynamoDB server, filesystem:// broker, Celery worker.",
    "doctor": "Check the configuration, the result backend and its table, and the broker; exit 1 if a check fails.",
    "worker": "List workers, what they run and hold; change the queues they consume.",
    "events": "Follow Celery's event stream: tasks received, started, succeeded, failed; workers up and down.",
    "top": "One snapshot of workers, queues, task rates and failures (top --once).",
}


def load_group(name: str) -> Any:
    """Build the click group of taskctl/commands/NAME.py exactly as `add_typer` on the root app would."""
    import importlib

    mod = importlib.import_module(f"taskctl.commands.{name}")
    holder = typer.Typer(**_APP_SETTINGS)
    holder.add_typer(mod.app, name=name)
    holder.callback()(lambda: None)
    return typer.main.get_command(holder).commands[name]  # type: ignore[attr-defined]


def get_command() -> Any:
    return typer.main.get_command(app)


def main() -> None:
    get_command()(prog_name="taskctl")
