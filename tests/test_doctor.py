"""`taskctl doctor` against real servers: DynamoDB Local (else moto), RabbitMQ and Redis on loopback.

Access denied is the one reply no local server gives (none of them models IAM): those tests stub it with a
botocore ``before-send`` hook on the DynamoDB client seam, and say so.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from taskctl.backends import dynamodb


def rows(r: Any) -> dict[str, dict[str, Any]]:
    data = json.loads(r.stdout)
    assert isinstance(data, list)
    return {c["name"]: c for c in data}


@pytest.fixture
def ddb_url(dynamodb_endpoint: str, unique_name: str) -> Iterator[str]:
    """A backend URL for a table of this test's own (not created yet); dropped afterwards if it was."""
    port = dynamodb_endpoint.rsplit(":", 1)[1]
    yield f"dynamodb://@127.0.0.1:{port}/{unique_name}?ttl_seconds=3600"
    import boto3

    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1")
    try:
        client.delete_table(TableName=unique_name)
    except client.exceptions.ResourceNotFoundException:
        pass


@pytest.fixture
def queue_name(rabbitmq_url: str) -> Iterator[str]:
    from kombu import Connection

    name = f"doctor-{uuid.uuid4().hex[:8]}"
    with Connection(rabbitmq_url) as conn:
        ch = conn.channel()
        ch.queue_declare(queue=name, durable=False, auto_delete=False)
        ch.close()
    yield name
    with Connection(rabbitmq_url) as conn:
        ch = conn.channel()
        ch.queue_delete(queue=name)
        ch.close()


def test_healthy_setup_passes_with_exit_0(run: Any, ddb_url: str, rabbitmq_url: str, queue_name: str) -> None:
    assert run("--backend", ddb_url, "table", "create", "--ttl").exit_code == 0
    r = run("--backend", ddb_url, "--broker", rabbitmq_url, "doctor", "--queue", queue_name, "-o", "json")
    assert r.exit_code == 0, r.stderr
    checks = rows(r)
    assert [c["name"] for c in json.loads(r.stdout)] == [
        "config",
        "backend-url",
        "table",
        "table-schema",
        "table-ttl",
        "table-items",
        "read",
        "broker-url",
        "broker",
        f"queue:{queue_name}",
    ]
    for name in (
        "config",
        "backend-url",
        "table",
        "table-schema",
        "table-ttl",
        "table-items",
        "read",
        "broker-url",
        "broker",
    ):
        assert checks[name]["status"] == "pass", checks[name]
    assert checks["table-ttl"]["detail"] == "TTL ENABLED on 'ttl'; Celery writes ttl = now + 3600s"
    assert checks["backend-url"]["detail"].endswith("(from flag --backend)")
    # a queue nobody consumes is a warning, not a failure
    q = checks[f"queue:{queue_name}"]
    assert q["status"] == "warn" and q["detail"] == "0 ready, 0 consumers: no worker consumes it"
    assert "guest:guest" not in r.stdout and "guest:****" in checks["broker"]["detail"]
    assert r.stderr.strip() == "doctor: all 10 checks passed (1 with warnings)"


def test_missing_table_fails_with_exit_1_and_a_hint(run: Any, ddb_url: str, redis_url: str) -> None:
    r = run("--backend", ddb_url, "--broker", redis_url, "doctor")
    assert r.exit_code == 1, (r.stdout, r.stderr)
    # plain output: one row per check, columns NAME STATUS DETAIL HINT
    lines = r.stdout.splitlines()
    assert lines, (r.stdout, r.stderr)
    assert lines[0].split() == ["NAME", "STATUS", "DETAIL", "HINT"]
    table_row = next(line for line in lines if line.startswith("table "))
    assert " fail " in table_row and "does not exist" in table_row and "taskctl table create" in table_row
    assert "doctor: 1 of" in r.stderr
    # the broker is still checked after the backend failed
    assert any(line.startswith("broker ") and " pass " in line for line in lines)


def test_schema_and_ttl_attribute_celery_cannot_use(run: Any, ddb_url: str, ddb_client: Any, unique_name: str) -> None:
    ddb_client.create_table(
        TableName=unique_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb_client.update_time_to_live(
        TableName=unique_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    r = run("--backend", ddb_url, "--broker", "memory://", "doctor", "-o", "json")
    assert r.exit_code == 1
    checks = rows(r)
    assert checks["table"]["status"] == "pass"  # it exists and is ACTIVE
    assert checks["table-schema"]["status"] == "fail" and "'pk'" in checks["table-schema"]["detail"]
    ttl = checks["table-ttl"]
    assert ttl["status"] == "fail" and "'expires_at'" in ttl["detail"] and "--disable" in ttl["hint"]


@pytest.mark.parametrize(
    ("query", "status", "phrase"),
    [
        ("?ttl_seconds=3600", "warn", "Celery switches it on at start-up"),
        ("", "warn", "results are kept forever"),
        ("?ttl_seconds=-1", "pass", "as ttl_seconds=-1 asks"),
    ],
)
def test_ttl_off_against_what_the_url_asks(run: Any, ddb_url: str, query: str, status: str, phrase: str) -> None:
    base = ddb_url.split("?")[0]
    assert run("--backend", base, "table", "create", "--no-ttl").exit_code == 0
    r = run("--backend", base + query, "--broker", "memory://", "doctor", "-o", "json")
    assert r.exit_code == 0, r.stdout
    ttl = rows(r)["table-ttl"]
    assert ttl["status"] == status and phrase in ttl["detail"]


def test_unreachable_servers_fail_fast_and_never_print_passwords(run: Any) -> None:
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    r = run(
        "--backend",
        f"dynamodb://AKIAX:s3cretkey@127.0.0.1:{port}/t",
        "--broker",
        f"amqp://guest:pw-s3cret@127.0.0.1:{port}//",
        "doctor",
        "-o",
        "json",
    )
    assert time.monotonic() - start < 30
    assert r.exit_code == 1
    checks = rows(r)
    assert checks["table"]["status"] == "fail" and "cannot connect" in checks["table"]["detail"]
    assert checks["broker"]["status"] == "fail"
    assert "s3cret" not in r.stdout + r.stderr
    assert "pw-s3cret" not in r.stdout + r.stderr


def test_no_backend_configured_names_the_variables(run: Any) -> None:
    r = run("--broker", "memory://", "doctor", "-o", "json")
    assert r.exit_code == 1
    checks = rows(r)
    assert checks["backend-url"] == {
        "name": "backend-url",
        "status": "fail",
        "detail": "no result backend configured",
        "hint": "pass --backend URL, or set TASKCTL_RESULT_BACKEND or CELERY_RESULT_BACKEND, or use --env NAME",
    }
    assert "table" not in checks and checks["broker"]["status"] == "pass"


def test_config_row_names_file_environment_and_variables(
    run: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "home/.config/taskctl/config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('[env.ci]\nbroker = "memory://"\n')
    monkeypatch.setenv("TASKCTL_RESULT_BACKEND", "redis://:hunter22@127.0.0.1:1/0")
    r = run("--env", "ci", "doctor", "-o", "json")
    checks = rows(r)
    assert checks["config"]["detail"] == f"{cfg}, environment 'ci'; variables: TASKCTL_RESULT_BACKEND"
    assert checks["backend-url"]["detail"] == "redis://:****@127.0.0.1:1/0 (from environment TASKCTL_RESULT_BACKEND)"
    assert checks["broker-url"]["detail"].endswith(f"(from file {cfg} [env.ci])")
    assert "hunter22" not in r.stdout + r.stderr


def test_default_broker_is_a_warning(run: Any) -> None:
    r = run("--backend", "file:///nonexistent-doctor-dir", "doctor", "-o", "json")
    checks = rows(r)
    assert checks["broker-url"]["status"] == "warn"
    assert checks["broker-url"]["detail"] == "amqp://guest@localhost// (from built-in default)"


def test_write_probe_writes_and_removes_one_item(run: Any, ddb_url: str, ddb_client: Any, unique_name: str) -> None:
    assert run("--backend", ddb_url, "table", "create", "--ttl").exit_code == 0
    r = run("--backend", ddb_url, "--broker", "memory://", "doctor", "--write-probe", "-o", "json")
    assert r.exit_code == 0, r.stdout
    write = rows(r)["write"]
    assert write["status"] == "pass" and "celery-task-meta-taskctl-doctor-probe-" in write["detail"]
    assert ddb_client.scan(TableName=unique_name)["Items"] == []
    # without --write-probe nothing is written, and there is no write row
    r = run("--backend", ddb_url, "--broker", "memory://", "doctor", "-o", "json")
    assert "write" not in rows(r)


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._data


def deny(*operations: str) -> Any:
    """before-send hook: AccessDeniedException for OPERATIONS (stub: no local server models IAM)."""

    def install(client: Any) -> None:
        from botocore.awsrequest import AWSResponse

        def before_send(request: Any, **kwargs: Any) -> Any:
            target = request.headers.get("X-Amz-Target", b"")
            op = (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1]
            if op in operations:
                body = {
                    "__type": "com.amazon.coral.service#AccessDeniedException",
                    "message": f"User: arn:aws:iam::123456789012:user/ops is not authorized to perform: dynamodb:{op}",
                }
                headers = {"Content-Type": "application/x-amz-json-1.0"}
                return AWSResponse(request.url, 400, headers, _Body(json.dumps(body).encode()))
            return None

        client.meta.events.register("before-send.dynamodb", before_send)

    return install


def test_missing_permissions_are_named(run: Any, ddb_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stub: DescribeTimeToLive and BatchGetItem answer AccessDeniedException; DescribeTable reaches the server."""
    assert run("--backend", ddb_url, "table", "create", "--ttl").exit_code == 0
    monkeypatch.setattr(dynamodb, "CLIENT_HOOKS", [deny("DescribeTimeToLive", "BatchGetItem")])
    r = run("--backend", ddb_url, "--broker", "memory://", "doctor", "-o", "json")
    assert r.exit_code == 1
    checks = rows(r)
    assert checks["table"]["status"] == "pass"
    assert checks["table-ttl"]["status"] == "fail"
    assert checks["table-ttl"]["detail"].startswith("missing permission dynamodb:DescribeTimeToLive: ")
    assert checks["read"]["status"] == "fail"
    assert checks["read"]["detail"].startswith("missing permission dynamodb:BatchGetItem: ")
    assert "dynamodb:GetItem" in checks["read"]["hint"]


def test_denied_describe_table_stops_the_table_checks(run: Any, ddb_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stub: DescribeTable answers AccessDeniedException."""
    monkeypatch.setattr(dynamodb, "CLIENT_HOOKS", [deny("DescribeTable")])
    r = run("--backend", ddb_url, "--broker", "memory://", "doctor", "-o", "json")
    assert r.exit_code == 1
    checks = rows(r)
    assert checks["table"]["detail"].startswith("missing permission dynamodb:DescribeTable: ")
    # the checks that need the table are reported, as skipped, with the check they waited for
    for name in ("table-schema", "table-ttl", "table-items", "read"):
        assert checks[name] == {
            "name": name,
            "status": "skipped",
            "detail": "not run: the table check failed",
            "hint": None,
        }


def test_checks_after_a_failure_are_reported_skipped_with_why(run: Any) -> None:
    """Every check has a row: those that need a failed one are 'skipped', naming the check they waited for."""
    r = run("--backend", "dynamodb://@127.0.0.1:1/t?read=x", "--broker", "nope", "doctor", "--write-probe",
            "--queue", "a", "--queue", "b", "-o", "json")  # fmt: skip
    assert r.exit_code == 1
    got = [(c["name"], c["status"], c["detail"]) for c in json.loads(r.stdout)]
    after_backend = "not run: the backend-url check failed"
    after_broker = "not run: the broker-url check failed"
    assert got[1][:2] == ("backend-url", "fail")
    assert got[2:9] == [
        ("table", "skipped", after_backend),
        ("table-schema", "skipped", after_backend),
        ("table-ttl", "skipped", after_backend),
        ("table-items", "skipped", after_backend),
        ("read", "skipped", after_backend),
        ("write", "skipped", after_backend),
        ("broker-url", "fail", "not a URL: 'nope'"),
    ]
    assert got[9:] == [
        ("broker", "skipped", after_broker),
        ("queue:a", "skipped", after_broker),
        ("queue:b", "skipped", after_broker),
    ]
    assert json.loads(r.stderr)["error"]["message"] == "doctor: 2 of 12 checks failed, 9 skipped"


@pytest.mark.parametrize("fmt", ["plain", "table", "csv", "tsv", "jsonl"])
def test_skipped_rows_in_every_format(run: Any, fmt: str) -> None:
    r = run("--broker", "memory://", "doctor", "-o", fmt)
    assert r.exit_code == 1
    line = next(line for line in r.stdout.splitlines() if "read" in line)
    assert "skipped" in line and "not run: the backend-url" in line


def test_missing_table_skips_what_needs_it(run: Any, ddb_url: str) -> None:
    r = run("--backend", ddb_url, "--broker", "memory://", "doctor", "--write-probe", "-o", "json")
    assert r.exit_code == 1
    checks = rows(r)
    assert checks["table"]["status"] == "fail" and "does not exist" in checks["table"]["detail"]
    for name in ("table-schema", "table-ttl", "table-items", "read", "write"):
        assert (checks[name]["status"], checks[name]["detail"]) == ("skipped", "not run: the table check failed")
    assert checks["broker"]["status"] == "pass"


def test_unreachable_broker_skips_its_queues(run: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run("--backend", "file:///nonexistent-doctor-dir", "--broker", f"amqp://guest:guest@127.0.0.1:{port}//",
            "doctor", "--queue", "a", "--queue", "b", "-o", "json")  # fmt: skip
    checks = rows(r)
    assert checks["broker"]["status"] == "fail"
    assert checks["queue:a"] == checks["queue:a"] | {"status": "skipped", "detail": "not run: the broker check failed"}
    assert checks["queue:b"]["status"] == "skipped"
