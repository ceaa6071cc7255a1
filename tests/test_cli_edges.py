"""The script contract at the edges, tried as a user would: real processes, real pipes, real signals.

A closed pipe (`| head`) exits 0 quietly, Ctrl-C says `error: interrupted` and exits 130 at once, a full disk
is a one-line error, and click's usage errors come out as `error:`/`hint:` lines. Data lives in a file://
result store and a filesystem:// broker in tmp_path, seeded with enough to overflow a pipe buffer (64 KiB).
"""

from __future__ import annotations

import json
import os
import pty
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from taskctl import backends
from taskctl.formats.message import build_task_message

PY = sys.executable
FORMATS = ("json", "jsonl", "csv", "plain", "table")
PENDING_ID = "99999999-9999-9999-9999-999999999999"


def taskctl(
    *args: str, timeout: float = 60, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "taskctl", *args], capture_output=True, text=True, timeout=timeout, stdin=stdin, check=False
    )


def pipeline(cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`bash -o pipefail`: the pipeline's status is taskctl's unless head fails."""
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=timeout, check=False
    )


def quiet_stderr(err: str) -> bool:
    """Nothing but warnings (filesystem:// warns about its delete-before-ack) on stderr."""
    return all(line.startswith("warning: ") for line in err.splitlines())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A file:// result store with 1,500 results (about 400 KB of output in every format); read only."""
    folder = tmp_path_factory.mktemp("results")
    for i in range(1500):
        tid = str(uuid.UUID(int=i + 1))
        meta = {
            "status": "SUCCESS",
            "result": "r" * 200,
            "traceback": None,
            "children": [],
            "date_done": "2026-11-22T01:00:00+00:00",
            "task_id": tid,
            "name": "app.add",
        }
        (folder / f"celery-task-meta-{tid}").write_text(json.dumps(meta))
    return f"file://{folder}"


@pytest.fixture
def fsqueue(tmp_path: Path) -> str:
    """A filesystem:// broker configured in ./taskctl.toml, queue 'big' holding 400 messages of ~600 bytes."""
    folder = tmp_path / "fsq"
    folder.mkdir()
    opts = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    Path("taskctl.toml").write_text(
        '[default]\nbroker = "filesystem://"\n[default.transport_options]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in opts.items())
    )
    broker = backends.load(backends.BROKER)("filesystem://", opts)
    with broker.publisher() as pub:
        for i in range(400):
            msg = build_task_message("app.add", ["x" * 500, i], {}, task_id=f"big-{i:05d}", queue="big")
            pub.publish(msg, "", "big")
        pub.flush()
    return "big"


# -- a closed pipe ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_closed_pipe_exits_0_quietly_result_list(store: str, fmt: str) -> None:
    # the table renderer lays out what it shows before printing: 300 rows are still 400 KB
    limit = ["--limit", "300"] if fmt == "table" else []
    base = shlex.join([PY, "-m", "taskctl", "--backend", store, "result", "list", "-o", fmt, *limit])
    for _ in range(3):  # it used to depend on timing for plain
        r = pipeline(f"{base} | head -1 >/dev/null")
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""  # no "Exception ignored ... BrokenPipeError" at interpreter exit either


@pytest.mark.parametrize("fmt", ["json", "jsonl", "plain"])
def test_closed_pipe_exits_0_quietly_queue_peek_and_drain(fsqueue: str, fmt: str) -> None:
    peek = shlex.join([PY, "-m", "taskctl", "queue", "peek", fsqueue, "-n", "300", "-o", fmt])
    for _ in range(2):
        r = pipeline(f"{peek} | head -3 >/dev/null")
        assert r.returncode == 0 and quiet_stderr(r.stderr), r.stderr
    drain = shlex.join([PY, "-m", "taskctl", "queue", "drain", fsqueue, "--limit", "200", "--yes", "-o", fmt])
    r = pipeline(f"{drain} | head -1 >/dev/null")
    assert r.returncode == 0 and quiet_stderr(r.stderr), r.stderr


def test_pipe_read_to_the_end_is_untouched(store: str) -> None:
    base = shlex.join([PY, "-m", "taskctl", "--backend", store, "result", "list", "-o", "jsonl"])
    r = pipeline(f"{base} | wc -l")
    assert r.returncode == 0 and r.stdout.strip() == "1500" and r.stderr == ""


# -- Ctrl-C ------------------------------------------------------------------------------------------------


def interrupt(args: list[str], wait_s: float = 3.0) -> tuple[int, float, str]:
    """Start taskctl, send one SIGINT once it is waiting, return (exit code, seconds to exit, stderr)."""
    proc = subprocess.Popen(
        [PY, "-m", "taskctl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(wait_s)
    assert proc.poll() is None, "ended before the signal"
    proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    _, err = proc.communicate(timeout=30)
    return proc.returncode, time.monotonic() - start, err


@pytest.mark.parametrize("fmt", [None, "json"])
def test_ctrl_c_result_wait_says_interrupted(store: str, fmt: str | None) -> None:
    fmt_args = ["-o", fmt] if fmt else []
    code, took, err = interrupt(["--backend", store, *fmt_args, "result", "wait", PENDING_ID, "--timeout", "60"])
    assert code == 130 and took < 2, (code, took, err)
    last = err.splitlines()[-1]
    if fmt == "json":
        assert json.loads(last)["error"]["code"] == "interrupted"
    else:
        assert last.startswith("error: interrupted") and "Traceback" not in err


@pytest.mark.parametrize("fmt", [None, "json"])
def test_ctrl_c_idle_queue_drain_says_interrupted(tmp_path: Path, fsqueue: str, fmt: str | None) -> None:
    fmt_args = ["-o", fmt] if fmt else []
    out = tmp_path / "out.jsonl"
    code, took, err = interrupt([*fmt_args, "queue", "drain", "idle-q", "--idle", "60", "--file", str(out), "--yes"])
    assert code == 130 and took < 2, (code, took, err)
    last = err.splitlines()[-1]
    if fmt == "json":
        doc = json.loads(last)["error"]
        assert doc["code"] == "interrupted" and doc["exit_code"] == 130
    else:
        assert last.startswith("error: interrupted") and "Traceback" not in err


# -- a full disk, and paths the user gave -------------------------------------------------------------------


def test_full_disk_on_stdout_is_a_clear_error(store: str) -> None:
    with open("/dev/full", "w") as full:
        r = subprocess.run(
            [PY, "-m", "taskctl", "--backend", store, "result", "list"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == "error: no space left on device", r.stderr
    assert r.stderr.splitlines()[1].startswith("hint: free some space")
    assert "internal error" not in r.stderr and "Exception ignored" not in r.stderr


def test_full_disk_json_error(store: str) -> None:
    with open("/dev/full", "w") as full:
        r = subprocess.run(
            [PY, "-m", "taskctl", "-o", "json", "--backend", store, "result", "show", str(uuid.UUID(int=1))],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert r.returncode == 1
    assert json.loads(r.stderr)["error"]["code"] == "disk-full"


def test_full_disk_drain_file(fsqueue: str) -> None:
    r = taskctl("queue", "drain", fsqueue, "--file", "/dev/full", "--limit", "5", "--yes")
    assert r.returncode == 1, r.stderr
    assert "no space left on device" in r.stderr and "internal error" not in r.stderr
    r = taskctl("-o", "json", "queue", "drain", fsqueue, "--file", "/dev/full", "--limit", "5", "--yes")
    assert r.returncode == 1 and json.loads(r.stderr.splitlines()[-1])["error"]["code"] == "disk-full"


def test_os_errors_on_user_paths_map_to_documented_codes(tmp_path: Path) -> None:
    import errno

    from taskctl.errors import ExitCode, from_os_error

    def code(err: OSError) -> tuple[int, str] | None:
        mapped = from_os_error(err)
        return None if mapped is None else (int(mapped.exit_code), mapped.code)

    assert code(OSError(errno.ENOSPC, "No space left on device")) == (1, "disk-full")
    assert code(OSError(errno.EDQUOT, "Disk quota exceeded", "/q")) == (1, "disk-full")
    assert code(PermissionError(errno.EACCES, "Permission denied", "/x")) == (ExitCode.UNAVAILABLE, "permission-denied")
    assert code(OSError(errno.EROFS, "Read-only file system", "/x")) == (ExitCode.UNAVAILABLE, "permission-denied")
    assert code(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")) == (3, "not-found")
    assert code(IsADirectoryError(errno.EISDIR, "Is a directory", "/x")) == (2, "usage")
    # without a path an OSError says nothing a user can fix: a bug, reported as an internal error
    assert code(FileNotFoundError(errno.ENOENT, "No such file or directory")) is None


# -- usage errors ----------------------------------------------------------------------------------------


def test_missing_argument_is_error_hint_exit_2() -> None:
    r = taskctl("table", "delete")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "error: missing argument 'TABLE'",
        "hint: usage: taskctl table delete [OPTIONS] TABLE (see 'taskctl table delete --help')",
    ]


def test_unknown_root_command_gets_a_suggestion() -> None:
    r = taskctl("tabel", "list")
    assert r.returncode == 2
    err = r.stderr.splitlines()
    assert err[0] == "error: no such command 'tabel'" and err[1].startswith("hint: did you mean 'table'?")


def test_unknown_subcommand_gets_a_suggestion() -> None:
    r = taskctl("table", "lst")
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == "error: no such command 'lst'"
    assert r.stderr.splitlines()[1].startswith("hint: did you mean 'list'?")


def test_unknown_option_gets_a_suggestion() -> None:
    r = taskctl("result", "list", "--limt", "3")
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == "error: no such option: --limt"
    assert r.stderr.splitlines()[1].startswith("hint: did you mean --limit?")


def test_usage_error_is_json_on_stderr_under_json() -> None:
    r = taskctl("-o", "json", "result", "show")
    assert r.returncode == 2 and r.stdout == ""
    doc = json.loads(r.stderr)["error"]
    assert doc["code"] == "usage" and doc["exit_code"] == 2 and doc["message"] == "missing argument 'ID...'"


def test_usage_line_shows_the_metavar() -> None:
    r = taskctl("table", "delete", "--help")
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "Usage: taskctl table delete [OPTIONS] TABLE"
    assert "{" not in taskctl("queue", "move", "--help").stdout.splitlines()[0]


def test_bare_group_still_shows_its_help() -> None:
    r = taskctl("table")
    assert r.returncode == 2 and r.stderr.startswith("Usage: taskctl table [OPTIONS] COMMAND")


@pytest.mark.parametrize(
    ("env", "args"),
    [
        ({}, ["--broker", "amqq://guest:s3cret-pw@h//", "queue", "stats"]),
        ({"TASKCTL_BROKER_URL": "amqq://guest:s3cret-pw@h//"}, ["queue", "stats"]),
    ],
)
def test_unknown_broker_scheme_is_usage_with_did_you_mean(env: dict[str, str], args: list[str]) -> None:
    r = subprocess.run(
        [PY, "-m", "taskctl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )
    assert r.returncode == 2, r.stderr
    err = r.stderr.splitlines()
    assert err[0].startswith("error: unknown broker scheme 'amqq'") and "s3cret-pw" not in r.stderr
    assert err[1].startswith("hint: did you mean 'amqp'?")


def test_broker_scheme_check_needs_no_kombu() -> None:
    code = (
        "import sys\nfrom taskctl.cli import main\ntry:\n    main()\nexcept SystemExit as e:\n"
        "    print(e.code, 'kombu' in sys.modules)\n"
    )
    r = subprocess.run(
        [PY, "-c", code, "--broker", "amqq://x", "queue", "stats"], capture_output=True, text=True, check=False
    )
    assert r.stdout.split() == ["2", "False"], r.stderr


# -- consent -----------------------------------------------------------------------------------------------


def _prompted_forget(tmp_path: Path, answer: bytes | None) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`result forget ID` with a pty as stdin (so it asks); ANSWER typed, or SIGINT sent at the prompt."""
    import select

    folder = tmp_path / "one"
    folder.mkdir()
    tid = str(uuid.UUID(int=7))
    stored = folder / f"celery-task-meta-{tid}"
    stored.write_text(json.dumps({"status": "SUCCESS", "task_id": tid, "result": 1}))
    controller, tty = pty.openpty()
    seen = b""
    try:
        proc = subprocess.Popen(
            [PY, "-m", "taskctl", "--backend", f"file://{folder}", "result", "forget", tid],
            stdin=tty,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while b"[y/N]" not in seen and time.monotonic() < deadline:  # the prompt is up: it waits for us
            if select.select([proc.stderr], [], [], 0.5)[0]:
                seen += os.read(proc.stderr.fileno(), 4096)
        if answer is None:
            proc.send_signal(signal.SIGINT)
        else:
            os.write(controller, answer)
        _, rest = proc.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(tty)
    return proc, (seen + rest).decode(), stored


@pytest.mark.parametrize("answer", [b"n\n", b"\x04"], ids=["no", "ctrl-d"])
def test_declined_prompt_exits_1_not_130(tmp_path: Path, answer: bytes) -> None:
    """A "no" (or end of input) typed at a terminal prompt is a refusal, not Ctrl-C."""
    proc, err, stored = _prompted_forget(tmp_path, answer)
    assert proc.returncode == 1, err
    assert "error: not confirmed" in err and "nothing changed" in err
    assert stored.exists()


def test_ctrl_c_at_the_prompt_is_130(tmp_path: Path) -> None:
    proc, err, stored = _prompted_forget(tmp_path, None)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "error: interrupted" and stored.exists()


def test_refusal_off_a_terminal_is_exit_2_with_hint(store: str) -> None:
    r = taskctl("--backend", store, "result", "forget", str(uuid.UUID(int=1)))
    assert r.returncode == 2
    err = r.stderr.splitlines()
    assert (
        len(err) == 2
        and err[0].startswith("error: refusing to ")
        and err[0].endswith("without --yes (stdin is not a terminal)")
    )
    assert err[1] == "hint: pass --yes to confirm, or --dry-run to see what would change"


SWALLOWER = """
import signal, sys, time
from taskctl import cli
cli.INTERRUPT_GRACE_S = float(sys.argv[1])
cli.STATE.fmt = sys.argv[2] or None
signal.signal(signal.SIGINT, cli._on_sigint)
print("ready", flush=True)
while True:  # a library call that swallows KeyboardInterrupt and goes on waiting
    try:
        time.sleep(30)
    except KeyboardInterrupt:
        pass
"""


def _swallower(grace: float, fmt: str = "") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [PY, "-c", SWALLOWER, str(grace), fmt], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    time.sleep(0.3)  # into the try block: a signal before it would end the script itself
    return proc


def test_second_ctrl_c_ends_a_stuck_command_at_once() -> None:
    proc = _swallower(grace=60)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert proc.poll() is None  # the first one was swallowed by the "library"
    proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130 and time.monotonic() - start < 2, err
    assert err.splitlines()[0] == "error: interrupted"


def test_one_ctrl_c_ends_a_stuck_command_after_the_grace_period() -> None:
    proc = _swallower(grace=0.5, fmt="json")
    proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130 and time.monotonic() - start < 3
    assert json.loads(err)["error"]["code"] == "interrupted"


@pytest.mark.parametrize("kind", ["amqp", "redis"])
def test_ctrl_c_idle_drain_on_a_real_broker(request: pytest.FixtureRequest, kind: str, unique_name: str) -> None:
    """The drain waits inside the transport's socket read (py-amqp, redis-py): Ctrl-C still ends it at once."""
    url = request.getfixturevalue("rabbitmq_url" if kind == "amqp" else "redis_url")
    broker = backends.load(backends.BROKER)(url, {})
    if kind == "amqp":
        broker.declare_queue(unique_name)
    try:
        code, took, err = interrupt(["--broker", url, "queue", "drain", unique_name, "--idle", "60", "--yes"])
    finally:
        if kind == "amqp":
            broker.delete_queue(unique_name)
    assert code == 130 and took < 2, (code, took, err)
    assert err.splitlines()[-1].startswith("error: interrupted")


@pytest.mark.parametrize("extra", [[], ["-q"], ["-o", "json"]])
def test_a_result_with_a_failing_exit_code_reports_an_error_line(store: str, extra: list[str]) -> None:
    """`result show MISSING` prints its rows, then why it exits 3, as every error is (also under --quiet)."""
    r = taskctl("--backend", store, *extra, "result", "show", str(uuid.UUID(int=1)), PENDING_ID)
    assert r.returncode == 3
    if "-o" in extra:
        assert len(json.loads(r.stdout)) == 2
        assert json.loads(r.stderr)["error"]["code"] == "not-found"
    else:
        assert r.stderr.startswith("error: 1 of 2 ids have no stored result"), r.stderr
        assert (r.stdout == "") == ("-q" in extra)


def test_json_list_from_an_unreachable_broker_leaves_stdout_empty(run: Any) -> None:
    """A list that fails before its first row prints no half array: stdout stays empty, the error is on stderr."""
    r = run("queue", "list", "-o", "json", "--broker", "sqs://a:b@127.0.0.1:1")
    assert r.exit_code == 5
    assert r.stdout == ""
    assert json.loads(r.stderr)["error"]["code"] == "unavailable"
