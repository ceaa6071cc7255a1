"""Bad input and broken servers on real RabbitMQ: one clear line each, the right exit code, nothing dropped."""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskctl import backends
from taskctl.formats.message import RawMessage

KombuBroker = backends.load(backends.BROKER)


@pytest.fixture
def amqp_queue(rabbitmq_url: str, unique_name: str) -> Iterator[tuple[Any, str]]:
    b = KombuBroker(rabbitmq_url)
    b.declare_queue(unique_name)
    yield b, unique_name
    b.delete_queue(unique_name)


BAD = [
    RawMessage(b"{corrupt", "application/json", "utf-8", {"task": "app.add", "id": "bad-json"}),
    RawMessage(b"\x00\x01\x02", "application/x-unknown", "binary", {}),
    RawMessage(pickle.dumps(([1], {}, {})), "application/x-python-serialize", "binary", {"task": "a.b", "id": "pk"}),
    RawMessage(b"[[1], {}, {}]", "application/json", "utf-8", {"task": "app.add"}),
    RawMessage(b"no headers at all", None, None, {}),
]


def test_bad_messages_peek_one_line_and_drain_keeps_them_raw(
    amqp_queue: tuple[Any, str], run: Any, tmp_path: Path
) -> None:
    b, q = amqp_queue
    with b.publisher() as pub:
        for m in BAD:
            pub.publish(m, "", q)
        pub.flush()
    r = run("queue", "peek", q, "-n", "10")
    assert r.exit_code == 0, r.stderr
    rows = r.stdout.splitlines()[1:]
    assert len(rows) == 5 and "Traceback" not in r.stdout + r.stderr
    assert "undecodable: body is not valid JSON" in rows[0]
    assert "unknown content type" in rows[1]
    out = tmp_path / "bad.jsonl"
    r = run("queue", "drain", "--yes", q, "--file", str(out), "--idle", "0.5")
    assert r.exit_code == 0, r.stderr
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [base64.b64decode(x["message"]["body"]) for x in recs] == [m.body for m in BAD]
    # drain keeps every message raw (corrupt ones too); a missing 'id' header is named in the line
    assert recs[3]["error"] == "task message without an 'id' header" and recs[1]["kind"] == "other"


def test_missing_queue_exit_3(rabbitmq_url: str, run: Any) -> None:
    for args in (
        ["queue", "stats", "no-such-q-x1"],
        ["queue", "peek", "no-such-q-x1"],
        ["queue", "drain", "no-such-q-x1", "--yes"],
    ):
        r = run(*args, "--broker", rabbitmq_url)
        assert r.exit_code == 3, (args, r.stderr)
        assert r.stderr.startswith("error: queue 'no-such-q-x1' does not exist") and "Traceback" not in r.stderr


def test_wrong_password_exit_5_password_never_printed(rabbitmq_url: str, run: Any) -> None:
    r = run("queue", "stats", "celery", "--broker", "amqp://guest:Sup3rSecretPw@127.0.0.1:5672//")
    assert r.exit_code == 5
    assert "Sup3rSecretPw" not in r.stdout + r.stderr and "access refused" in r.stderr
    assert len([x for x in r.stderr.splitlines() if x.startswith("error:")]) == 1


def test_unreachable_broker_exit_5_fast(run: Any) -> None:
    import time

    t = time.monotonic()
    r = run("queue", "stats", "celery", "--broker", "amqp://guest:pw123456@127.0.0.1:1//")
    assert r.exit_code == 5 and "connection refused" in r.stderr and "pw123456" not in r.stderr
    assert time.monotonic() - t < 10


def test_quorum_queue_with_delivery_limit_refuses_peek(rabbitmq_url: str, unique_name: str, run: Any) -> None:
    b = KombuBroker(rabbitmq_url)
    from taskctl.config import Settings

    api = backends.open_management(Settings(broker=rabbitmq_url), rabbitmq_url)
    if not api.reachable():
        from conftest import service_missing

        service_missing("RabbitMQ management API on 127.0.0.1:15672")
    b.declare_queue(unique_name, arguments={"x-queue-type": "quorum", "x-delivery-limit": 2})
    try:
        r = run("queue", "peek", unique_name, "--broker", rabbitmq_url)
        assert r.exit_code == 4 and "delivery limit 2" in r.stderr and "--force" in r.stderr
        r = run("queue", "peek", unique_name, "--force", "--broker", rabbitmq_url)
        assert r.exit_code == 0 and "quorum queue" in r.stderr
    finally:
        b.delete_queue(unique_name)


def test_queue_list_via_management(rabbitmq_url: str, unique_name: str, run: Any) -> None:
    b = KombuBroker(rabbitmq_url)
    b.declare_queue(unique_name, arguments={"x-expires": 600000})
    try:
        r = run("queue", "list", "--match", unique_name, "--broker", rabbitmq_url, "-o", "json")
        if r.exit_code == 5:
            from conftest import service_missing

            service_missing("RabbitMQ management API on 127.0.0.1:15672")
        assert r.exit_code == 0, r.stderr
        assert [q["queue"] for q in r.json] == [unique_name] and r.json[0]["expires"] == 600.0
        # a transport that cannot list its queues (Redis lists them from kombu's bindings: test_redis_broker.py)
        r = run("queue", "list", "--broker", "memory://")
        assert r.exit_code == 2 and "management API" in r.stderr
    finally:
        b.delete_queue(unique_name)
