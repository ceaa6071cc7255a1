"""The script contract over the whole command tree: consent options, and a property-based run of every command.

The property test walks the click tree, generates arguments, options and stdin (random words, empty strings,
unicode, `-`, numbers, huge numbers, bad durations, bad URLs, every `-o` format) and runs each command in
process against a file:// result store and a filesystem:// broker in tmp_path (no network). Whatever the
input: no internal error, only documented exit codes, stderr in the documented format, JSON under -o json.
"""

from __future__ import annotations

import json
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from taskctl.cli import app, get_command
from taskctl.errors import ExitCode

DESTRUCTIVE = re.compile(r"\b(delete|remove|purge|forget|drain|move)s?\b", re.IGNORECASE)


def leaf_commands() -> Iterator[tuple[str, Any]]:
    root = get_command()
    ctx = typer.Context(root, info_name="taskctl")

    def walk(cmd: Any, path: list[str]) -> Iterator[tuple[str, Any]]:
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                yield from walk(cmd.get_command(ctx, name), [*path, name])
        else:
            yield " ".join(path), cmd

    yield from walk(root, [])


def option_names(cmd: Any) -> set[str]:
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}


def destructive(cmd: Any) -> bool:
    """What it does (name, first help line) or an option (`--purge`) says it deletes, removes or moves."""
    summary = (cmd.help or "").strip().splitlines()[0] if cmd.help else ""
    return bool(DESTRUCTIVE.search(f"{cmd.name} {summary}") or any(DESTRUCTIVE.search(o) for o in option_names(cmd)))


def test_every_destructive_command_takes_yes_and_dry_run() -> None:
    found = {path: cmd for path, cmd in leaf_commands() if destructive(cmd)}
    assert {"table delete", "result forget", "queue purge", "queue drain", "rpc drain", "local down"} <= set(found)
    lacking: dict[str, set[str]] = {}
    for path, cmd in found.items():
        missing = {"--yes", "--dry-run"} - option_names(cmd)
        if missing:
            lacking[path] = missing
    assert lacking == {}


def test_confirm_never_prompts_off_a_terminal() -> None:
    """The shared helper: no --yes and stdin not a terminal is exit 2 with the hint, never a prompt."""
    from taskctl.commands.common import confirm
    from taskctl.errors import UsageError

    with pytest.raises(UsageError) as info:
        confirm("delete everything", yes=False)
    assert info.value.exit_code == ExitCode.USAGE and info.value.hint and "--yes" in info.value.hint
    confirm("delete everything", yes=False, dry_run=True)  # a dry run changes nothing: no consent needed
    confirm("delete everything", yes=True)


# -- the property test ---------------------------------------------------------------------------------------

#: excluded from the property run: `result wait` waits by design (its timeout is pinned in test_exit_codes) and
#: `local up` starts servers and a worker (tests/test_local.py covers it)
EXCLUDED = {"result wait", "local up"}
COMMANDS = [(path, cmd) for path, cmd in leaf_commands() if path not in EXCLUDED]
DOCUMENTED_EXITS = {int(c) for c in ExitCode}
EXAMPLES = 250
EXAMPLE_TIMEOUT_S = 10

RESULT_ID = str(uuid.UUID(int=42))
FORMATS = ["table", "plain", "json", "jsonl", "csv", "tsv"]
#: options that make a command wait: only short or invalid values, so an example never waits for long
WAITS = {"--timeout", "--idle", "--interval", "--idle-for", "--reply-timeout"}
BAD_DURATIONS = ["abc", "-1", "nan", "inf", "1e999", "", "  ", "1x", "٣", "1e308", "--"]

NUL_FREE = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
SOMETIMES = st.sampled_from([False, False, True])
REALISTIC = st.sampled_from(
    ["big", "celery", RESULT_ID, str(uuid.UUID(int=43)), "out.jsonl", "-", "5", "binary.bin", "drained.jsonl"]
)
WORDS = st.one_of(
    REALISTIC,
    st.sampled_from(
        [
            "",
            "-",
            "celery",
            "big",
            RESULT_ID,
            "0",
            "-1",
            "3",
            "99999999999999999999999999",
            "1e999",
            "nan",
            "ünïcødé",
            "名前",
            "a b",
            "*",
            "app.*",
            "../x",
            "SUCCESS",
            "FAILURE",
            "results",
            "\x1b[31mred",
        ]
    ),
    st.text(alphabet=NUL_FREE, max_size=12),
)
INTS = st.one_of(st.sampled_from(["0", "-1", "1", "5", "abc", "", "1e3"]), st.integers().map(str))
DURATIONS = st.sampled_from(["0", "0.1", "0.3", *BAD_DURATIONS])
ANY_DURATIONS = st.one_of(DURATIONS, st.sampled_from(["1h", "7d", "99999999999999999999", "2026-01-01"]), WORDS)
BAD_BACKENDS = [
    "",
    "nope",
    "dynamodbb://@us-east-1/t",
    "dynamodb://KEYONLY@us-east-1/t",
    "file://",
    "redis://:pw@127.0.0.1:1/0",
    "http://127.0.0.1:1/",
    "ünï://x",
    "file:///nonexistent/dir",
    "redis://:p@ss@127.0.0.1:1/0",
    "redis://:p/w#x@127.0.0.1:1/0",
]
BAD_BROKERS = [
    "",
    "nope",
    "amqq://x",
    "amqp://guest:pw@127.0.0.1:1//",
    "redis://127.0.0.1:1/0",
    "a+b://x",
    "://",
    "amqp://u:p@ss@127.0.0.1:1//",
    "amqp://u:p/w?x@127.0.0.1:1//",
    "amqp://u@127.0.0.1:1//?password=secret",
    "amqp://a:p1@127.0.0.1:1//;amqp://b:p2@127.0.0.1:1//",
    "filesystem://",
    "memory://",
]
DEEP_JSON = "[" * 100_000 + "]" * 100_000 + "\n"  # a JSON value nested 100,000 levels deep
HUGE_LINE = "x" * 1_000_000 + "\n"
STDIN = st.one_of(
    st.sampled_from(
        ["", "-\n", f"{RESULT_ID}\n", "{}\n", "[]\n", '{"body": "!!"}\n', "\x00\xff garbage\n", DEEP_JSON, HUGE_LINE]
    ),
    st.text(alphabet=NUL_FREE, max_size=60),
)


#: realistic values per option, so examples get past validation into the operations
LIKELY: dict[str, list[str]] = {
    "--state": ["SUCCESS", "FAILURE", "PENDING", "FAILED", "custom"],
    "--task": ["app.*", "app.add", "*", "no.match"],
    "--serializer": ["json", "msgpack", "yaml", "pickle", "bogus"],
    "--kind": ["task", "group", "chord", "all", "bogus"],
    "--keep": ["SUCCESS", "FAILURE", "bogus"],
    "--from": ["big", "celery", "missing-q"],
    "--to": ["big", "other", "missing-q"],
    "--file": ["out.jsonl", "-", "results", "/dev/full", "", "missing-dir/x.jsonl", "binary.bin"],
    "--signal": ["TERM", "SIGKILL", "9", "BOGUS", "0"],
    "--match": ["b*", "*", "["],
}


def value_for(param: Any, name: str) -> st.SearchStrategy[str]:
    if name in LIKELY:
        return st.one_of(st.sampled_from(LIKELY[name]), WORDS)
    if name in WAITS:
        return DURATIONS
    if name in ("--older-than", "--newer-than"):
        return ANY_DURATIONS
    if param.type.name.startswith("int"):
        return INTS
    if name in ("-o", "--output"):
        return st.sampled_from([*FORMATS, "yaml", ""])
    return WORDS


@st.composite
def invocations(draw: st.DrawFn) -> tuple[list[str], str]:
    path, cmd = draw(st.sampled_from(COMMANDS))
    fmt = draw(st.sampled_from([None, *FORMATS]))
    args: list[str] = []
    if fmt is not None:
        args += ["-o", fmt]
    if draw(st.integers(0, 9)) == 0:
        args += ["--backend", draw(st.sampled_from(BAD_BACKENDS))]
    if draw(st.integers(0, 9)) == 0:
        args += ["--broker", draw(st.sampled_from(BAD_BROKERS))]
    if draw(st.integers(0, 14)) == 0:
        args += ["--env", draw(WORDS)]
    if draw(st.integers(0, 9)) == 0:
        args.append("-q")
    args += path.split()
    for p in cmd.params:
        if p.param_type_name == "argument":
            if p.nargs == -1:
                count = draw(st.integers(0, 3))
            else:
                count = 1 if p.required and draw(st.integers(0, 9)) else draw(st.integers(0, 1))
            args += [draw(WORDS) for _ in range(count)]
        elif draw(SOMETIMES):
            name = draw(st.sampled_from(p.opts + p.secondary_opts))
            if getattr(p, "is_flag", False):
                args.append(name)
            else:
                args += [name, draw(value_for(p, name))]
    if draw(st.integers(0, 19)) == 0:  # an unknown option or a stray argument
        args.append(draw(st.sampled_from(["--bogus", "--limt", "-Z", "stray"])))
    return args, draw(STDIN)


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """./taskctl.toml: a file:// result store with a few results and a filesystem:// queue 'big'."""
    from taskctl import backends
    from taskctl.formats.message import build_task_message

    results = tmp_path / "results"
    results.mkdir()
    for i, state in enumerate(["SUCCESS", "FAILURE", "STARTED", "PROGRESS"]):
        tid = str(uuid.UUID(int=42 + i))
        meta = {"status": state, "result": [i, "x"], "traceback": None, "children": [], "task_id": tid}
        (results / f"celery-task-meta-{tid}").write_text(json.dumps(meta))
    queues = tmp_path / "fsq"
    queues.mkdir()
    opts = {"data_folder_in": str(queues), "data_folder_out": str(queues)}
    Path("taskctl.toml").write_text(
        f'[default]\nbackend = "file://{results}"\nbroker = "filesystem://"\n'
        "[default.transport_options]\n" + "".join(f'{k} = "{v}"\n' for k, v in opts.items())
    )
    (tmp_path / "binary.bin").write_bytes(bytes(range(256)) * 4)  # not a drain file: not even UTF-8
    (tmp_path / "drained.jsonl").write_text('{"not": "a drained message"}\n\nnot json\n')
    broker = backends.load(backends.BROKER)("filesystem://", opts)
    with broker.publisher() as pub:
        for i in range(20):
            pub.publish(build_task_message("app.add", [i, i], {}, task_id=f"big-{i:03d}", queue="big"), "", "big")
        pub.flush()
    return tmp_path


class ExampleTimeout(BaseException):
    """Raised by the alarm: a BaseException, so no handler of taskctl's can mistake it for an error of its own."""


#: informational stderr lines under -o table/plain (a summary after the rows), each with where it comes from
KNOWN_STDERR = [
    # output.py prints a Listing's summary on stderr under -o table, without a prefix (`task revoked -o table`)
    re.compile(r"^\d+ ids held by \d+ workers$"),
    # doctor.py's success summary is an Outcome message with exit 0 (cli reports only non-zero ones as errors)
    re.compile(r"^doctor: all \d+ checks passed"),
]


def check(args: list[str], stdin: str, exit_code: int, stdout: str, stderr: str) -> None:
    fmt = args[args.index("-o") + 1] if "-o" in args else None
    assert "internal error" not in stderr, (args, stderr)
    assert exit_code in DOCUMENTED_EXITS, (args, exit_code, stderr)
    for line in stderr.split("\n"):  # not splitlines(): \x85 or \x0c inside a message is no line break
        if not line.strip() or any(p.match(line) for p in KNOWN_STDERR):
            continue
        if line.startswith(("error: ", "hint: ", "warning: ")):
            continue
        if fmt in ("json", "jsonl") and line.startswith("{"):
            assert "error" in json.loads(line), line
            continue
        raise AssertionError(f"stderr line not in the documented format: {line!r} ({args})")
    if exit_code == 0 and fmt == "json" and "-q" not in args:
        json.loads(stdout)
    if exit_code == 0 and fmt == "jsonl" and "-q" not in args:
        for line in stdout.split("\n"):
            if line:
                json.loads(line)


def _alarm(signum: int, frame: Any) -> None:
    raise ExampleTimeout(f"no answer within {EXAMPLE_TIMEOUT_S} s")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=invocations())
def test_every_command_keeps_the_contract(sandbox: Path, case: tuple[list[str], str]) -> None:
    args, stdin = case
    runner = CliRunner()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, EXAMPLE_TIMEOUT_S)
    try:
        res = runner.invoke(app, args, input=stdin, catch_exceptions=False)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    event(f"exit {res.exit_code}")  # pytest --hypothesis-show-statistics: how the examples ended
    check(args, stdin, res.exit_code, res.stdout, res.stderr)
