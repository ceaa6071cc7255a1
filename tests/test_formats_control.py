"""The pidbox request taskctl sends is the one Celery's app.control sends; replies read as Celery writes them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from taskctl.backends.control import KombuControl
from taskctl.errors import UsageError
from taskctl.formats import control as fmt


def capture(send: Callable[[Any], object]) -> Any:
    """The message a client publishes to celery.pidbox, captured by a spy queue on kombu's memory:// transport.

    memory:// keeps one broker state per process, so taskctl's own connection reaches the same spy.
    """
    from celery import Celery
    from kombu import Exchange, Queue

    app = Celery("cap", broker="memory://")
    with app.connection_for_write() as conn:
        q = Queue(f"spy-{uuid.uuid4().hex}", Exchange("celery.pidbox", type="fanout", durable=False), routing_key="")
        q(conn.default_channel).declare()
        try:
            send(app)
            m = q(conn.default_channel).get(no_ack=True)
            assert m is not None
            return m
        finally:
            q(conn.default_channel).delete()


def _same_message(celerys: Any, mine: Any) -> None:
    assert mine.content_type == celerys.content_type == "application/json"
    assert mine.content_encoding == celerys.content_encoding
    assert mine.delivery_info.get("exchange") == celerys.delivery_info.get("exchange") == "celery.pidbox"
    assert mine.properties.get("delivery_mode") == celerys.properties.get("delivery_mode")
    assert set(mine.headers) == set(celerys.headers) == {"clock", "expires"}
    assert abs(mine.headers["expires"] - celerys.headers["expires"]) < 5


def test_revoke_message_is_byte_identical_to_celerys() -> None:
    tid = str(uuid.uuid4())
    celerys = capture(lambda app: app.control.revoke(tid, terminate=True, signal="SIGKILL"))
    mine = capture(
        lambda app: KombuControl.from_url("memory://").revoke([tid], terminate=True, signal="KILL", timeout=0)
    )
    assert mine.body == celerys.body  # the raw bytes, key order included
    _same_message(celerys, mine)


def test_several_ids_go_as_a_list_and_reply_requests_carry_ticket_and_reply_to() -> None:
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    celerys = capture(lambda app: app.control.revoke(ids, reply=True, timeout=0.2))
    started = time.monotonic()
    mine = capture(
        lambda app: KombuControl.from_url("memory://").revoke(ids, terminate=False, signal=None, timeout=0.2)
    )
    assert time.monotonic() - started < 3  # no worker: waited the timeout, not longer
    _same_message(celerys, mine)
    body, want = mine.decode(), celerys.decode()
    assert list(body) == list(want)  # key order too
    assert body["arguments"] == want["arguments"] == {"task_id": ids, "terminate": False, "signal": "SIGTERM"}
    assert body["ticket"] != want["ticket"]  # each request its own ticket...
    assert body["reply_to"]["exchange"] == want["reply_to"]["exchange"] == "reply.celery.pidbox"
    body["ticket"] = want["ticket"]  # ...and its own reply queue; the rest equal
    body["reply_to"]["routing_key"] = want["reply_to"]["routing_key"]
    assert body == want


def test_destination_and_namespace_reach_the_message() -> None:
    from kombu import Connection, Exchange, Queue

    with Connection("memory://") as conn:
        q = Queue(f"spy-{uuid.uuid4().hex}", Exchange("ops.pidbox", type="fanout", durable=False), routing_key="")
        q(conn.default_channel).declare()
        ctl = KombuControl.from_url("memory://", namespace="ops")
        assert ctl.revoked(timeout=0.1, destination=["w1@h"]) == []
        m = q(conn.default_channel).get(no_ack=True)
        assert m is not None
        body = m.decode()
        assert body["method"] == "dump_revoked" and body["destination"] == ["w1@h"]
        assert body["reply_to"]["exchange"] == "reply.ops.pidbox"
        q(conn.default_channel).delete()


def test_revoke_needs_ids() -> None:
    with pytest.raises(UsageError, match="no task ids"):
        fmt.revoke_arguments([])


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
