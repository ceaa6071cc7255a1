"""Size flags: messages near the broker's limit (`queue peek`, `queue stats`) and result items near DynamoDB's
400 KB item limit (`table describe`, `doctor`), against real RabbitMQ, Redis and DynamoDB Local."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from taskctl import backends
from taskctl.formats.message import build_task_message
from taskctl.queues.inspect import NEAR_LIMIT, rabbitmq_default_limit, size_note

KombuBroker = backends.load(backends.BROKER)
MiB = 1 << 20


@pytest.fixture
def queue(rabbitmq_url: str, unique_name: str) -> Iterator[tuple[Any, str]]:
    b = KombuBroker(rabbitmq_url)
    b.declare_queue(unique_name)
    yield b, unique_name
    b.delete_queue(unique_name)


def publish(b: Any, q: str, *bodies: int) -> list[str]:
    """One task message per size in BODIES, its one argument padded so the body is about that many bytes."""
    ids = []
    with b.publisher() as pub:
        for size in bodies:
            tid = str(uuid.uuid4())
            pub.publish(build_task_message("app.big", ["x" * size], {}, task_id=tid, queue=q), "", q)
            ids.append(tid)
        pub.flush()
    return ids


def server_version() -> str:
    req = urllib.request.Request("http://127.0.0.1:15672/api/overview")
    req.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest, the test server's login
    with urllib.request.urlopen(req, timeout=5) as resp:
        return str(json.load(resp)["rabbitmq_version"])


# -- the limit and the note, as pure functions ------------------------------------------------------------------


def test_rabbitmq_default_limit_follows_the_release_that_changed_it() -> None:
    assert rabbitmq_default_limit("3.10.8") == 128 * MiB
    assert rabbitmq_default_limit("3.8.0") == 128 * MiB
    assert rabbitmq_default_limit("4.0.5") == 16 * MiB
    assert rabbitmq_default_limit("4.1.0") == 16 * MiB
    # before 3.8 the default was 2 GiB; too old (and a version string that is not one) is "unknown", not a guess
    assert rabbitmq_default_limit("3.7.28") is None
    assert rabbitmq_default_limit(None) is None
    assert rabbitmq_default_limit("rabbit") is None


def test_size_note_from_ninety_percent_of_the_limit() -> None:
    limit = 1000 * 1024
    assert size_note(int(limit * NEAR_LIMIT) - 1, limit) is None
    assert size_note(int(limit * NEAR_LIMIT) + 1, limit) == "near the broker's limit: 900.0 KiB, 90% of 1000.0 KiB"
    assert size_note(limit + 1, limit) is not None and size_note(limit + 1, limit).startswith("over")  # type: ignore[union-attr]
    assert size_note(10**9, None) is None


# -- queue peek / queue stats on RabbitMQ ------------------------------------------------------------------------


def test_peek_flags_a_message_near_the_given_limit(queue: Any, rabbitmq_url: str, run: Any) -> None:
    b, q = queue
    small, big = publish(b, q, 1_000, 960_000)
    r = run("queue", "peek", q, "--max-message-size", "1MiB", "-o", "json", "--broker", rabbitmq_url)
    assert r.exit_code == 0, r.stderr
    by_id = {m["task_id"]: m for m in r.json}
    assert by_id[big]["near_limit"] is True and by_id[small]["near_limit"] is False
    assert by_id[big]["size"] > 0.9 * MiB and by_id[small]["size"] < 2_000
    assert {m["size_limit"] for m in r.json} == {MiB}
    assert "1 of 2 messages are at least 90% of the broker's 1.0 MiB limit" in r.stderr
    # the messages are still there, in order, for the workers
    assert b.stats(q).messages == 2
    r = run("queue", "peek", q, "--max-message-size", "1MiB", "--broker", rabbitmq_url)
    assert r.exit_code == 0, r.stderr
    big_line = next(line for line in r.stdout.splitlines() if big in line)
    small_line = next(line for line in r.stdout.splitlines() if small in line)
    assert "near the broker's limit" in big_line and "of 1.0 MiB" in big_line
    assert "limit" not in small_line


def test_peek_and_stats_use_the_servers_default_limit(queue: Any, rabbitmq_url: str, run: Any) -> None:
    """The management API does not expose max_message_size: the limit is the default of the server's version."""
    b, q = queue
    publish(b, q, 100)
    version = server_version()
    expected = rabbitmq_default_limit(version)
    r = run("queue", "peek", q, "-o", "json", "--broker", rabbitmq_url)
    assert r.exit_code == 0, r.stderr
    assert [(m["size_limit"], m["near_limit"]) for m in r.json] == [(expected, False)]
    r = run("queue", "stats", q, "-o", "json", "--broker", rabbitmq_url)
    assert r.exit_code == 0, r.stderr
    assert r.json == [
        {
            "queue": q,
            "messages": 1,
            "consumers": 0,
            "note": None,
            "size_limit": expected,
            "size_limit_source": f"RabbitMQ {version} default" if expected else None,
            "in_flight": None,
            "delayed": None,
            "dead_letter_queue": None,
            "max_receive_count": None,
        }
    ]
    r = run("queue", "stats", q, "--max-message-size", "16MiB", "-o", "json", "--broker", rabbitmq_url)
    assert (r.json[0]["size_limit"], r.json[0]["size_limit_source"]) == (16 * MiB, "--max-message-size")
    r = run("queue", "stats", q, "--broker", rabbitmq_url)
    assert r.stdout.splitlines()[0].split() == [
        "QUEUE",
        "MESSAGES",
        "CONSUMERS",
        "IN_FLIGHT",
        "DELAYED",
        "DEAD_LETTER_QUEUE",
        "SIZE_LIMIT",
        "NOTE",
    ]


def test_limit_unknown_when_the_management_api_is_unreachable(queue: Any, rabbitmq_url: str, run: Any) -> None:
    """The limit is a hint: stats still answers, with size_limit null."""
    b, q = queue
    publish(b, q, 100)
    argv = ("--broker", rabbitmq_url, "--management-url", "http://127.0.0.1:1")
    r = run("queue", "stats", q, "-o", "json", *argv)
    assert r.exit_code == 0, r.stderr
    assert (r.json[0]["messages"], r.json[0]["size_limit"], r.json[0]["size_limit_source"]) == (1, None, None)


def test_stats_on_redis_has_no_limit_to_flag(redis_url: str, unique_name: str, run: Any) -> None:
    r = run("queue", "stats", unique_name, "-o", "json", "--broker", redis_url)
    assert r.exit_code == 0, r.stderr
    assert (r.json[0]["size_limit"], r.json[0]["note"]) == (None, "empty or missing")


def test_bad_max_message_size_is_a_usage_error(rabbitmq_url: str, run: Any) -> None:
    r = run("queue", "stats", "celery", "--max-message-size", "lots", "--broker", rabbitmq_url)
    assert r.exit_code == 2
    assert r.stderr.startswith("error: bad --max-message-size 'lots'") and "Traceback" not in r.stderr
    r = run("queue", "peek", "celery", "--max-message-size", "0", "--broker", rabbitmq_url)
    assert (r.exit_code, r.stderr.splitlines()[0]) == (2, "error: --max-message-size must be more than 0")


# -- DynamoDB's 400 KB item limit ----------------------------------------------------------------------------------


@pytest.fixture
def table(dynamodb_endpoint: str, unique_name: str) -> Iterator[tuple[Any, str]]:
    """A Celery-shaped table of this test's own on DynamoDB Local; its backend URL."""
    import boto3

    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1")
    client.create_table(
        TableName=unique_name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    port = dynamodb_endpoint.rsplit(":", 1)[1]
    yield client, f"dynamodb://@127.0.0.1:{port}/{unique_name}"
    client.delete_table(TableName=unique_name)


def put_result(client: Any, table: str, size: int, state: str = "SUCCESS") -> str:
    """A Celery result whose stored value is about SIZE bytes; its task id."""
    tid = str(uuid.uuid4())
    meta = {"status": state, "result": "x" * size, "traceback": None, "children": [], "date_done": None}
    meta["task_id"] = tid
    client.put_item(
        TableName=table,
        Item={
            "id": {"S": f"b'celery-task-meta-{tid}'"},
            "result": {"B": json.dumps(meta).encode()},
            "timestamp": {"N": "1700000000.5"},
        },
    )
    return tid


def test_describe_counts_sampled_items_near_the_item_limit(table: Any, run: Any) -> None:
    client, url = table
    name = url.rsplit("/", 1)[1]
    big = put_result(client, name, 360_000)
    for _ in range(5):
        put_result(client, name, 100)
    r = run("--backend", url, "table", "describe", "-o", "json")
    assert r.exit_code == 0, r.stderr
    sizes = r.json["item_sizes"]
    assert (sizes["sampled"], sizes["near_limit"], sizes["largest_key"]) == (6, 1, f"celery-task-meta-{big}")
    assert 360_000 < sizes["largest_bytes"] < 361_000
    assert r.json["celery_compatible"] is True  # a large item is a warning, not an incompatible table
    assert "1 of 6 sampled items are at least 300.0 KiB" in r.stderr and "400.0 KiB" in r.stderr
    # the plain view shows the same numbers
    r = run("--backend", url, "table", "describe")
    assert "item_sizes.near_limit" in r.stdout and f"celery-task-meta-{big}" in r.stdout
    # --sample bounds what is read; 0 reads nothing and says so with nulls
    r = run("--backend", url, "table", "describe", "--sample", "2", "-o", "json")
    assert r.json["item_sizes"]["sampled"] == 2
    r = run("--backend", url, "table", "describe", "--sample", "0", "-o", "json")
    assert r.json["item_sizes"] == {"sampled": None, "near_limit": None, "largest_bytes": None, "largest_key": None}
    assert r.stderr == ""


def test_item_size_is_counted_as_dynamodb_counts_it(table: Any) -> None:
    """The size describe reports is the one DynamoDB enforces: an item of exactly 400 KB is stored, one byte
    more is refused, by DynamoDB Local itself."""
    from taskctl.backends.dynamodb import item_size

    client, url = table
    name = url.rsplit("/", 1)[1]
    item = {"id": {"S": "b'celery-task-meta-x'"}, "result": {"B": b""}, "timestamp": {"N": "1700000000.5"}}
    item["result"]["B"] = b"x" * (400 * 1024 - item_size(item))
    assert item_size(item) == 400 * 1024
    client.put_item(TableName=name, Item=item)
    item["result"]["B"] += b"x"
    with pytest.raises(client.exceptions.ClientError, match="size"):
        client.put_item(TableName=name, Item=item)


def test_doctor_warns_about_items_near_the_limit(table: Any, run: Any) -> None:
    client, url = table
    name = url.rsplit("/", 1)[1]
    put_result(client, name, 100)
    r = run("--backend", url, "--broker", "memory://", "doctor", "-o", "json")
    checks = {c["name"]: c for c in r.json}
    assert checks["table-items"]["status"] == "pass"
    assert checks["table-items"]["detail"].startswith("none of 1 sampled items near the 400 KB item limit")
    big = put_result(client, name, 350_000)
    r = run("--backend", url, "--broker", "memory://", "doctor", "-o", "json")
    checks = {c["name"]: c for c in r.json}
    assert checks["table-items"]["status"] == "warn"
    assert checks["table-items"]["detail"].startswith("1 of 2 sampled items are at least 300.0 KiB")
    assert big in checks["table-items"]["detail"] and "result_compression" in checks["table-items"]["hint"]


# -- the state filter DynamoDB applies on its side ---------------------------------------------------------------


@pytest.fixture
def any_table(any_dynamodb: str, unique_name: str) -> Iterator[tuple[Any, str]]:
    """As ``table``, on DynamoDB Local and on moto."""
    import boto3

    client = boto3.client("dynamodb", endpoint_url=any_dynamodb, region_name="us-east-1")
    client.create_table(
        TableName=unique_name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    port = any_dynamodb.rsplit(":", 1)[1]
    yield client, f"dynamodb://@127.0.0.1:{port}/{unique_name}"
    client.delete_table(TableName=unique_name)


def test_value_filter_is_used_only_where_the_server_gets_it_right(
    any_table: Any, request: pytest.FixtureRequest
) -> None:
    """DynamoDB Local filters binary values as DynamoDB does, so the store lets it; moto matches them base64
    encoded (a filter on "FAILURE" would drop every item), so there the store filters nothing and loses nothing."""
    from taskctl.backends.base import ValueHint
    from taskctl.backends.dynamodb_store import DynamoDBResultStore

    client, url = any_table
    name = url.rsplit("/", 1)[1]
    failed = put_result(client, name, 10, state="FAILURE")
    for _ in range(3):
        put_result(client, name, 10)
    store = DynamoDBResultStore.from_url(url)
    try:
        got = {i.key for i in store.scan(["celery-task-meta-"], values=ValueHint(contains=(b"FAILURE",)))}
    finally:
        store.close()
    assert f"celery-task-meta-{failed}" in got
    server = request.node.callspec.params["any_dynamodb"]
    assert len(got) == {"dynamodb-local": 1, "moto": 4}[server]


def test_state_filter_on_the_server_keeps_what_it_cannot_judge(any_table: Any, run: Any) -> None:
    """`result list --state FAILURE` lets DynamoDB drop values without the state's text, but keeps compressed
    values (whose text cannot be searched) and string values: the client still checks each one."""
    import zlib

    client, url = any_table
    name = url.rsplit("/", 1)[1]
    failed = put_result(client, name, 10, state="FAILURE")
    put_result(client, name, 10, state="SUCCESS")
    comp = str(uuid.uuid4())
    meta = json.dumps({"status": "FAILURE", "result": None, "task_id": comp, "date_done": None}).encode()
    value = b"\x00celery-compressed\x00application/x-gzip\x00" + zlib.compress(meta)
    client.put_item(TableName=name, Item={"id": {"S": f"b'celery-task-meta-{comp}'"}, "result": {"B": value}})
    text = str(uuid.uuid4())
    meta = json.dumps({"status": "FAILURE", "result": None, "task_id": text, "date_done": None})
    client.put_item(TableName=name, Item={"id": {"S": f"b'celery-task-meta-{text}'"}, "result": {"S": meta}})
    r = run("--backend", url, "result", "list", "--state", "FAILURE", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert sorted(x["task_id"] for x in r.json) == sorted([failed, comp, text])
    r = run("--backend", url, "result", "list", "--state", "SUCCESS", "-o", "json")
    assert [x["state"] for x in r.json] == ["SUCCESS"]


def test_larger_than_is_filtered_by_dynamodb_on_the_stored_size(table: Any, run: Any) -> None:
    """`result list --larger-than 300KiB` finds the results near the item limit; DynamoDB drops the small binary
    values on its side, and a string value (which it cannot size as taskctl does) is kept and sized by taskctl."""
    client, url = table
    name = url.rsplit("/", 1)[1]
    big = put_result(client, name, 350_000)
    put_result(client, name, 100)
    text = str(uuid.uuid4())
    meta = {"status": "SUCCESS", "result": "y" * 320_000, "task_id": text, "date_done": None}
    client.put_item(
        TableName=name, Item={"id": {"S": f"b'celery-task-meta-{text}'"}, "result": {"S": json.dumps(meta)}}
    )
    r = run("--backend", url, "result", "list", "--larger-than", "300KiB", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert sorted(x["task_id"] for x in r.json) == sorted([big, text])
    assert all(x["size"] > 300 * 1024 for x in r.json)
    r = run("--backend", url, "result", "list", "--larger-than", "340KiB", "--state", "SUCCESS", "-o", "json")
    assert [x["task_id"] for x in r.json] == [big]
