"""`task revoke` and `task revoked` against a real Celery worker (RabbitMQ, and filesystem:// without servers)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from test_task_support import Stack, stack_fixture, stack_module_fixture  # noqa: F401 (fixtures)

pytestmark = pytest.mark.celery


def test_revoked_before_it_runs_is_skipped_by_the_worker(run, stack: Stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tid = str(uuid.uuid4())
    r = run("task", "revoke", tid, "--yes", "-o", "json")
    assert r.exit_code == 0, r.stderr
    out = r.json
    assert out["revoked"] == [tid]
    mine = [x for x in out["replies"] if x["worker"] == stack.worker_name]
    assert len(mine) == 1 and mine[0]["ok"] is True and tid in mine[0]["message"]
    # the worker (5.7) stores REVOKED when the broadcast arrives; taskctl marks it unless that came first
    assert out["marked"] + out["skipped_ready"] == [tid]
    assert stack.meta(tid)["status"] == "REVOKED"

    side_effect = tmp_path / "ran.txt"
    stack.send("tctl.touch", [str(side_effect)], task_id=tid)
    sentinel = stack.send("tctl.add", [2, 3])
    assert stack.wait_state(sentinel, {"SUCCESS"})["result"] == 5
    meta = stack.wait_state(tid, {"REVOKED"})
    assert meta["status"] == "REVOKED"
    assert not side_effect.exists(), "the worker ran a revoked task"
    assert f"Discarding revoked task: tctl.touch[{tid}]" in stack.log_text()

    r = run("task", "revoked", "-o", "json")
    assert r.exit_code == 0, r.stderr
    held = {x["task_id"]: x["workers"] for x in r.json}
    assert stack.worker_name in held[tid]


def test_never_marks_over_success(run, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    tid = stack.send("tctl.add", [20, 22])
    assert stack.wait_state(tid, {"SUCCESS"})["result"] == 42
    r = run("task", "revoke", tid, "--yes", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["marked"] == [] and r.json["skipped_ready"] == [tid]
    meta = stack.meta(tid)
    assert (meta["status"], meta["result"]) == ("SUCCESS", 42)


def test_dry_run_sends_nothing(run, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    tid = str(uuid.uuid4())
    r = run("task", "revoke", tid, "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["dry_run"] is True and r.json["replies"] == [] and r.json["marked"] == [tid]
    assert stack.meta(tid)["status"] == "PENDING"
    r = run("task", "revoked", "-o", "json")
    assert tid not in {x["task_id"] for x in r.json}
