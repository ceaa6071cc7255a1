"""The pidbox request taskctl builds is the one Celery's app.control sends; replies read as Celery writes them."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from taskctl.errors import UsageError
from taskctl.formats import control as fmt


def celery_sent(call: Any) -> tuple[dict[str, Any], dict[str, Any], str]:
    """What a real Celery client publishes to celery.pidbox (captured on kombu's memory:// transport)."""
    from celery import Celery
    from kombu import Exchange, Queue

    app = Celery("cap", broker=f"memory://cap-{uuid.uuid4().hex}")
    with app.connection_for_write() as conn:
        q = Queue(f"spy-{uuid.uuid4().hex}", Exchange("celery.pidbox", type="fanout", durable=False), routing_key="")
        q(conn.default_channel).declare()
        call(app, conn)
        m = q(conn.default_channel).get(no_ack=True)
        assert m is not None
        return m.decode(), dict(m.headers), m.delivery_info.get("exchange", "")


def test_revoke_request_equals_celerys() -> None:
    tid = str(uuid.uuid4())
    body, headers, exchange = celery_sent(
        lambda app, conn: app.control.revoke(tid, terminate=True, signal="SIGKILL", connection=conn)
    )
    mine = fmt.revoke_request([tid], terminate=True, signal="KILL", timeout=1.0, now=time.time())
    assert mine.body == body
    assert list(mine.body) == list(body)  # key order too
    assert exchange == mine.exchange == "celery.pidbox"
    assert set(headers) == set(mine.headers) == {"clock", "expires"}
    assert abs(headers["expires"] - mine.headers["expires"]) < 5


def test_several_ids_go_as_a_list_and_reply_requests_carry_ticket_and_reply_to() -> None:
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    body, _, _ = celery_sent(lambda app, conn: app.control.revoke(ids, connection=conn))
    mine = fmt.revoke_request(ids)
    assert (
        mine.body
        == body
        == {
            "method": "revoke",
            "arguments": {"task_id": ids, "terminate": False, "signal": "SIGTERM"},
            "destination": None,
            "pattern": None,
            "matcher": None,
        }
    )
    req = fmt.revoke_request(ids, reply_routing_key="oid-1", destination=["w1@h"])
    assert req.body["ticket"] == req.ticket and req.limit == 1
    assert req.body["reply_to"] == {"exchange": "reply.celery.pidbox", "routing_key": "oid-1"}
    assert req.body["destination"] == ["w1@h"]
    assert fmt.revoked_request(reply_routing_key="o").body["method"] == "dump_revoked"


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("TERM", "SIGTERM"),
        ("sigkill", "SIGKILL"),
        ("9", "SIGKILL"),
        (None, "SIGTERM"),
        ("USR1", "SIGUSR1"),
    ],
)
def test_signals_normalised(raw: str | None, want: str) -> None:
    assert fmt.normalize_signal(raw) == want


@pytest.mark.parametrize("raw", ["NOPE", "999", "SIG_DFL"])
def test_bad_signals_are_usage_errors(raw: str) -> None:
    with pytest.raises(UsageError):
        fmt.normalize_signal(raw)


def test_task_ids() -> None:
    u = "5f1c0a38-6f1e-4c55-9c1e-2f4c1d0f5a11"
    assert fmt.normalize_task_id(u) == u
    assert fmt.normalize_task_id(f"b'celery-task-meta-{u}'") == u
    assert fmt.normalize_task_id(f"celery-task-meta-{u}") == u
    assert fmt.normalize_task_id("job-42", any_id=True) == "job-42"
    for bad in ("nope", "job-42", "", "5f1c0a38"):
        with pytest.raises(UsageError, match="not a task id"):
            fmt.normalize_task_id(bad)
    with pytest.raises(UsageError):
        fmt.normalize_task_id("a b", any_id=True)


def test_replies_as_workers_send_them() -> None:
    ok = fmt.parse_replies({"w1@h": {"ok": "tasks {'x'} flagged as revoked"}})
    assert ok == [fmt.Reply("w1@h", True, "tasks {'x'} flagged as revoked", {"ok": "tasks {'x'} flagged as revoked"})]
    err = fmt.parse_replies({"w2@h": {"error": "boom"}})
    assert (err[0].worker, err[0].ok, err[0].message) == ("w2@h", False, "boom")
    assert fmt.parse_replies(["junk"])[0].ok is False
    assert fmt.revoked_ids(["a", "b"]) == ["a", "b"]  # 5.7: a plain list
    assert fmt.revoked_ids({"a": 1.0, "b": 2.0}) == ["a", "b"]  # older: LimitedSet._data
    assert fmt.reply_matches({"ticket": "t1"}, "t1") and not fmt.reply_matches({"ticket": "t2"}, "t1")
    assert not fmt.reply_matches({"ticket": "t1", "expires": 10.0}, "t1", now=11.0)
