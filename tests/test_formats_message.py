"""The message codec: decoding what queues hold, building task messages as Celery does, the republish rules."""

from __future__ import annotations

import datetime as dt
import json
import pickle
from decimal import Decimal

import pytest

from taskctl.formats.message import (
    RawMessage,
    build_task_message,
    decode,
    for_republish,
    from_record,
    matches_task,
    message_key,
    republish_problems,
    to_record,
)

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def test_build_task_message_equals_celery_as_task_v2() -> None:
    """Headers, properties and body bytes match celery.app.amqp.AMQP.as_task_v2 + kombu's json serializer."""
    from celery import Celery
    from kombu.serialization import dumps

    app = Celery("t", broker="memory://", set_as_current=False)
    tid = "11111111-2222-3333-4444-555555555555"
    expected = app.amqp.as_task_v2(
        tid,
        "app.add",
        (1, 2),
        {"x": "é"},
        retries=2,
        group_id="g1",
        group_index=0,
        root_id="r1",
        parent_id="p1",
        reply_to="reply-oid",
        time_limit=30,
        soft_time_limit=20,
        origin="gen1@host",
        expires="2030-01-01T00:00:00+00:00",
    )
    got = build_task_message(
        "app.add",
        (1, 2),
        {"x": "é"},
        task_id=tid,
        queue="celery",
        retries=2,
        group_id="g1",
        group_index=0,
        root_id="r1",
        parent_id="p1",
        reply_to="reply-oid",
        time_limit=30,
        soft_time_limit=20,
        origin="gen1@host",
        expires="2030-01-01T00:00:00+00:00",
    )
    assert got.headers == expected.headers
    assert {k: got.properties[k] for k in ("correlation_id", "reply_to")} == expected.properties
    ctype, enc, body = dumps(expected.body, serializer="json")
    assert (got.content_type, got.content_encoding) == (ctype, enc)
    assert got.body == body.encode("utf-8")
    assert (got.exchange, got.routing_key) == ("", "celery")


def test_decode_protocol_2_task() -> None:
    m = build_task_message("app.add", [4, 4], {"k": 1}, task_id="t-1", queue="q", eta="2030-01-01T00:00:00+00:00")
    d = decode(m)
    assert (d.kind, d.protocol, d.task_id, d.task, d.args, d.kwargs) == ("task", 2, "t-1", "app.add", [4, 4], {"k": 1})
    assert (d.eta, d.retries, d.root_id, d.argsrepr) == ("2030-01-01T00:00:00+00:00", 0, "t-1", "(4, 4)")
    assert d.size == len(m.body) and d.error is None


def test_decode_protocol_1_task() -> None:
    body = json.dumps({"task": "app.mul", "id": "t-2", "args": [2, 3], "kwargs": {}, "retries": 1, "eta": None})
    d = decode(RawMessage(body.encode(), "application/json", "utf-8"))
    assert (d.kind, d.protocol, d.task_id, d.task, d.args, d.retries) == ("task", 1, "t-2", "app.mul", [2, 3], 1)


def test_decode_rpc_result_uses_correlation_id() -> None:
    body = {
        "status": "FAILURE",
        "result": {"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"},
    }
    raw = RawMessage(json.dumps(body).encode(), "application/json", "utf-8", {}, {"correlation_id": "t-3"})
    d = decode(raw)
    assert (d.kind, d.task_id, d.state, d.result["exc_type"]) == ("result", "t-3", "FAILURE", "ValueError")


def test_decode_remote_control_request() -> None:
    body = {"method": "revoke", "arguments": {"task_id": "x"}, "destination": None, "pattern": None, "matcher": None}
    d = decode(RawMessage(json.dumps(body).encode(), "application/json", "utf-8", {"clock": 1}))
    assert (d.kind, d.method, d.arguments) == ("control", "revoke", {"task_id": "x"})


def test_pickle_body_is_never_executed(tmp_path: object) -> None:
    """A pickle whose reduce would run os.system is decoded as data, or shown as pickled bytes."""

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, ("touch /tmp/taskctl-pwned",))

    body = pickle.dumps(((Evil(),), {}, EMBED))
    d = decode(RawMessage(body, "application/x-python-serialize", "binary", {"task": "a.b", "id": "t-4"}))
    import os

    assert not os.path.exists("/tmp/taskctl-pwned")
    assert d.kind == "task" and d.task == "a.b"


@pytest.mark.parametrize(
    ("raw", "kind", "error_part"),
    [
        (RawMessage(b"{not json", "application/json", "utf-8", {"task": "a.b", "id": "1"}), "task", "not valid JSON"),
        (RawMessage(b"\x00\x01binary", "application/x-weird", None), "other", "unknown content type"),
        (RawMessage(b"[[1], {}, {}]", "application/json", "utf-8", {"task": "a.b"}), "task", "without an 'id'"),
        (RawMessage(b"[1, 2]", "application/json", "utf-8", {"task": "a.b", "id": "1"}), "task", "not [args"),
    ],
)
def test_bad_messages_decode_to_one_line_errors(raw: RawMessage, kind: str, error_part: str) -> None:
    d = decode(raw)
    assert d.kind == kind
    assert d.error is not None and error_part in d.error and "\n" not in d.error
    assert d.preview is not None


def test_record_round_trip_keeps_bytes_and_typed_headers() -> None:
    raw = RawMessage(
        body=b"\xff\x00\x80 not utf-8",
        content_type="application/octet-stream",
        content_encoding="binary",
        headers={"b": b"\x01\x02", "t": dt.datetime(2026, 1, 2, 3, 4, 5), "d": Decimal("1.10"), "l": [1, "x"]},
        properties={"delivery_mode": 2, "priority": 3, "expiration": "60000", "correlation_id": "c"},
        exchange="ex",
        routing_key="rk",
        redelivered=True,
    )
    line = json.dumps(to_record(raw, queue="q"))
    back = from_record(json.loads(line))
    assert back == raw


def test_republish_drops_expiration_and_reports_past_expires() -> None:
    m = build_task_message("a.b", [], {}, task_id="t-5", expires="2000-01-01T00:00:00+00:00", eta="2000-01-01T00:00:00")
    m = RawMessage(m.body, m.content_type, m.content_encoding, m.headers, {**m.properties, "expiration": "600000"})
    r = for_republish(m)
    assert "expiration" not in r.properties and r.body == m.body and r.headers == m.headers
    problems = republish_problems(m)
    assert any("expires" in p for p in problems) and any("eta" in p for p in problems)


def test_task_glob_and_dedupe_key() -> None:
    m = build_task_message("app.reports.daily", [], {}, task_id="t-6")
    assert matches_task(m, "app.reports.*") and not matches_task(m, "app.other.*") and matches_task(m, None)
    assert message_key(m) == "id:t-6"
    anon = RawMessage(b"hello", "text/plain")
    assert message_key(anon).startswith("sha256:") and message_key(anon) == message_key(
        RawMessage(b"hello", "text/plain")
    )


def test_line_encoder_pieces_equal_the_plain_json_line() -> None:
    """The drain hot path assembles lines from pieces; they must be the bytes json.dumps gives for the record."""
    from taskctl.formats import message

    odd = {"eta": dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "price": Decimal("1.5"), "nan": float("nan"), "u": "é\u2028"}
    raws = [
        RawMessage(
            b"[[1], {}, {}]",
            "application/json",
            "utf-8",
            {"task": "a.b", "id": "t-1"},
            {"priority": 0},
            "celery",
            "celery",
            False,
        ),
        RawMessage(
            b"\xff\x00",
            "application/x-msgpack",
            "binary",
            {"task": "a.\u00e9", "id": 7, **odd},
            {"delivery_mode": 2},
            "",
            'q"x',
            True,
        ),
        RawMessage(b"{}", "application/json", "utf-8", {"clock": 1}),
    ]
    enc = message.LineEncoder("q\u00e9")
    for raw in raws * 2:  # twice: the cached middle parts are reused
        line = enc.line(raw)
        if "task" in raw.headers:
            expected = json.dumps(
                message._task_record(raw, "q\u00e9"), ensure_ascii=False, separators=(",", ":"), default=message._tag
            )
        else:
            expected = json.dumps(
                message.drain_record(raw, "q\u00e9"), ensure_ascii=False, separators=(",", ":"), default=message._tag
            )
        assert line == (expected + "\n").encode("utf-8")
