"""`taskctl table ...` end to end against real DynamoDB-compatible servers (DynamoDB Local, and moto)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from taskctl.localserver import free_port


def url(endpoint: str, table: str = "celery", query: str = "") -> str:
    port = endpoint.rsplit(":", 1)[1]
    return f"dynamodb://@127.0.0.1:{port}/{table}{query}"


def client(endpoint: str) -> Any:
    import boto3

    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")


def drop(endpoint: str, *names: str) -> None:
    c = client(endpoint)
    for n in names:
        try:
            c.delete_table(TableName=n)
        except c.exceptions.ResourceNotFoundException:
            pass
        except Exception as exc:  # moto's code for a missing table differs
            if "ResourceNotFound" not in str(exc):
                raise


def expected(table: str, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "table": table,
        "status": "ACTIVE",
        "billing_mode": "PROVISIONED",
        "read_capacity": 1,
        "write_capacity": 1,
        "key_schema": [{"name": "id", "type": "S", "key": "HASH"}],
        "celery_compatible": True,
        "problems": [],
        "item_count": 0,
        "size_bytes": 0,
        "ttl": {"status": "DISABLED", "attribute": None},
        # every key is always present (null where it does not apply to the command)
        "created": None,
        "changed": None,
        "dry_run": None,
        "deleted": None,
        "item_sizes": {"sampled": None, "near_limit": None, "largest_bytes": None, "largest_key": None},
    }
    out.update(kw)
    return out


@pytest.fixture
def table(any_dynamodb: str, unique_name: str) -> Any:
    yield unique_name
    drop(any_dynamodb, unique_name)


# -- contract: every server -----------------------------------------------------------------------------------


def test_create_is_idempotent_and_describe_matches(run: Any, any_dynamodb: str, table: str) -> None:
    b = url(any_dynamodb, table)
    r = run("--backend", b, "table", "create", "--ttl", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json == expected(table, ttl={"status": "ENABLED", "attribute": "ttl"}, created=True)
    r = run("table", "create", "-o", "json", "--backend", b)
    assert r.exit_code == 0, r.stderr
    assert r.json == expected(table, ttl={"status": "ENABLED", "attribute": "ttl"}, created=False)
    r = run("--backend", b, "table", "describe", "-o", "json")
    assert r.exit_code == 0
    empty = {"sampled": 0, "near_limit": 0, "largest_bytes": None, "largest_key": None}
    assert r.json == expected(table, ttl={"status": "ENABLED", "attribute": "ttl"}, item_sizes=empty)


def test_create_on_demand_and_explicit_table_argument(run: Any, any_dynamodb: str, table: str) -> None:
    r = run("--backend", url(any_dynamodb, "unused"), "table", "create", table, "--on-demand", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json == expected(
        table, billing_mode="PAY_PER_REQUEST", read_capacity=None, write_capacity=None, created=True
    )


def test_url_read_write_and_ttl_seconds_are_the_defaults(run: Any, any_dynamodb: str, table: str) -> None:
    r = run("--backend", url(any_dynamodb, table, "?read=3&write=4&ttl_seconds=600"), "table", "create", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert (r.json["read_capacity"], r.json["write_capacity"], r.json["ttl"]) == (
        3,
        4,
        {"status": "ENABLED", "attribute": "ttl"},
    )


def test_url_ttl_seconds_negative_leaves_ttl_off(run: Any, any_dynamodb: str, table: str) -> None:
    r = run("--backend", url(any_dynamodb, table, "?ttl_seconds=-1"), "table", "create", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["ttl"] == {"status": "DISABLED", "attribute": None}


def test_existing_table_with_other_key_schema_is_exit_4(run: Any, any_dynamodb: str, table: str) -> None:
    client(any_dynamodb).create_table(
        TableName=table,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    r = run("--backend", url(any_dynamodb, table), "table", "create")
    assert r.exit_code == 4
    assert r.stdout == ""
    assert f"table '{table}' exists with a key schema Celery cannot use: The hash key is 'pk'" in r.stderr
    assert "range key 'sk'" in r.stderr
    r = run("--backend", url(any_dynamodb, table), "table", "describe", "-o", "json")
    assert r.exit_code == 0
    assert r.json["celery_compatible"] is False
    assert r.json["key_schema"] == [
        {"name": "pk", "type": "S", "key": "HASH"},
        {"name": "sk", "type": "N", "key": "RANGE"},
    ]
    assert len(r.json["problems"]) == 2


def test_hash_key_id_of_type_number_is_named(run: Any, any_dynamodb: str, table: str) -> None:
    client(any_dynamodb).create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    r = run("--backend", url(any_dynamodb, table), "table", "create")
    assert r.exit_code == 4
    assert "The hash key 'id' has type N, but Celery stores it as a string (type S)." in r.stderr


def test_describe_missing_table_is_exit_3(run: Any, any_dynamodb: str, unique_name: str) -> None:
    r = run("--backend", url(any_dynamodb), "table", "describe", unique_name)
    assert r.exit_code == 3
    assert r.stdout == ""
    assert f"table '{unique_name}' does not exist" in r.stderr
    assert f"hint: create it with: taskctl table create {unique_name}" in r.stderr


def test_list_shows_every_table_with_compatibility(run: Any, any_dynamodb: str, unique_name: str) -> None:
    good, bad = f"{unique_name}-good", f"{unique_name}-bad"
    try:
        assert run("--backend", url(any_dynamodb, good), "table", "create").exit_code == 0
        client(any_dynamodb).create_table(
            TableName=bad,
            AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        r = run("--backend", url(any_dynamodb), "table", "list", "-o", "json")
        assert r.exit_code == 0, r.stderr
        rows = {row["table"]: row for row in r.json}
        assert rows[good] == expected(good)
        assert rows[bad]["celery_compatible"] is False
        assert rows[bad]["problems"] == ["The hash key is 'key', but Celery reads and writes items by a hash key 'id'."]
        r = run("--backend", url(any_dynamodb), "table", "list")
        lines = r.stdout.splitlines()
        assert lines[0].split() == [
            "TABLE", "STATUS", "BILLING_MODE", "READ_CAPACITY", "WRITE_CAPACITY", "CELERY_COMPATIBLE",
            "ITEM_COUNT", "SIZE_BYTES", "TTL_STATUS", "TTL_ATTRIBUTE",
        ]  # fmt: skip
        row = next(line.split() for line in lines if line.startswith(good + " "))
        assert row == [good, "ACTIVE", "PROVISIONED", "1", "1", "true", "0", "0", "DISABLED", "-"]
    finally:
        drop(any_dynamodb, good, bad)


def test_ttl_show_enable_disable_and_no_change(run: Any, any_dynamodb: str, table: str) -> None:
    b = url(any_dynamodb, table)
    assert run("--backend", b, "table", "create").exit_code == 0

    def ttl(*args: str) -> tuple[int, Any]:
        r = run("--backend", b, "table", "ttl", *args, "-o", "json")
        return r.exit_code, (r.json["ttl"], r.json["changed"]) if r.exit_code == 0 else r.stderr

    assert ttl() == (0, ({"status": "DISABLED", "attribute": None}, False))
    assert ttl("--disable") == (0, ({"status": "DISABLED", "attribute": None}, False))
    assert ttl("--enable", "--dry-run") == (0, ({"status": "DISABLED", "attribute": None}, True))
    assert ttl("--enable") == (0, ({"status": "ENABLED", "attribute": "ttl"}, True))
    assert ttl("--enable") == (0, ({"status": "ENABLED", "attribute": "ttl"}, False))
    assert ttl("--enable", "--wait") == (0, ({"status": "ENABLED", "attribute": "ttl"}, False))
    code, (state, changed) = ttl("--disable")
    assert (code, state["status"], changed) == (0, "DISABLED", True)
    code, (state, changed) = ttl("--disable")
    assert (code, state["status"], changed) == (0, "DISABLED", False)


def test_ttl_on_another_attribute_is_a_problem_and_refused(run: Any, any_dynamodb: str, table: str) -> None:
    b = url(any_dynamodb, table)
    assert run("--backend", b, "table", "create").exit_code == 0
    r = run("--backend", b, "table", "ttl", "--enable", "--attribute", "expires_at", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert (r.json["ttl"], r.json["changed"], r.json["celery_compatible"]) == (
        {"status": "ENABLED", "attribute": "expires_at"},
        True,
        False,
    )
    assert r.json["problems"] == [
        "TTL is enabled on attribute 'expires_at', not 'ttl': Celery with ttl_seconds set fails at start-up "
        "(DynamoDB refuses its TTL change), and its 'ttl' values never expire items."
    ]
    r = run("--backend", b, "table", "ttl", "--enable")
    assert r.exit_code == 4
    assert "TimeToLive is active on a different AttributeName: current AttributeName is 'expires_at'" in r.stderr
    assert f"hint: disable it first ('taskctl table ttl {table} --disable')" in r.stderr
    r = run("--backend", b, "table", "create", "--ttl")
    assert r.exit_code == 4


def test_delete_needs_yes_supports_dry_run_and_missing_is_3(run: Any, any_dynamodb: str, table: str) -> None:
    b = url(any_dynamodb, "celery")
    assert run("--backend", b, "table", "create", table).exit_code == 0
    r = run("--backend", b, "table", "delete", table)
    assert r.exit_code == 2
    assert "refusing to delete table" in r.stderr and "without --yes" in r.stderr
    r = run("--backend", b, "table", "delete", table, "--dry-run", "-o", "json")
    assert r.exit_code == 0
    assert (r.json["status"], r.json["dry_run"], r.json["deleted"]) == ("ACTIVE", True, False)
    assert run("--backend", b, "table", "describe", table).exit_code == 0
    r = run("--backend", b, "table", "delete", table, "--yes", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert (r.json["table"], r.json["status"], r.json["deleted"]) == (table, "DELETED", True)
    assert run("--backend", b, "table", "describe", table).exit_code == 3
    r = run("--backend", b, "table", "delete", table, "--yes")
    assert r.exit_code == 3
    assert f"table '{table}' does not exist" in r.stderr


def test_create_dry_run_changes_nothing(run: Any, any_dynamodb: str, table: str) -> None:
    r = run("--backend", url(any_dynamodb, table), "table", "create", "--ttl", "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json == expected(
        table,
        status="MISSING",
        item_count=None,
        size_bytes=None,
        ttl={"status": "ENABLED", "attribute": "ttl"},
        created=True,
        dry_run=True,
    )
    assert run("--backend", url(any_dynamodb, table), "table", "describe").exit_code == 3


# -- output --------------------------------------------------------------------------------------------------


def test_describe_plain_output(run: Any, dynamodb_endpoint: str, unique_name: str) -> None:
    b = url(dynamodb_endpoint, unique_name)
    try:
        assert run("--backend", b, "table", "create", "--read", "2", "--write", "3", "--ttl").exit_code == 0
        r = run("--backend", b, "table", "describe")
        assert r.exit_code == 0
        assert r.stdout == (
            f"table                     {unique_name}\n"
            "status                    ACTIVE\n"
            "billing_mode              PROVISIONED\n"
            "read_capacity             2\n"
            "write_capacity            3\n"
            "key_schema                id:S:HASH\n"
            "celery_compatible         true\n"
            "problems                  -\n"
            "item_count                0\n"
            "size_bytes                0\n"
            "ttl.status                ENABLED\n"
            "ttl.attribute             ttl\n"
            "item_sizes.sampled        0\n"
            "item_sizes.near_limit     0\n"
            "item_sizes.largest_bytes  -\n"
            "item_sizes.largest_key    -\n"
            "created                   -\n"
            "changed                   -\n"
            "dry_run                   -\n"
            "deleted                   -\n"
        )
    finally:
        drop(dynamodb_endpoint, unique_name)


# -- bad input: one line, the right exit code ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ("dynamodb://AKIAONLY@us-east-1/t", "an AWS access key needs its secret key"),
        ("dynamodb://@localhost/t", "a local endpoint needs a port"),
        ("dynamodb://@us-east-1/t?read=lots", "bad read='lots'"),
        ("dynamodb://@127.0.0.1:notaport/t", "malformed URL"),
        ("not a url", "not a URL"),
        ("dynamdb://@us-east-1/t", "did you mean 'dynamodb'?"),
    ],
)
def test_malformed_urls_are_exit_2(run: Any, backend: str, message: str) -> None:
    r = run("--backend", backend, "table", "describe")
    assert r.exit_code == 2
    assert message in r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--on-demand", "--read", "5"], "--on-demand and --read/--write exclude each other"),
        (["create", "--read", "0"], "invalid value for '--read'"),
        (["create", "--timeout", "soon"], "bad --timeout 'soon'"),
        (["ttl", "--enable", "--attribute", " "], "--attribute must not be empty"),
    ],
)
def test_bad_options_are_exit_2(run: Any, args: list[str], message: str) -> None:
    r = run("--backend", "dynamodb://@127.0.0.1:9/t", "table", *args)
    assert r.exit_code == 2
    assert message in r.stderr


@pytest.mark.parametrize(
    "args",
    [["delete", "", "--yes"], ["delete", " ", "--yes"], ["describe", ""], ["create", ""], ["ttl", "", "--disable"]],
)
def test_empty_table_name_is_exit_2_never_the_urls_table(run: Any, dynamodb_endpoint: str, args: list[str]) -> None:
    """An unset shell variable ("$TABLE") must not reach the table named in the backend URL."""
    name = f"t-empty-{uuid.uuid4().hex[:8]}"
    b = url(dynamodb_endpoint, name)
    assert run("--backend", b, "table", "create").exit_code == 0
    try:
        r = run("--backend", b, "table", *args)
        assert r.exit_code == 2
        assert r.stdout == ""
        assert r.stderr.startswith("error: the table name must not be empty\n")
        assert client(dynamodb_endpoint).describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE"
    finally:
        drop(dynamodb_endpoint, name)


def test_ttl_enable_and_disable_together_is_exit_2(run: Any, dynamodb_endpoint: str) -> None:
    r = run("--backend", url(dynamodb_endpoint), "table", "ttl", "--enable", "--disable")
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.startswith("error: --enable and --disable exclude each other\n")


def test_admin_returns_typed_descriptions(any_dynamodb: str, unique_name: str) -> None:
    """The contract of TableAdmin on every server: parsed value types, never DescribeTable dicts."""
    from taskctl.backends import table_admin
    from taskctl.backends.base import TableDescription, TableKey, TtlDescription
    from taskctl.config import Settings

    admin = table_admin(Settings(backend=url(any_dynamodb, unique_name, "?read=2&write=3&ttl_seconds=60")))
    try:
        assert (admin.defaults.table, admin.defaults.read, admin.defaults.write) == (unique_name, 2, 3)
        assert admin.create_table(unique_name, read=2, write=3, on_demand=False) is True
        assert admin.create_table(unique_name, read=2, write=3, on_demand=False) is False
        desc = admin.describe_table(unique_name)
        assert isinstance(desc, TableDescription)
        assert (desc.name, desc.status, desc.key_schema) == (unique_name, "ACTIVE", (TableKey("id", "HASH"),))
        assert (desc.attribute_types, desc.billing_mode, desc.read_capacity, desc.write_capacity) == (
            {"id": "S"}, "PROVISIONED", 2, 3,
        )  # fmt: skip
        assert (desc.item_count, desc.size_bytes, desc.on_demand) == (0, 0, False)
        assert desc.arn is not None and desc.arn.endswith(f":table/{unique_name}")
        assert desc.created is not None and desc.created.tzinfo is not None
        assert admin.describe_ttl(unique_name) == TtlDescription("DISABLED", None)
        assert admin.update_ttl(unique_name, enabled=True, attribute="ttl") is True
        assert admin.describe_ttl(unique_name) == TtlDescription("ENABLED", "ttl")
        assert admin.delete_table(unique_name).name == unique_name
    finally:
        admin.close()
        drop(any_dynamodb, unique_name)


def test_no_dynamodb_wire_shape_outside_its_adapter() -> None:
    """Operations read TableDescription/TtlDescription; DescribeTable's keys stay in backends/dynamodb*.py."""
    import pathlib

    pkg = pathlib.Path(__file__).resolve().parent.parent / "taskctl"
    wire = ("TableStatus", "KeySchema", "BillingModeSummary", "TimeToLiveStatus", "ProvisionedThroughput")
    offenders = [
        f"{path.relative_to(pkg)}: {key}"
        for path in pkg.rglob("*.py")
        if not path.name.startswith("dynamodb")
        for key in wire
        if key in path.read_text()
    ]
    assert offenders == []


def test_table_name_dynamodb_rejects_is_exit_2_one_line(run: Any, dynamodb_endpoint: str) -> None:
    r = run("--backend", url(dynamodb_endpoint), "table", "create", "no spaces allowed")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("error: cannot create table (table 'no spaces allowed' at dynamodb://@127.0.0.1:")
    assert "DynamoDB rejected the request" in r.stderr


def test_unreachable_endpoint_is_exit_5_within_seconds(run: Any) -> None:
    port = free_port()
    start = time.monotonic()
    r = run("--backend", f"dynamodb://AKIAX:topsecretvalue@127.0.0.1:{port}/t", "table", "describe")
    took = time.monotonic() - start
    assert r.exit_code == 5
    assert f'cannot connect (Could not connect to the endpoint URL: "http://127.0.0.1:{port}/")' in r.stderr
    assert "topsecretvalue" not in r.stderr + r.stdout
    assert "dynamodb://AKIAX:****@127.0.0.1" in r.stderr
    assert took < 8


def test_unreachable_endpoint_json_error_on_stderr(run: Any) -> None:
    r = run("--endpoint-url", f"http://127.0.0.1:{free_port()}", "table", "list", "-o", "json")
    assert r.exit_code == 5
    assert r.stdout == ""
    err = json.loads(r.stderr)["error"]
    assert (err["code"], err["exit_code"]) == ("unavailable", 5)
    assert err["message"].startswith("cannot list tables (dynamodb://): cannot connect")
    assert err["hint"]


def test_wrong_credentials_are_exit_5(run: Any, dynamodb_endpoint: str) -> None:
    """DynamoDB Local itself rejects an access key that is not alphanumeric (UnrecognizedClientException)."""
    port = dynamodb_endpoint.rsplit(":", 1)[1]
    r = run("--backend", f"dynamodb://not_a_key:wrongsecret@127.0.0.1:{port}/celery", "table", "describe")
    if "does not exist" in r.stderr:
        pytest.skip("this server accepts any access key (moto)")
    assert r.exit_code == 5
    assert "the credentials were not accepted: UnrecognizedClientException" in r.stderr
    assert "wrongsecret" not in r.stderr
    assert "hint: check the credentials" in r.stderr


def test_no_region_is_exit_2(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    r = run("--backend", "dynamodb://@/celery", "table", "describe")
    assert r.exit_code == 2
    assert "no AWS region configured" in r.stderr
    assert "hint: put the region in the URL" in r.stderr


def test_unknown_profile_is_exit_2(run: Any) -> None:
    r = run("--backend", "dynamodb://@us-east-1/celery", "--aws-profile", "nope", "table", "describe")
    assert r.exit_code == 2
    assert "nope" in r.stderr and "could not be found" in r.stderr


def test_endpoint_and_region_flags_override_the_url(run: Any, dynamodb_endpoint: str, unique_name: str) -> None:
    try:
        r = run(
            "--backend", f"dynamodb://@eu-west-1/{unique_name}", "--endpoint-url", dynamodb_endpoint,
            "--region", "us-east-1", "table", "create", "-o", "json",
        )  # fmt: skip
        assert r.exit_code == 0, r.stderr
        assert r.json["created"] is True
    finally:
        drop(dynamodb_endpoint, unique_name)


# -- start-up --------------------------------------------------------------------------------------------------

_PROBE = """
import sys
sys.argv = ["taskctl", *sys.argv[1:]]
try:
    from taskctl.cli import main
    main()
except SystemExit:
    pass
heavy = sorted(m for m in ("boto3", "botocore", "kombu") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["table", "--help"], ["table", "create", "--help"], ["--version"]])
def test_help_imports_neither_boto3_nor_kombu(args: list[str]) -> None:
    p = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "HEAVY=\n" in p.stderr, p.stderr
    assert "Usage: taskctl" in p.stdout or p.stdout.startswith("taskctl ")
