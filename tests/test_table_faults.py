"""Replies no local server gives, injected with a botocore ``before-send`` hook in front of DynamoDB Local.

DynamoDB Local and moto go straight to ENABLED/DISABLED and ACTIVE, never throttle, never refuse a TTL change
as "modified multiple times", and accept any signature. Each test here says which replies it stubs; every
other call still reaches the real server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskctl import tables
from taskctl.backends import dynamodb
from taskctl.backends.base import TtlDescription
from taskctl.errors import ConflictError
from taskctl.tables import plan_ttl


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._data


class Faults:
    """Canned replies per operation, for N calls (None: every call); the rest go to the server."""

    def __init__(self) -> None:
        self.rules: dict[str, list[tuple[int, dict[str, Any], list[int | None]]]] = {}
        self.calls: dict[str, int] = {}

    def reply(self, op: str, body: dict[str, Any], *, times: int | None = None, status: int = 200) -> None:
        self.rules.setdefault(op, []).append((status, body, [times]))

    def error(self, op: str, code: str, message: str, *, times: int | None = None, status: int = 400) -> None:
        self.reply(
            op, {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}, times=times, status=status
        )

    def install(self, client: Any) -> None:
        from botocore.awsrequest import AWSResponse

        def before_send(request: Any, **kwargs: Any) -> Any:
            target = request.headers.get("X-Amz-Target", b"")
            op = (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1]
            self.calls[op] = self.calls.get(op, 0) + 1
            for status, body, left in self.rules.get(op, []):
                if left[0] is None or left[0] > 0:
                    if left[0] is not None:
                        left[0] -= 1
                    headers = {"Content-Type": "application/x-amz-json-1.0"}
                    return AWSResponse(request.url, status, headers, _Body(json.dumps(body).encode()))
            return None

        client.meta.events.register("before-send.dynamodb", before_send)


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    f = Faults()
    monkeypatch.setattr(dynamodb, "CLIENT_HOOKS", [f.install])
    return f


@pytest.fixture
def table(run: Any, dynamodb_endpoint: str, unique_name: str) -> Iterator[str]:
    port = dynamodb_endpoint.rsplit(":", 1)[1]
    b = f"dynamodb://@127.0.0.1:{port}/{unique_name}"
    assert run("--backend", b, "table", "create").exit_code == 0
    yield b
    import boto3

    boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1").delete_table(
        TableName=unique_name
    )


def ttl_state(status: str, attribute: str | None = "ttl") -> dict[str, Any]:
    d: dict[str, Any] = {"TimeToLiveStatus": status}
    if attribute:
        d["AttributeName"] = attribute
    return {"TimeToLiveDescription": d}


MULTIPLE = "Time to live has been modified multiple times within a fixed interval"


def test_enabling_counts_as_enabled_no_update_sent(run: Any, table: str, faults: Faults) -> None:
    """Stub: DescribeTimeToLive says ENABLING on 'ttl'."""
    faults.reply("DescribeTimeToLive", ttl_state("ENABLING"))
    r = run("--backend", table, "table", "ttl", "--enable", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert (r.json["ttl"], r.json["changed"]) == ({"status": "ENABLING", "attribute": "ttl"}, False)
    assert faults.calls.get("UpdateTimeToLive", 0) == 0


def test_disabling_counts_as_disabled_no_update_sent(run: Any, table: str, faults: Faults) -> None:
    """Stub: DescribeTimeToLive says DISABLING."""
    faults.reply("DescribeTimeToLive", ttl_state("DISABLING"))
    r = run("--backend", table, "table", "ttl", "--disable", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert (r.json["ttl"]["status"], r.json["changed"]) == ("DISABLING", False)
    assert faults.calls.get("UpdateTimeToLive", 0) == 0


@pytest.mark.parametrize(("state", "flag"), [("DISABLING", "--enable"), ("ENABLING", "--disable")])
def test_change_while_settling_is_refused_exit_4(run: Any, table: str, faults: Faults, state: str, flag: str) -> None:
    """Stub: TTL is settling (ENABLING/DISABLING) and UpdateTimeToLive answers DynamoDB's "modified multiple times"."""
    faults.reply("DescribeTimeToLive", ttl_state(state))
    faults.error("UpdateTimeToLive", "ValidationException", MULTIPLE)
    r = run("--backend", table, "table", "ttl", flag)
    assert r.exit_code == 4
    assert r.stdout == ""
    assert f"DynamoDB refused the TTL change: {MULTIPLE}" in r.stderr
    assert "hint: a TTL change takes up to an hour to settle on AWS" in r.stderr
    assert faults.calls["UpdateTimeToLive"] == 1


def test_refusal_as_json_error(run: Any, table: str, faults: Faults) -> None:
    """Stub: UpdateTimeToLive answers "modified multiple times"."""
    faults.error("UpdateTimeToLive", "ValidationException", MULTIPLE)
    r = run("--backend", table, "table", "ttl", "--enable", "-o", "json")
    assert r.exit_code == 4
    err = json.loads(r.stderr)["error"]
    assert (err["code"], err["exit_code"]) == ("ttl-refused", 4)
    assert MULTIPLE in err["message"]


def test_server_refusing_other_attribute_is_exit_4(run: Any, table: str, faults: Faults) -> None:
    """Stub: UpdateTimeToLive answers "active on a different AttributeName" (a change raced ours)."""
    faults.error(
        "UpdateTimeToLive",
        "ValidationException",
        "TimeToLive is active on a different AttributeName: current AttributeName is ttlx",
    )
    r = run("--backend", table, "table", "ttl", "--enable")
    assert r.exit_code == 4
    assert "current AttributeName is ttlx" in r.stderr
    assert "hint: disable TTL first" in r.stderr


def test_enabling_on_other_attribute_is_refused_without_update(run: Any, table: str, faults: Faults) -> None:
    """Stub: DescribeTimeToLive says ENABLING on 'ttlx'."""
    faults.reply("DescribeTimeToLive", ttl_state("ENABLING", "ttlx"))
    r = run("--backend", table, "table", "ttl", "--enable")
    assert r.exit_code == 4
    assert "current AttributeName is 'ttlx' (ENABLING)" in r.stderr
    assert faults.calls.get("UpdateTimeToLive", 0) == 0


def test_ttl_wait_polls_until_enabled(run: Any, table: str, faults: Faults) -> None:
    """Stub: DescribeTimeToLive says ENABLING for the first three calls after the update."""
    faults.reply("DescribeTimeToLive", ttl_state("DISABLED", None), times=1)
    faults.reply("DescribeTimeToLive", ttl_state("ENABLING"), times=3)
    r = run("--backend", table, "table", "ttl", "--enable", "--wait", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert (r.json["ttl"], r.json["changed"]) == ({"status": "ENABLED", "attribute": "ttl"}, True)
    assert faults.calls["DescribeTimeToLive"] >= 5


def test_ttl_wait_times_out_exit_124(run: Any, table: str, faults: Faults) -> None:
    """Stub: DescribeTimeToLive says ENABLING forever."""
    faults.reply("DescribeTimeToLive", ttl_state("DISABLED", None), times=1)
    faults.reply("DescribeTimeToLive", ttl_state("ENABLING"))
    r = run("--backend", table, "table", "ttl", "--enable", "--wait", "--timeout", "1")
    assert r.exit_code == 124
    assert "gave up waiting for TTL on table" in r.stderr and "still ENABLING after 1s" in r.stderr


def _creating(dynamodb_endpoint: str, name: str) -> dict[str, Any]:
    return {
        "Table": {
            "TableName": name,
            "TableStatus": "CREATING",
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
        }
    }


def test_create_waits_for_active(run: Any, dynamodb_endpoint: str, unique_name: str, faults: Faults) -> None:
    """Stub: DescribeTable says CREATING for the first three calls (DynamoDB Local is ACTIVE at once)."""
    port = dynamodb_endpoint.rsplit(":", 1)[1]
    faults.reply("DescribeTable", _creating(dynamodb_endpoint, unique_name), times=3)
    try:
        r = run("--backend", f"dynamodb://@127.0.0.1:{port}/{unique_name}", "table", "create", "-o", "json")
        assert r.exit_code == 0, r.stderr
        assert (r.json["status"], r.json["created"]) == ("ACTIVE", True)
        assert faults.calls["DescribeTable"] >= 4
    finally:
        faults.rules.clear()
        run("--backend", f"dynamodb://@127.0.0.1:{port}/x", "table", "delete", unique_name, "--yes")


def test_create_no_wait_and_timeout_124(run: Any, dynamodb_endpoint: str, unique_name: str, faults: Faults) -> None:
    """Stub: DescribeTable says CREATING forever."""
    port = dynamodb_endpoint.rsplit(":", 1)[1]
    b = f"dynamodb://@127.0.0.1:{port}/{unique_name}"
    faults.reply("DescribeTable", _creating(dynamodb_endpoint, unique_name))
    try:
        r = run("--backend", b, "table", "create", "--no-wait", "-o", "json")
        assert r.exit_code == 0, r.stderr
        assert (r.json["status"], r.json["created"]) == ("CREATING", True)
        r = run("--backend", b, "table", "create", "--timeout", "1s")
        assert r.exit_code == 124
        assert f"gave up waiting for table '{unique_name}' to become ACTIVE: still CREATING after 1s" in r.stderr
    finally:
        faults.rules.clear()
        run("--backend", b, "table", "delete", unique_name, "--yes")


@pytest.mark.parametrize(
    ("code", "expect"),
    [
        ("InvalidSignatureException", "the request signature does not match (wrong secret key?)"),
        ("AccessDeniedException", "access denied"),
        ("ExpiredTokenException", "the session token has expired"),
    ],
)
def test_auth_failures_are_exit_5(run: Any, table: str, faults: Faults, code: str, expect: str) -> None:
    """Stub: DescribeTable answers an authentication error (DynamoDB Local checks no signatures)."""
    faults.error("DescribeTable", code, "The request signature we calculated does not match")
    r = run("--backend", table, "table", "describe")
    assert r.exit_code == 5
    assert f"{expect}: {code}" in r.stderr
    assert "hint: check the credentials" in r.stderr


def test_throttling_is_exit_1_with_hint(run: Any, table: str, faults: Faults, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stub: DescribeTable is throttled on every attempt (no local server throttles); one attempt keeps it fast."""
    monkeypatch.setattr(dynamodb, "MAX_ATTEMPTS", 1)
    faults.error(
        "DescribeTable", "ProvisionedThroughputExceededException", "Rate of requests exceeds the allowed throughput"
    )
    r = run("--backend", table, "table", "describe")
    assert r.exit_code == 1
    assert "throttled by DynamoDB: ProvisionedThroughputExceededException" in r.stderr
    assert "hint: retry later, raise the table's capacity, or switch it to on-demand" in r.stderr


def test_throttling_retried_then_succeeds(run: Any, table: str, faults: Faults) -> None:
    """Stub: the first DescribeTable is throttled; botocore's standard retry gets through."""
    faults.error("DescribeTable", "ThrottlingException", "slow down", times=1)
    r = run("--backend", table, "table", "describe", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["status"] == "ACTIVE"


# -- the TTL state machine, every state of Celery's _set_table_ttl ---------------------------------------------


@pytest.mark.parametrize(
    ("status", "current", "enable", "update"),
    [
        ("ENABLED", "ttl", True, None),
        ("ENABLING", "ttl", True, None),
        ("DISABLED", None, True, (True, "ttl")),
        ("DISABLING", "ttl", True, (True, "ttl")),
        ("ENABLED", "ttl", False, (False, "ttl")),
        ("ENABLED", "ttlx", False, (False, "ttlx")),
        ("ENABLING", "ttl", False, (False, "ttl")),
        ("DISABLED", None, False, None),
        ("DISABLING", "ttl", False, None),
    ],
)
def test_ttl_plan(status: str, current: str | None, enable: bool, update: tuple[bool, str] | None) -> None:
    plan = plan_ttl("t", TtlDescription(status, current), enable=enable, attribute="ttl")
    assert ((plan.enabled, plan.attribute) if plan.update else None) == update


@pytest.mark.parametrize("status", ["ENABLED", "ENABLING"])
def test_ttl_plan_refuses_other_attribute(status: str) -> None:
    with pytest.raises(ConflictError, match="current AttributeName is 'ttlx'"):
        plan_ttl("t", TtlDescription(status, "ttlx"), enable=True, attribute="ttl")


def test_wait_until_uses_short_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(tables, "sleep", slept.append)
    states: Iterator[str] = iter(["CREATING"] * 12 + ["ACTIVE"])
    check: Callable[[], tuple[bool, str]] = lambda: ((s := next(states)) == "ACTIVE", s)  # noqa: E731
    assert tables.wait_until(check, what="x", timeout=60) == "ACTIVE"
    assert slept[0] == tables.POLL_START and max(slept) == tables.POLL_MAX
