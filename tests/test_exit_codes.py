"""Every documented exit code, pinned end to end (the README's table is generated from taskctl.errors).

Most cases use Celery's file:// result backend so they need no server; 5 uses a closed loopback port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from taskctl.errors import EXIT_CODE_DOCS, ExitCode

TID = "11111111-1111-1111-1111-111111111111"


def store(tmp_path: Path, status: str, task_id: str = TID, children: list[object] | None = None) -> str:
    folder = tmp_path / "results"
    folder.mkdir(exist_ok=True)
    meta = {
        "status": status,
        "result": None
        if status != "FAILURE"
        else {"exc_type": "ValueError", "exc_message": ["bad 2"], "exc_module": "builtins"},
        "traceback": None,
        "children": children or [],
        "date_done": "2026-11-22T01:00:00+00:00",
        "task_id": task_id,
    }
    (folder / f"celery-task-meta-{task_id}").write_text(json.dumps(meta))
    return f"file://{folder}"


def test_every_exit_code_is_documented() -> None:
    assert set(EXIT_CODE_DOCS) == set(ExitCode)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for code in ExitCode:
        assert f"| {int(code)} | `{code.name}` |" in readme


def test_0_success(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = run("--backend", store(tmp_path, "SUCCESS"), "result", "show", TID, "-o", "json")
    assert r.exit_code == 0 and r.json[0]["state"] == "SUCCESS"


def test_1_check_found_a_problem(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = run("--backend", store(tmp_path, "FAILURE"), "result", "tree", TID, "--check")
    assert r.exit_code == 1


def test_2_usage_destructive_without_yes(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = run("--backend", store(tmp_path, "SUCCESS"), "result", "forget", TID)
    assert r.exit_code == 2 and "--yes" in r.stderr
    assert (tmp_path / "results" / f"celery-task-meta-{TID}").exists()


def test_2_usage_bad_url(run) -> None:  # type: ignore[no-untyped-def]
    r = run("--backend", "dynamodb://KEYONLY@us-east-1/t", "table", "describe")
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_3_not_found(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = store(tmp_path, "SUCCESS")
    r = run("--backend", url, "result", "show", "22222222-2222-2222-2222-222222222222", "-o", "json")
    assert r.exit_code == 3 and r.json[0]["found"] is False and r.json[0]["state"] == "PENDING"


def test_4_conflict_incompatible_schema(run, ddb_client, dynamodb_endpoint: str, unique_name: str) -> None:  # type: ignore[no-untyped-def]
    ddb_client.create_table(  # type: ignore[attr-defined]
        TableName=unique_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    r = run("--endpoint-url", dynamodb_endpoint, "--region", "us-east-1", "table", "create", unique_name)
    assert r.exit_code == 4 and "pk" in r.stderr


def test_5_unreachable_with_password_masked(run) -> None:  # type: ignore[no-untyped-def]
    r = run("--broker", "amqp://guest:hunter2secret@127.0.0.1:1//", "queue", "stats", "celery")
    assert r.exit_code == 5 and "hunter2secret" not in r.stderr + r.stdout and "****" in r.stderr


def test_124_timed_out_waiting(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = run("--backend", store(tmp_path, "STARTED"), "result", "wait", TID, "--timeout", "1", "--interval", "0.2")
    assert r.exit_code == 124


def test_130_interrupted(tmp_path: Path, taskctl_cmd: list[str]) -> None:
    url = store(tmp_path, "STARTED")
    proc = subprocess.Popen(
        [*taskctl_cmd, "--backend", url, "result", "wait", TID, "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    time.sleep(1.5 if sys.platform == "linux" else 3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.splitlines()[-1] == "error: interrupted"  # it used to exit 130 without a word
