"""Redis as a broker of its own, on the real server: `queue list` from kombu's bindings, `queue peek` by LRANGE,
`queue unacked` and `queue restore` over kombu's unacked hash, and a real Celery worker running what was restored.

A worker that dies holding messages is played by a process that takes them with kombu's own consumer path
(``basic_get`` without ack, which records them in ``unacked``) and exits without a word, as a SIGKILL'd worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from taskctl import backends
from taskctl.formats.message import build_task_message

SEP = "\x06\x16"

HOLDER = textwrap.dedent(
    """
    import os, sys
    from kombu import Connection
    url, queue, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    opts = {"global_keyprefix": sys.argv[4]} if len(sys.argv) > 4 else {}
    with Connection(url, transport_options=opts) as c:
        ch = c.channel()
        for _ in range(n):
            assert ch.basic_get(queue, no_ack=False) is not None
        os._exit(0)  # dies holding them: they stay in 'unacked'
    """
)


def hold(url: str, queue: str, n: int, prefix: str | None = None) -> None:
    """N messages of QUEUE taken by a consumer that dies without acking them."""
    argv = [sys.executable, "-c", HOLDER, url, queue, str(n)] + ([prefix] if prefix else [])
    subprocess.run(argv, check=True, timeout=60)


def declare_and_send(url: str, queue: str, tasks: list[tuple[str, int]], prefix: str | None = None) -> None:
    """Publish (task id, priority) pairs as Celery would: queue bound to a direct exchange of its name."""
    from kombu import Connection, Exchange, Queue

    opts = {"global_keyprefix": prefix} if prefix else {}
    with Connection(url, transport_options=opts) as c:
        ex = Exchange(queue, "direct")
        q = Queue(queue, ex, routing_key=queue)
        with c.Producer() as p:
            for tid, pri in tasks:
                raw = build_task_message("app.work", [tid], {}, task_id=tid, queue=queue)
                p.publish(
                    raw.body,
                    exchange=ex,
                    routing_key=queue,
                    declare=[q],
                    headers=raw.headers,
                    content_type=raw.content_type,
                    content_encoding=raw.content_encoding,
                    priority=pri,
                )


@pytest.fixture
def rc(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def q(rc: redis.Redis, unique_name: str) -> Any:
    yield unique_name
    for prefix in ("", "pfx:"):
        name = prefix + unique_name
        rc.delete(name, *(f"{name}{SEP}{p}" for p in (3, 6, 9)), f"{prefix}_kombu.binding.{unique_name}")
        for tag, value in rc.hscan_iter(f"{prefix}unacked"):
            if unique_name.encode() in value:
                rc.hdel(f"{prefix}unacked", tag)
                rc.zrem(f"{prefix}unacked_index", tag)


def ids_of(rows: Any) -> list[str]:
    return [r["task_id"] for r in rows]


def test_queue_list_from_bindings_without_management_api(run: Any, redis_url: str, q: str) -> None:
    declare_and_send(redis_url, q, [(f"{q}-{i}", i * 3) for i in range(4)])
    hold(redis_url, q, 1)
    r = run("queue", "list", "--match", q, "-o", "json", "--broker", redis_url)
    assert r.exit_code == 0, r.stderr
    (row,) = r.json
    assert (row["queue"], row["ready"], row["unacked"], row["messages"]) == (q, 3, 1, 4)
    assert row["exchanges"] == [q] and row["consumers"] is None and row["type"] == "redis"
    assert set(row) >= {"idle_since", "expires", "arguments", "delivery_limit"}  # the RabbitMQ keys stay
    table = run("queue", "list", "--match", q, "--broker", redis_url)
    assert "EXCHANGES" in table.stdout and q in table.stdout
    none = run("queue", "list", "--match", q + "-nothing", "-o", "json", "--broker", redis_url)
    assert none.exit_code == 0 and none.json == []


def test_peek_reads_in_the_order_workers_receive_and_moves_nothing(
    run: Any, redis_url: str, rc: redis.Redis, q: str
) -> None:
    # kombu's Redis consumer takes the 0 list first, then 3, 6, 9; oldest first within each
    declare_and_send(redis_url, q, [("a9", 9), ("b0", 0), ("c3", 3), ("d0", 0), ("e9", 9)])
    before = {k: rc.lrange(k, 0, -1) for k in (q, f"{q}{SEP}3", f"{q}{SEP}9")}
    r = run("queue", "peek", q, "-n", "10", "-o", "json", "--broker", redis_url)
    assert r.exit_code == 0, r.stderr
    assert ids_of(r.json) == ["b0", "d0", "c3", "a9", "e9"]
    assert all(not m["message"]["redelivered"] for m in r.json)
    assert {k: rc.lrange(k, 0, -1) for k in before} == before, "peek moved something"
    assert rc.hlen("unacked") == 0 or not any(q.encode() in v for v in rc.hvals("unacked"))
    assert ids_of(run("queue", "peek", q, "-n", "2", "-o", "json", "--broker", redis_url).json) == ["b0", "d0"]
    # and a worker (kombu's consumer) receives them in that order
    from kombu import Connection

    with Connection(redis_url) as c:
        ch = c.channel()
        got = [ch.basic_get(q, no_ack=True).headers["id"] for _ in range(5)]
    assert got == ["b0", "d0", "c3", "a9", "e9"]


def test_unacked_shows_what_a_dead_worker_holds(run: Any, redis_url: str, q: str) -> None:
    declare_and_send(redis_url, q, [(f"{q}-{i}", 0) for i in range(3)])
    hold(redis_url, q, 2)
    r = run("queue", "unacked", q, "-o", "json", "--broker", redis_url)
    assert r.exit_code == 0, r.stderr
    rows = r.json
    assert sorted(ids_of(rows)) == [f"{q}-0", f"{q}-1"]
    for row in rows:
        assert row["kind"] == "unacked" and row["queue"] == q and row["task"] == "app.work"
        assert row["overdue"] is False and 0 <= row["age_seconds"] < 60 and row["exchange"] == q
    # past the visibility timeout (a transport option, as Celery's broker_transport_options)
    Path("taskctl.toml").write_text(
        f'[default]\nbroker = "{redis_url}"\n[default.transport_options]\nvisibility_timeout = 1\n'
    )
    time.sleep(1.2)
    late = run("queue", "unacked", q, "-o", "json").json
    assert [row["overdue"] for row in late] == [True, True]
    table = run("queue", "unacked", q)
    assert "OVERDUE" in table.stdout and f"{q}-0" in table.stdout


def test_restore_puts_them_back_at_the_consuming_end_as_kombu_does(
    run: Any, redis_url: str, rc: redis.Redis, q: str
) -> None:
    declare_and_send(redis_url, q, [(f"{q}-{i}", 0) for i in range(4)])
    hold(redis_url, q, 2)  # -0 and -1 held; -2, -3 ready
    fresh = run("queue", "restore", q, "--yes", "-o", "json", "--broker", redis_url)
    assert fresh.exit_code == 0 and fresh.json == [], "within the visibility timeout: a live worker may run them"
    dry = run("queue", "restore", q, "--older-than", "0", "--dry-run", "-o", "json", "--broker", redis_url)
    assert sorted(ids_of(dry.json)) == [f"{q}-0", f"{q}-1"] and {x["action"] for x in dry.json} == {"would restore"}
    assert len(run("queue", "unacked", q, "-o", "json", "--broker", redis_url).json) == 2, "dry run changed it"
    refused = run("queue", "restore", q, "--older-than", "0", "--broker", redis_url)
    assert refused.exit_code == 2
    done = run("queue", "restore", q, "--older-than", "0", "--yes", "-o", "json", "--broker", redis_url)
    assert done.exit_code == 0, done.stderr
    assert sorted(ids_of(done.json)) == [f"{q}-0", f"{q}-1"] and {x["action"] for x in done.json} == {"restored"}
    assert run("queue", "unacked", q, "-o", "json", "--broker", redis_url).json == []
    peek = run("queue", "peek", q, "-o", "json", "--broker", redis_url).json
    assert sorted(ids_of(peek)[:2]) == [f"{q}-0", f"{q}-1"] and ids_of(peek)[2:] == [f"{q}-2", f"{q}-3"]
    assert [m["message"]["redelivered"] for m in peek] == [True, True, False, False]


def test_restore_is_safe_while_workers_restore_too(
    redis_url: str, rc: redis.Redis, q: str, taskctl_cmd: list[str]
) -> None:
    """taskctl and kombu's own restore (a worker's sweep, visibility timeout 0) race over 300 messages: each ends
    up in the queue exactly once and nothing stays in unacked."""
    n = 300
    declare_and_send(redis_url, q, [(f"{q}-{i:04d}", 0) for i in range(n)])
    hold(redis_url, q, n)
    sweep = textwrap.dedent(
        """
        import sys
        from kombu import Connection
        with Connection(sys.argv[1], transport_options={"visibility_timeout": 0}) as c:
            ch = c.channel()
            for _ in range(30):
                ch.qos.restore_visible(num=10, interval=1)
        """
    )
    kombu_proc = subprocess.Popen([sys.executable, "-c", sweep, redis_url])
    ours = subprocess.run(
        [*taskctl_cmd, "queue", "restore", q, "--older-than", "0", "--yes", "-o", "json", "--broker", redis_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert kombu_proc.wait(120) == 0
    assert ours.returncode == 0, ours.stderr
    actions = {row["action"] for row in json.loads(ours.stdout)}
    assert actions <= {"restored", "gone"}
    items = rc.lrange(q, 0, -1)
    got = sorted(json.loads(x)["headers"]["id"] for x in items)
    assert got == [f"{q}-{i:04d}" for i in range(n)], "lost or doubled"
    assert not any(q.encode() in v for v in rc.hvals("unacked"))


def test_restore_leaves_what_has_nowhere_to_go(run: Any, redis_url: str, rc: redis.Redis, q: str) -> None:
    """A message whose exchange has no binding left (kombu would drop it on restore) stays in unacked, reported;
    an unreadable entry does not stop the others."""
    declare_and_send(redis_url, q, [(f"{q}-0", 0), (f"{q}-1", 0)])
    hold(redis_url, q, 2)
    rc.delete(f"_kombu.binding.{q}")
    tag = f"{q}-bad"
    rc.hset("unacked", tag, b"\xff not json " + q.encode())
    rc.zadd("unacked_index", {tag: time.time() - 10})
    try:
        r = run("queue", "restore", "--older-than", "0", "--yes", "-o", "json", "--broker", redis_url)
        assert r.exit_code == 0, r.stderr
        mine = [x for x in r.json if x["tag"] == tag or (x["task_id"] or "").startswith(q)]
        assert sorted(x["action"] for x in mine) == ["no queue bound", "no queue bound", "unreadable"]
        held = run("queue", "unacked", "-o", "json", "--broker", redis_url).json
        assert {x["tag"] for x in held} >= {tag}
        assert [x["problem"] for x in held if x["tag"] == tag] == ["unreadable entry"]
    finally:
        rc.hdel("unacked", tag)
        rc.zrem("unacked_index", tag)


def test_inflight_lists_are_listed_and_restored_when_their_owner_is_gone(
    run: Any, redis_url: str, rc: redis.Redis, q: str
) -> None:
    b = backends.broker_class(redis_url).from_url(redis_url)
    with b.publisher() as pub:
        for i in range(30):
            pub.publish(build_task_message("app.add", [i], {}, task_id=f"{q}-{i:02d}", queue=q), "", q)
        pub.flush()
    with b.consume(q, prefetch=100) as c:
        taken = [c.next(1) for _ in range(10)]
        assert all(taken)
        rows = [
            x for x in run("queue", "unacked", q, "-o", "json", "--broker", redis_url).json if x["kind"] == "inflight"
        ]
        assert [(x["messages"], x["overdue"]) for x in rows] == [(30, False)]  # moved in one step, 10 handed over
        live = run("queue", "restore", q, "--older-than", "0", "--yes", "-o", "json", "--broker", redis_url)
        assert live.json == [], "a running drain's list is left alone"
        c.ack_upto(taken[4])  # 5 acked: gone for good
        key = c.inflight
        lease = c.lease
        # the owner dies: its list stays, its lease runs out
        rc.delete(lease)
        left = rc.llen(key)
        dead = run("queue", "unacked", q, "-o", "json", "--broker", redis_url).json
        assert [(x["kind"], x["messages"], x["overdue"]) for x in dead] == [("inflight", left, True)]
        done = run("queue", "restore", q, "--yes", "-o", "json", "--broker", redis_url).json
        assert [(x["kind"], x["action"], x["messages"]) for x in done] == [("inflight", "restored", left)]
    assert rc.llen(key) == 0
    ids = ids_of(run("queue", "peek", q, "-n", "100", "-o", "json", "--broker", redis_url).json)
    assert ids == [f"{q}-{i:02d}" for i in range(5, 30)], "back at the consuming end, in order"


def test_a_stalled_run_whose_list_was_put_back_stops_instead_of_acking_blind(
    run: Any, redis_url: str, rc: redis.Redis, q: str
) -> None:
    """If another run put this run's in-flight list back (its lease ran out), acking by count would drop messages
    not yet safe: the ack refuses (exit 1 for a command) and every message is still in the queue."""
    from taskctl.errors import OperationError

    b = backends.broker_class(redis_url).from_url(redis_url)
    with b.publisher() as pub:
        for i in range(20):
            pub.publish(build_task_message("app.add", [i], {}, task_id=f"{q}-{i:02d}", queue=q), "", q)
        pub.flush()
    with b.consume(q, prefetch=100) as c:
        first = c.next(1)
        assert first is not None
        rc.delete(c.lease)  # as if it had run out
        done = run("queue", "restore", q, "--yes", "-o", "json", "--broker", redis_url).json
        assert [x["action"] for x in done] == ["restored"]
        with pytest.raises(OperationError, match="put back by another run"):
            c.ack_upto(first)
    assert sorted(ids_of(run("queue", "peek", q, "-n", "100", "-o", "json", "--broker", redis_url).json)) == [
        f"{q}-{i:02d}" for i in range(20)
    ]


def test_what_a_run_did_not_ack_goes_back_to_its_priority_list_in_order(
    run: Any, redis_url: str, rc: redis.Redis, q: str
) -> None:
    declare_and_send(redis_url, q, [("a9", 9), ("b0", 0), ("c3", 3), ("d0", 0), ("e9", 9), ("f6", 6)])
    order = ["b0", "d0", "c3", "f6", "a9", "e9"]
    b = backends.broker_class(redis_url).from_url(redis_url)
    with b.consume(q, prefetch=100) as c:
        got = [c.next(1) for _ in range(6)]
        assert [d.raw.headers["id"] for d in got if d] == order
        assert rc.llen(q) == 0 and rc.llen(c.inflight) == 6
        c.ack_upto(got[0])  # b0 is safe; the rest go back
    assert ids_of(run("queue", "peek", q, "-o", "json", "--broker", redis_url).json) == order[1:]
    assert (rc.llen(q), rc.llen(f"{q}{SEP}3"), rc.llen(f"{q}{SEP}6"), rc.llen(f"{q}{SEP}9")) == (1, 1, 1, 2)


def test_global_keyprefix(run: Any, redis_url: str, rc: redis.Redis, q: str, tmp_path: Path) -> None:
    """Keys carry kombu's global_keyprefix: list, peek, unacked, restore and drain all find them."""
    declare_and_send(redis_url, q, [(f"{q}-{i}", 0) for i in range(3)], prefix="pfx:")
    hold(redis_url, q, 1, prefix="pfx:")
    Path("taskctl.toml").write_text(
        f'[default]\nbroker = "{redis_url}"\n[default.transport_options]\nglobal_keyprefix = "pfx:"\n'
    )
    assert rc.llen(f"pfx:{q}") == 2 and rc.llen(q) == 0
    (row,) = run("queue", "list", "--match", q, "-o", "json").json
    assert (row["ready"], row["unacked"]) == (2, 1)
    assert ids_of(run("queue", "peek", q, "-o", "json").json) == [f"{q}-1", f"{q}-2"]
    assert ids_of(run("queue", "unacked", q, "-o", "json").json) == [f"{q}-0"]
    assert [x["action"] for x in run("queue", "restore", q, "--older-than", "0", "--yes", "-o", "json").json] == [
        "restored"
    ]
    out = tmp_path / "d.jsonl"
    d = run("queue", "drain", q, "--yes", "--file", str(out), "--idle", "0.3")
    assert d.exit_code == 0, d.stderr
    assert sorted(json.loads(x)["task_id"] for x in out.read_text().splitlines()) == [f"{q}-{i}" for i in range(3)]
    assert rc.llen(f"pfx:{q}") == 0 and not rc.keys(f"pfx:taskctl.inflight.{q}.*")


def test_moved_messages_are_what_kombu_reads(run: Any, redis_url: str, rc: redis.Redis, q: str) -> None:
    """`queue move` publishes itself (pipelined LPUSH): a kombu consumer reads the moved message as sent."""
    declare_and_send(redis_url, q, [(f"{q}-0", 6)])
    dst = q + "-dst"
    try:
        r = run("queue", "move", q, dst, "--yes", "--idle", "0.3", "-o", "json", "--broker", redis_url)
        assert r.exit_code == 0 and r.json["count"] == 1, r.stderr
        assert rc.llen(f"{dst}{SEP}6") == 1, "kept its priority list"
        from kombu import Connection

        with Connection(redis_url) as c:
            m = c.channel().basic_get(dst, no_ack=True)
            assert m.headers["id"] == f"{q}-0" and m.properties["priority"] == 6
            assert json.loads(m.body)[0] == [f"{q}-0"]
    finally:
        rc.delete(dst, *(f"{dst}{SEP}{p}" for p in (3, 6, 9)))


def test_a_bad_item_in_the_list_never_stops_peek_or_drain(run: Any, redis_url: str, rc: redis.Redis, q: str) -> None:
    """Stored data is untrusted: bytes that are not kombu's envelope are shown and drained as their raw bytes."""
    declare_and_send(redis_url, q, [(f"{q}-0", 0)])
    rc.lpush(q, b"\xff\x00 not json", b'{"body": 5, "properties": "x"}', b"[" * 100_000)
    declare_and_send(redis_url, q, [(f"{q}-1", 0)])
    peek = run("queue", "peek", q, "-o", "json", "--broker", redis_url)
    assert peek.exit_code == 0, peek.stderr
    assert len(peek.json) == 5 and peek.json[0]["task_id"] == f"{q}-0" and peek.json[-1]["task_id"] == f"{q}-1"
    out = Path("bad.jsonl")
    d = run("queue", "drain", q, "--yes", "--file", str(out), "--idle", "0.3", "--broker", redis_url)
    assert d.exit_code == 0, d.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 5 and rc.llen(q) == 0
    import base64

    assert base64.b64decode(lines[1]["message"]["body"]) == b"\xff\x00 not json"


def test_unacked_needs_redis(run: Any) -> None:
    r = run("queue", "unacked", "--broker", "amqp://guest:guest@127.0.0.1:5672//")
    assert r.exit_code == 2 and "Redis" in r.stderr and "Traceback" not in r.stderr
    r = run("queue", "restore", "--yes", "--broker", "amqp://guest:guest@127.0.0.1:5672//")
    assert r.exit_code == 2


@pytest.mark.celery
def test_a_real_worker_runs_what_restore_put_back(run: Any, redis_url: str, q: str, tmp_path: Path) -> None:
    from test_task_support import APP_SOURCE, Stack

    root = tmp_path / "app"
    root.mkdir()
    (root / "tctl_app.py").write_text(APP_SOURCE)
    stack = Stack("redis", redis_url, redis_url, q, None, f"tctl-{uuid.uuid4().hex[:8]}@redis", root)
    marker = tmp_path / "ran.txt"
    tid = stack.send("tctl.touch", [str(marker)])
    hold(redis_url, q, 1)  # a worker took it and died
    held = run("queue", "unacked", q, "-o", "json", "--broker", redis_url).json
    assert [(x["task_id"], x["task"]) for x in held] == [(tid, "tctl.touch")]
    r = run("queue", "restore", q, "--older-than", "0", "--yes", "-o", "json", "--broker", redis_url)
    assert [x["action"] for x in r.json] == ["restored"]
    stack.start()
    try:
        meta = stack.wait_state(tid, {"SUCCESS", "FAILURE"})
        assert meta.get("status") == "SUCCESS", stack.log_text()[-2000:]
        assert marker.read_text() == "ran"
    finally:
        stack.stop()
