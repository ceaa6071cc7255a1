"""`task revoke --task|--root|--queue` over queued messages and stored results, with real workers on RabbitMQ.

A prefork and a solo worker on a control exchange of their own (see test_worker.py). To keep messages queued,
the solo worker stops consuming its queue (``worker consume --cancel``); once revoked by selector, the queue is
consumed again and the worker, which got the revoke while online, discards each revoked message on arrival.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REDIS_URL, port_open, service_missing
from test_worker import BROKER, Workers, start_workers, stop_workers

pytestmark = pytest.mark.celery


@pytest.fixture(scope="module")
def rs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    if not port_open("127.0.0.1", 5672):
        service_missing("RabbitMQ on 127.0.0.1:5672")
    if not port_open("127.0.0.1", 6379):
        service_missing("Redis on 127.0.0.1:6379")
    w = start_workers(
        tmp_path_factory.mktemp("revoke-select"),
        BROKER,
        {"prefork": ["-P", "prefork", "-c", "2"], "solo": ["-P", "solo"]},
    )
    try:
        yield w
    finally:
        stop_workers(w)


def _queues_of(run, w: Workers, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    r = run(*w.cli, "worker", "list", "-w", name, "--timeout", "2", "-o", "json")
    assert r.exit_code == 0, r.stderr
    return list(r.json[0]["queues"])


def _consume(run, w: Workers, queue: str, *, add: bool) -> None:  # type: ignore[no-untyped-def]
    """The solo worker starts or stops consuming QUEUE, and the change is seen in its active_queues."""
    r = run(*w.cli, "worker", "consume", queue, "--add" if add else "--cancel", "-w", w.solo, "--yes", "-o", "json")
    assert r.exit_code == 0 and r.json[0]["ok"] is True, (r.stderr, r.stdout)
    deadline = time.monotonic() + 15
    while (queue in _queues_of(run, w, w.solo)) != add:
        assert time.monotonic() < deadline, f"consumer of {queue} not {'added' if add else 'cancelled'}"
        time.sleep(0.2)
    if not add and w.broker.startswith("redis"):
        # a Redis worker's BRPOP issued before the cancel still lists the queue until it times out (1 s)
        time.sleep(1.5)


def _queued_ids(run, w: Workers, queue: str) -> list[str]:  # type: ignore[no-untyped-def]
    r = run(*w.cli, "queue", "peek", queue, "--limit", "50", "-o", "json")
    assert r.exit_code == 0, r.stderr
    return [m["task_id"] for m in r.json]


def _wait_state(w: Workers, task_id: str, state: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    got = w.app().AsyncResult(task_id).state
    while got != state and time.monotonic() < deadline:
        time.sleep(0.2)
        got = w.app().AsyncResult(task_id).state
    return str(got)


@pytest.fixture(scope="module")
def rs_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    if not port_open("127.0.0.1", 6379):
        service_missing("Redis on 127.0.0.1:6379")
    w = start_workers(tmp_path_factory.mktemp("revoke-select-redis"), REDIS_URL, {"solo": ["-P", "solo"]})
    try:
        yield w
    finally:
        stop_workers(w)


def test_queued_tasks_matched_by_glob_are_revoked_and_never_run(run, rs: Workers) -> None:  # type: ignore[no-untyped-def]
    _revoke_queued_by_glob(run, rs)


def test_redis_queued_tasks_matched_by_glob_are_revoked_and_never_run(run, rs_redis: Workers) -> None:  # type: ignore[no-untyped-def]
    """Redis: the queue is read with LRANGE from its consuming end (nothing moves)."""
    _revoke_queued_by_glob(run, rs_redis)


def _revoke_queued_by_glob(run, w: Workers) -> None:  # type: ignore[no-untyped-def]
    q = w.queue_solo
    _consume(run, w, q, add=False)
    try:
        ids = [w.send("wk.add", [i, i], q) for i in range(3)]
        kept = w.send("wk.sleep", [0], q, kwargs={"tag": "kept"})
        r = run(*w.cli, "task", "revoke", "--task", "wk.a*", "--queue", q, "--dry-run", "-o", "json")
        assert r.exit_code == 0, r.stderr
        assert sorted((m["task_id"], m["name"], m["found"]) for m in r.json) == sorted(
            (t, "wk.add", [f"queue:{q}"]) for t in ids
        )

        # the scan stops at --scan messages and says so
        r = run(*w.cli, "task", "revoke", "--task", "wk.*", "--queue", q, "--scan", "2", "--dry-run", "-o", "json")
        assert r.exit_code == 0, r.stderr
        assert [m["task_id"] for m in r.json] == ids[:2]
        assert "holds 4 ready messages: only the first 2 were scanned (--scan)" in r.stderr

        # without --queue, the queues the workers consume now (the solo worker consumes nothing), else celery
        r = run(*w.cli, "task", "revoke", "--task", "wk.a*", "--dry-run", "-o", "json")
        assert r.exit_code == 0, r.stderr
        assert not set(ids) & {m["task_id"] for m in r.json}

        # peeked only: every message is still queued, in its place
        assert _queued_ids(run, w, q) == [*ids, kept]

        r = run(
            *w.cli, "--backend", REDIS_URL, "task", "revoke", "--task", "wk.a*", "--queue", q, "--yes", "-o", "json"
        )
        assert r.exit_code == 0, r.stderr
        assert sorted(r.json["revoked"]) == sorted(ids)
        assert w.solo in {x["worker"] for x in r.json["replies"] if x["ok"]}
    finally:
        _consume(run, w, q, add=True)
    assert w.app().AsyncResult(kept).get(timeout=30) == "kept"
    log = (w.root / f"{w.solo.split('@')[0]}.log").read_text()
    for tid in ids:
        assert _wait_state(w, tid, "REVOKED") == "REVOKED"
        assert f"Discarding revoked task: wk.add[{tid}]" in log
        assert f"Task wk.add[{tid}] succeeded" not in log, "the worker ran a revoked task"


def test_root_selector_finds_queued_messages_by_their_root_id(run, rs: Workers) -> None:  # type: ignore[no-untyped-def]
    w = rs
    q = w.queue_solo
    root = str(uuid.uuid4())
    _consume(run, w, q, add=False)
    try:
        kids = [w.send("wk.add", [1, i], q, root_id=root, parent_id=root) for i in range(2)]
        stranger = w.send("wk.add", [9, 9], q, root_id=str(uuid.uuid4()))
        r = run(
            *w.cli, "--backend", REDIS_URL, "task", "revoke", "--root", root, "--queue", q, "--dry-run", "-o", "json"
        )
        assert r.exit_code == 0, r.stderr
        # the root itself (nothing stored yet: PENDING) is in the tree but not known to be in q
        assert [(m["task_id"], m["found"]) for m in r.json] == [(k, [f"queue:{q}"]) for k in kids]

        # --root alone: the stored tree (the root, PENDING) as well as the queued messages of the workers' queues
        r = run(*w.cli, "--backend", REDIS_URL, "task", "revoke", "--root", root, "--dry-run", "-o", "json")
        assert r.exit_code == 0, r.stderr
        assert [(m["task_id"], m["found"]) for m in r.json] == [(root, ["result"])]

        # no result backend: queued messages by root_id only, and a warning says the tree was not read
        r = run(*w.cli, "task", "revoke", "--root", root, "--queue", q, "--dry-run", "-o", "json")
        assert r.exit_code == 0, r.stderr
        assert [m["task_id"] for m in r.json] == kids
        assert "no result backend configured" in r.stderr
        assert stranger not in r.stdout
        assert _queued_ids(run, w, q) == [*kids, stranger]
    finally:
        r = run(*w.cli, "queue", "purge", q, "--yes")
        assert r.exit_code == 0, r.stderr
        _consume(run, w, q, add=True)


def _store(directory: Path, task_id: str, status: str, name: str | None) -> None:
    """A result as a Celery worker stores it in file:// (result_extended adds name, args, kwargs, queue...)."""
    meta: dict[str, Any] = {
        "status": status,
        "result": None,
        "traceback": None,
        "children": [],
        "date_done": None,
        "task_id": task_id,
    }
    if name is not None:
        meta.update(name=name, args=[], kwargs={}, worker="rs@test", retries=0, queue="rs-q")
    (directory / f"celery-task-meta-{task_id}").write_bytes(json.dumps(meta).encode())


def test_task_selector_matches_unfinished_stored_results_that_name_the_task(  # type: ignore[no-untyped-def]
    run, rs: Workers, tmp_path: Path
) -> None:
    w = rs
    store = tmp_path / "results"
    store.mkdir()
    started, retrying, done, other = (str(uuid.uuid4()) for _ in range(4))
    _store(store, started, "STARTED", "rs.job")
    _store(store, retrying, "RETRY", "rs.job")
    _store(store, done, "SUCCESS", "rs.job")
    _store(store, other, "STARTED", "rs.other")
    backend = f"file://{store}"
    r = run(*w.cli, "--backend", backend, "task", "revoke", "--task", "rs.j*", "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert sorted((m["task_id"], m["name"], m["found"]) for m in r.json) == sorted(
        [(started, "rs.job", ["result"]), (retrying, "rs.job", ["result"])]
    )
    r = run(*w.cli, "--backend", backend, "task", "revoke", "--task", "rs.j*", "--scan", "1", "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert "only the first 1 were read (--scan)" in r.stderr

    # RETRY is marked REVOKED; STARTED is a state a worker set while running it: left as it is
    r = run(*w.cli, "--backend", backend, "task", "revoke", "--task", "rs.j*", "--yes", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert sorted(r.json["revoked"]) == sorted([started, retrying])
    assert r.json["marked"] == [retrying] and r.json["skipped_running"] == [started]
    assert json.loads((store / f"celery-task-meta-{retrying}").read_bytes())["status"] == "REVOKED"

    # results stored without result_extended carry no name: not matched, and the reason is said
    bare = tmp_path / "bare"
    bare.mkdir()
    _store(bare, str(uuid.uuid4()), "STARTED", None)
    r = run(*w.cli, "--backend", f"file://{bare}", "task", "revoke", "--task", "rs.*", "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json == []
    assert "result_extended" in r.stderr


def test_a_quorum_queue_with_a_delivery_limit_is_not_peeked(run, rs: Workers) -> None:  # type: ignore[no-untyped-def]
    from kombu import Connection

    w = rs
    qq = f"rs-quorum-{w.tag}"
    tid = str(uuid.uuid4())
    with Connection(BROKER) as conn:
        ch = conn.channel()
        ch.queue_declare(
            queue=qq, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum", "x-delivery-limit": 3}
        )
        ch.basic_publish(
            ch.prepare_message(
                json.dumps([[1, 2], {}, {}]).encode(),
                content_type="application/json",
                content_encoding="utf-8",
                headers={"task": "wk.add", "id": tid},
            ),
            exchange="",
            routing_key=qq,
        )
    try:
        r = run(*w.cli, "task", "revoke", "--task", "wk.*", "--queue", qq, "--dry-run", "-o", "json")
        assert r.exit_code == 0, r.stderr
        assert r.json == []
        assert f"queue {qq!r} not scanned" in r.stderr and "delivery limit 3" in r.stderr
        r = run(*w.cli, "queue", "stats", qq, "-o", "json")
        assert r.json[0]["messages"] == 1
    finally:
        with Connection(BROKER) as conn:
            conn.channel().queue_delete(queue=qq)
