"""`task requeue` against a real Celery worker: from a dead-letter queue and from stored failures."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_task_support import Stack, stack_fixture, stack_module_fixture  # noqa: F401 (fixtures)

from taskctl.formats.message import RawMessage, build_task_message

pytestmark = pytest.mark.celery


def put_raw(stack: Stack, queue: str, raw: RawMessage) -> None:
    """Publish RAW as is (what a dead-lettering broker would have left in QUEUE)."""
    from kombu import Connection, Producer

    with Connection(stack.broker, transport_options=stack.transport_options) as conn:
        Producer(conn.default_channel).publish(
            raw.body,
            exchange="",
            routing_key=queue,
            headers=dict(raw.headers),
            content_type=raw.content_type,
            content_encoding=raw.content_encoding,
            correlation_id=raw.properties.get("correlation_id"),
            delivery_mode=2,
            declare=[],
        )


def queue_size(stack: Stack, queue: str) -> int:
    from kombu import Connection

    with Connection(stack.broker, transport_options=stack.transport_options) as conn:
        try:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
        except Exception:
            return 0


def wait_size(stack: Stack, queue: str, n: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    size = queue_size(stack, queue)
    while size != n and time.monotonic() < deadline:
        time.sleep(0.1)
        size = queue_size(stack, queue)
    return size


def dead_letter(stack: Stack, name: str, args: list[Any], **kw: Any) -> tuple[str, str]:
    """A task message in a dead-letter queue with an x-death header naming the stack's queue; (task id, dlq)."""
    tid = str(uuid.uuid4())
    dlq = stack.dlq or f"{stack.queue}.dlq"
    raw = build_task_message(name, args, {}, task_id=tid, queue=stack.queue, **kw)
    death = {"queue": stack.queue, "reason": "rejected", "count": 1, "exchange": "", "routing-keys": [stack.queue]}
    put_raw(stack, dlq, RawMessage(**{**raw.__dict__, "headers": {**raw.headers, "x-death": [death]}}))
    return tid, dlq


def test_dead_lettered_task_is_requeued_and_runs(run, stack: Stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """On RabbitMQ the worker itself dead-letters the task (Reject); elsewhere the DLQ message is made by hand."""
    marker = tmp_path / "marker"
    if stack.dlq:
        tid = stack.send("tctl.reject_once", [str(marker)])
        dlq = stack.dlq
        assert wait_size(stack, dlq, 1) == 1, stack.log_text()[-2000:]
    else:
        marker.write_text("1")  # the next run is the "requeued run"
        tid, dlq = dead_letter(stack, "tctl.reject_once", [str(marker)])

    r = run("task", "requeue", "--from", dlq, "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert [(x["task_id"], x["action"], x["queue"]) for x in r.json] == [(tid, "would-requeue", stack.queue)]
    assert queue_size(stack, dlq) == 1

    r = run("task", "requeue", "--from", dlq, "--yes", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json == [
        {
            "task_id": tid,
            "task": "tctl.reject_once",
            "source": dlq,
            "queue": stack.queue,
            "action": "requeued",
            "note": None,
            "new_id": None,
        }
    ]
    meta = stack.wait_state(tid, {"SUCCESS"})
    assert (meta["status"], meta["result"]) == ("SUCCESS", "requeued run")
    assert queue_size(stack, dlq) == 0


def test_past_expires_is_skipped_unless_reset(run, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    tid, dlq = dead_letter(stack, "tctl.add", [1, 2], expires=past)
    r = run("task", "requeue", "--from", dlq, "--yes", "-o", "json")
    assert r.exit_code == 1
    assert "1 not requeued" in r.stderr
    (row,) = r.json
    assert row["action"] == "skipped" and "expires" in row["note"] and "--reset-expiry" in row["note"]
    assert wait_size(stack, dlq, 1) == 1  # left where it was

    r = run("task", "requeue", "--from", dlq, "--reset-expiry", "--yes", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json[0]["action"] == "requeued" and "cleared past expires" in r.json[0]["note"]
    meta = stack.wait_state(tid, {"SUCCESS", "REVOKED"})
    assert (meta["status"], meta["result"]) == ("SUCCESS", 3)


def test_failed_task_is_requeued_from_results(run, stack: Stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "marker"
    tid = stack.send("tctl.fail_once", [str(marker)])
    failed = stack.wait_state(tid, {"FAILURE"})
    assert failed["status"] == "FAILURE" and failed["name"] == "tctl.fail_once"

    r = run("task", "requeue", tid, "--from-results", "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json[0]["action"] == "would-requeue"

    r = run("task", "requeue", tid, "--from-results", "--yes", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert [(x["task_id"], x["task"], x["queue"], x["action"]) for x in r.json] == [
        (tid, "tctl.fail_once", stack.queue, "requeued")
    ]
    meta = stack.wait_state(tid, {"SUCCESS"})
    assert (meta["status"], meta["result"], meta["args"]) == ("SUCCESS", "second run", [str(marker)])

    # SUCCESS is sticky in Celery's stores: requeueing it again under the same id is refused
    r = run("task", "requeue", tid, "--from-results", "--yes", "-o", "json")
    assert r.exit_code == 1 and r.json[0]["action"] == "skipped" and "--new-id" in r.json[0]["note"]
    r = run("task", "requeue", tid, "--from-results", "--new-id", "--yes", "-o", "json")
    assert r.exit_code == 0, r.stderr
    new = r.json[0]["new_id"]
    assert new and new != tid
    assert stack.wait_state(new, {"SUCCESS"})["result"] == "second run"
