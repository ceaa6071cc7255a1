"""`worker list` and `worker active` on the task tests' single solo worker: RabbitMQ, and filesystem:// (no server).

filesystem:// keeps the pidbox bindings in its control folder, which the control adapter reads like Redis's
binding set, so there too the round ends when the bound worker answered.
"""

from __future__ import annotations

import time

import pytest
from test_task_support import Stack, stack_fixture, stack_module_fixture  # noqa: F401 (fixtures)

pytestmark = pytest.mark.celery


def test_worker_list_names_the_stack_worker(run, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    # filesystem:// runs the four rounds one after another (concurrent reply queues would rewrite each other's
    # binding tables), each up to the worker's 1 s polling: the early return is measured against a 10 s timeout
    timeout = 10 if stack.kind == "filesystem" else 5
    start = time.monotonic()
    r = run("worker", "list", "--timeout", str(timeout), "-o", "json")
    elapsed = time.monotonic() - start
    assert r.exit_code == 0, r.stderr
    mine = [x for x in r.json if x["worker"] == stack.worker_name]
    assert len(mine) == 1 and mine[0]["pool"] == "solo" and mine[0]["queues"] == [stack.queue]
    if stack.kind == "filesystem":  # nobody else's worker shares this control folder
        assert [x["worker"] for x in r.json] == [stack.worker_name]
        assert elapsed < 0.6 * timeout, f"worker list took {elapsed:.2f}s"


def test_worker_registered_on_the_stack(run, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    r = run("worker", "registered", "-w", stack.worker_name, "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert {x["task"] for x in r.json} >= {"tctl.add", "tctl.touch"}
