"""The root app: global options (accepted anywhere on the line), the one error catch site, the one render site."""

from __future__ import annotations

import errno
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer
from typer._click import exceptions as click_exc
from typer.core import TyperGroup

from taskctl import __version__, config
from taskctl.cli_usage import (
    Context,
    broker_scheme_error,
    hoist_global_options,
    sniff_format,
    usage_error,
)
from taskctl.commands.common import lazy_module
from taskctl.errors import (
    ExitCode,
    InterruptedError_,
    NotConfirmedError,
    TaskctlError,
    UnavailableError,
    UsageError,
    error_for,
    from_os_error,
)
from taskctl.formats.output import FORMATS
from taskctl.urls import mask_text

if TYPE_CHECKING:
    from taskctl import output
else:
    # the renderer (and every model) loads only when something is rendered: `taskctl --help` stays fast
    output = lazy_module("taskctl.output")


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
        STATE.fmt = sniff_format(argv)
        STATE.debug = "--debug" in argv
        code: int = 0
        try:
            # typer's own main turns Ctrl-C and EPIPE into silent exits (130, 1): `invoke` below converts
            # them first, so they arrive here as errors of ours
            rv = super().main(argv, prog_name or "taskctl", complete_var, standalone_mode=False, **extra)
            code = int(rv) if isinstance(rv, int) else 0
            if code == ExitCode.INTERRUPTED and _Interrupts.count:  # Ctrl-C while parsing: typer's silent 130
                code = self._report(InterruptedError_("interrupted"))
        except _StdoutClosed:
            code = _quiet_stdout()
        except TaskctlError as exc:
            code = self._report(exc)
        except click_exc.NoArgsIsHelpError as exc:  # `taskctl table`: the group's help, as click shows it
            exc.show()
            code = exc.exit_code
        except click_exc.ClickException as exc:  # bad option, missing argument, unknown command: usage, exit 2
            code = self._report(usage_error(exc))
        except typer.Abort:  # click's prompts turn both Ctrl-C and end of input (Ctrl-D) into Abort
            if _Interrupts.count:
                code = self._report(InterruptedError_("interrupted"))
            else:
                code = self._report(NotConfirmedError("not confirmed (end of input); nothing changed"))
        except KeyboardInterrupt:
            code = self._report(InterruptedError_("interrupted"))
        except SystemExit:
            raise
        except Exception as exc:  # anything else is a bug; never print locals or secrets
            mapped = _translate(exc)
            if isinstance(mapped, _StdoutClosed):
                code = _quiet_stdout()
            elif mapped is not None:
                code = self._report(mapped)
            else:
                if STATE.debug:
                    traceback.print_exc()
                msg = mask_text(f"{type(exc).__name__}: {exc}", *_known_urls())
                print(f"error: internal error: {msg} (run with --debug for the traceback)", file=sys.stderr)
                code = ExitCode.FAILED
        code = _flush_stdout(code, self._report)
        if standalone_mode:
            sys.exit(code)
        return code

    def _report(self, exc: TaskctlError) -> int:
        if STATE.debug:
            traceback.print_exc()
        try:
            output.render_error(exc, STATE.fmt)
            sys.stderr.flush()
        except (BrokenPipeError, ValueError):  # stderr gone too: the exit code is all that is left
            pass
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
        try:
            return self._invoke_and_render(ctx)
        except KeyboardInterrupt:
            raise InterruptedError_("interrupted") from None
        except OSError as exc:
            mapped = _translate(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _invoke_and_render(self, ctx: Any) -> Any:
        rv = super().invoke(ctx)
        if isinstance(rv, int) and not isinstance(rv, bool):
            return rv
        fmt = STATE.fmt or output.default_format()
        from taskctl.models import Listing, Outcome

        if not isinstance(rv, Outcome):
            if STATE.quiet:
                # still drain generators so the work happens, but print nothing
                if isinstance(rv, Listing):
                    for _ in rv:
                        pass
                return 0
            return int(output.Renderer(fmt).render(rv))
        # the value first: an exit code may only be known once the value is printed (a streamed tree)
        if STATE.quiet:
            if isinstance(rv.value, Listing):
                for _ in rv.value:
                    pass
        else:
            output.Renderer(fmt).render(rv.value)
            sys.stdout.flush()
        if rv.message and rv.exit_code != ExitCode.OK:
            # why the exit code is not 0, reported as every error is: `error: ...` (JSON under -o json)
            output.render_error(error_for(rv.exit_code, rv.message), STATE.fmt)
        elif rv.message and not STATE.quiet:
            output.Renderer(fmt).render(Outcome(None, ExitCode.OK, rv.message))
        return int(rv.exit_code)


class _StdoutClosed(Exception):
    """The reader of stdout went away (`taskctl ... | head`): not an error, the command ends quietly with 0.

    Not an OSError, so typer's main (which exits 1 on EPIPE) lets it through to RootGroup.main.
    """


def _stdout_closed() -> bool:
    """True when stdout is a pipe or socket whose reader is gone (poll reports an error on the write end)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no real stdout (tests): cannot tell
        return False


def _translate(exc: BaseException) -> TaskctlError | _StdoutClosed | None:
    """An OSError (or broker URL problem) escaping an operation, as what the user should see; None for a bug."""
    if isinstance(exc, OSError):
        if exc.errno == errno.EPIPE or isinstance(exc, BrokenPipeError):
            if _stdout_closed() or not hasattr(sys.stdout, "fileno"):
                return _StdoutClosed()
            return UnavailableError(f"connection closed by the other side: {exc}", hint="check the server and retry")
        return from_os_error(exc)
    if isinstance(exc, KeyError):
        # kombu's "No such transport" for a broker URL that came from the environment or a config file
        return broker_scheme_error(_resolved_broker())
    return None


def _quiet_stdout() -> int:
    """Point stdout at /dev/null so nothing buffered raises again at interpreter exit ("Exception ignored")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return int(ExitCode.OK)


def _flush_stdout(code: int, report: Any) -> int:
    """Flush stdout here, not at interpreter exit: a closed pipe is exit 0, a full disk a clear error."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        mapped = _translate(exc) if isinstance(exc, OSError) else None
        _quiet_stdout()
        if isinstance(mapped, TaskctlError) and code == 0:
            return int(report(mapped))
    return code


def _known_urls() -> list[str]:
    try:
        s = config.current()
    except Exception:
        return []
    return [u for u in (s.backend, s.broker) if u]


def _resolved_broker() -> str | None:
    try:
        return config.current().broker
    except Exception:
        return None


RootGroup.context_class = Context


def _complete_format(incomplete: str) -> list[str]:
    return [f for f in FORMATS if f.startswith(incomplete)]


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
        autocompletion=_complete_format,
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
    bad_broker = broker_scheme_error(broker)
    if bad_broker is not None:
        raise bad_broker
    if output_fmt is not None and output_fmt not in FORMATS:
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
    "top": "Watch workers, queues, task rates and failures live; one snapshot with --once.",
}


def load_group(name: str) -> Any:
    """Build the click group of taskctl/commands/NAME.py exactly as `add_typer` on the root app would."""
    import importlib

    mod = importlib.import_module(f"taskctl.commands.{name}")
    holder = typer.Typer(**_APP_SETTINGS)
    holder.add_typer(mod.app, name=name)
    holder.callback()(lambda: None)
    group = typer.main.get_command(holder).commands[name]  # type: ignore[attr-defined]
    _use_context(group)
    return group


def _use_context(cmd: Any) -> None:
    """Every command of the tree makes our context, whose formatter writes usage lines with real metavars."""
    cmd.context_class = Context
    for sub in getattr(cmd, "commands", {}).values():
        _use_context(sub)


def get_command() -> Any:
    return typer.main.get_command(app)


#: seconds an interrupted command has to unwind (ack what was written, close connections) before it is ended
INTERRUPT_GRACE_S = 10.0


class _Interrupts:
    count = 0


def _forced_exit() -> None:
    """End the process now: the first Ctrl-C's clean-up is stuck (a blocked library call, a thread join)."""
    err = InterruptedError_("interrupted", hint="a second Ctrl-C (or a stuck clean-up) ended it at once")
    if STATE.fmt in ("json", "jsonl"):
        import json

        line = json.dumps({"error": err.to_json()}) + "\n"
    else:
        line = f"error: {err.message}\nhint: {err.hint}\n"
    try:
        os.write(2, line.encode())
    finally:
        os._exit(int(ExitCode.INTERRUPTED))


def _on_sigint(signum: int, frame: Any) -> None:
    """First Ctrl-C: KeyboardInterrupt, with a deadline to unwind; a second one ends the process at once."""
    _Interrupts.count += 1
    if _Interrupts.count > 1:
        _forced_exit()
    import threading

    timer = threading.Timer(INTERRUPT_GRACE_S, _forced_exit)
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


def main() -> None:
    """The console script: the command, then an exit that no leftover thread can hold up after Ctrl-C."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    try:
        get_command()(prog_name="taskctl")
    except SystemExit as exc:
        if _Interrupts.count:
            # a library's non-daemon thread (or a blocked atexit hook) must not keep an interrupted process alive
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(exc.code if isinstance(exc.code, int) else int(ExitCode.INTERRUPTED))
        raise
