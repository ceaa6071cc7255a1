"""Result stores (one contract, every backend) and the `result` commands end to end on hand-written meta.

Real servers: DynamoDB Local and moto's server (contract tests run on both), Redis on 127.0.0.1, the file
backend in tmp_path. The meta below is byte-for-byte what Celery writes (celery-formats §1.6).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from taskctl import config, results
from taskctl.backends import result_store
from taskctl.backends.base import StoredItem
from taskctl.formats import result as R


def meta(task_id: str, status: str = "SUCCESS", result: Any = 1, **extra: Any) -> bytes:
    """Task meta in Celery's key order, JSON as kombu writes it."""
    m: dict[str, Any] = {
        "status": status,
        "result": result,
        "traceback": extra.pop("traceback", None),
        "children": extra.pop("children", []),
        "date_done": extra.pop("date_done", "2026-11-22T01:30:54.472084+00:00" if status in R.READY_STATES else None),
    }
    m.update(extra)
    m["task_id"] = task_id
    return json.dumps(m).encode()


def child(*ids: str) -> list[Any]:
    return [[[i, None], None] for i in ids]


def tid() -> str:
    return str(uuid.uuid4())


# -- stores: one contract, every backend ------------------------------------------------------------------------


@contextmanager
def table_at(endpoint: str, name: str) -> Iterator[tuple[str, str]]:
    import boto3

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        yield endpoint, name
    finally:
        client.delete_table(TableName=name)


@pytest.fixture
def ddb_table(any_dynamodb: str, unique_name: str) -> Iterator[tuple[str, str]]:
    with table_at(any_dynamodb, unique_name) as t:
        yield t


def ddb_url(endpoint: str, table: str, query: str = "") -> str:
    return f"dynamodb://@localhost:{endpoint.rsplit(':', 1)[1]}/{table}{query}"


@pytest.fixture(params=["file", "redis", "dynamodb-local", "moto"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[tuple[str, str]]:
    """(backend URL, key prefix) for each store kind."""
    if request.param == "file":
        d = tmp_path / "results"
        d.mkdir()
        yield f"file://{d}", ""
    elif request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = f"tc{uuid.uuid4().hex[:8]}:"
        yield url, prefix
        import redis

        client = redis.Redis.from_url(url)
        for k in client.scan_iter(match=f"{prefix}*"):
            client.delete(k)
    else:
        endpoint = request.getfixturevalue("dynamodb_servers").get(request.param)
        if endpoint is None:
            pytest.skip(f"{request.param} not available")
        with table_at(endpoint, unique_name) as (ep, table):
            yield ddb_url(ep, table), ""


def test_store_contract(store_url: tuple[str, str]) -> None:
    url, prefix = store_url
    store = result_store(config.resolve({"backend": url}))
    keys = [f"{prefix}celery-task-meta-{i:04d}" for i in range(250)]  # more than one batch everywhere
    try:
        for k in keys[:3]:
            store.put(k, meta(k))
        assert set(store.get_many([*keys[:3], f"{prefix}celery-task-meta-nope"])) == set(keys[:3])
        for k in keys[3:]:
            store.put(k, b"x")
        got = store.get_many(keys)
        assert len(got) == 250 and got[keys[0]].value == meta(keys[0]) and got[keys[0]].key == keys[0]
        store.put(f"{prefix}celery-taskset-meta-g1", b'{"result": [["g1", null], []]}')
        scanned = {i.key for i in store.scan([f"{prefix}celery-task-meta-"])}
        assert scanned == set(keys)
        assert [i.key for i in store.scan([f"{prefix}celery-taskset-meta-"])] == [f"{prefix}celery-taskset-meta-g1"]
        store.delete_many([*keys[:200], f"{prefix}celery-task-meta-nope"])
        assert set(store.get_many(keys)) == set(keys[200:])
        store.delete_many(keys[:200])  # idempotent
        store.delete_many([*keys[200:], f"{prefix}celery-taskset-meta-g1"])
        assert store.get_many(keys) == {}
    finally:
        store.close()


def test_result_store_contract_is_explicit_keywords_and_declared_capabilities() -> None:
    """Adapters are built by the registry from keyword arguments (no Settings object reaches them), and every
    capability an operation asks for is declared on each class."""
    import inspect

    from taskctl import backends

    for dotted in backends.RESULT_STORES.values():
        cls = backends.load(dotted)
        params = inspect.signature(cls.from_url).parameters
        assert list(params)[:1] == ["url"], dotted
        for name in ("endpoint_url", "region", "profile", "transport_options"):
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY and params[name].default is None, dotted
        assert not hasattr(cls, "from_settings"), dotted
        for cap in ("supports_ttl", "supports_scan", "supports_pubsub"):
            assert isinstance(getattr(cls, cap), bool), (dotted, cap)
        assert isinstance(cls.batch_get_size, int) and cls.batch_get_size > 0
        source = inspect.getsource(inspect.getmodule(cls))  # type: ignore[arg-type]
        assert "settings." not in source, dotted


def test_registry_passes_endpoint_and_region_to_the_dynamodb_store(ddb_table: tuple[str, str]) -> None:
    """--endpoint-url and --region reach the adapter as keywords and override the URL's own."""
    endpoint, table = ddb_table
    settings = config.resolve(
        {"backend": f"dynamodb://@localhost:1/{table}", "endpoint_url": endpoint, "region": "us-east-1"}
    )
    store = result_store(settings)
    try:
        store.put("celery-task-meta-kw", meta("kw"))
        assert set(store.get_many(["celery-task-meta-kw"])) == {"celery-task-meta-kw"}
        assert store.client.meta.endpoint_url == endpoint  # type: ignore[attr-defined]
    finally:
        store.close()
    store = result_store(config.resolve({"backend": f"dynamodb://@eu-west-3/{table}", "endpoint_url": endpoint}))
    assert store.client.meta.region_name == "eu-west-3"  # type: ignore[attr-defined]
    store.close()


def test_dynamodb_items_are_celerys_layout(ddb_table: tuple[str, str]) -> None:
    import boto3

    endpoint, table = ddb_table
    store = result_store(config.resolve({"backend": ddb_url(endpoint, table, "?ttl_seconds=3600")}))
    before = time.time()
    store.put("celery-task-meta-abc", b'{"status": "SUCCESS"}')
    raw = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1").get_item(
        TableName=table, Key={"id": {"S": "b'celery-task-meta-abc'"}}
    )["Item"]
    assert set(raw) == {"id", "result", "timestamp", "ttl"}
    assert raw["result"] == {"B": b'{"status": "SUCCESS"}'}
    assert before <= float(raw["timestamp"]["N"]) <= time.time()
    assert abs(int(raw["ttl"]["N"]) - (before + 3600)) <= 2
    item = store.get_many(["celery-task-meta-abc"])["celery-task-meta-abc"]
    assert item.expires_at == float(raw["ttl"]["N"]) and item.timestamp == float(raw["timestamp"]["N"])


class PartialClient:
    """A fault-injecting wrapper: DynamoDB Local never returns UnprocessedKeys/UnprocessedItems, so the first
    N batch calls forward only half of their keys to the real server and hand the rest back as unprocessed."""

    def __init__(self, client: Any, faults: int) -> None:
        self.client, self.faults, self.calls = client, faults, {"get": 0, "write": 0}

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls["get"] += 1
        ((table, req),) = RequestItems.items()
        if self.faults <= 0 or len(req["Keys"]) < 2:
            return self.client.batch_get_item(RequestItems=RequestItems)  # type: ignore[no-any-return]
        self.faults -= 1
        half = len(req["Keys"]) // 2
        resp = self.client.batch_get_item(RequestItems={table: {**req, "Keys": req["Keys"][:half]}})
        resp["UnprocessedKeys"] = {table: {**req, "Keys": req["Keys"][half:]}}
        return resp  # type: ignore[no-any-return]

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls["write"] += 1
        ((table, reqs),) = RequestItems.items()
        if self.faults <= 0 or len(reqs) < 2:
            return self.client.batch_write_item(RequestItems=RequestItems)  # type: ignore[no-any-return]
        self.faults -= 1
        half = len(reqs) // 2
        resp = self.client.batch_write_item(RequestItems={table: reqs[:half]})
        resp["UnprocessedItems"] = {table: reqs[half:]}
        return resp  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_dynamodb_unprocessed_keys_and_items_are_retried_until_done(ddb_table: tuple[str, str]) -> None:
    """Stubbed replies (see PartialClient): no local server returns UnprocessedKeys/UnprocessedItems."""
    from taskctl.backends.dynamodb_store import DynamoDBResultStore

    endpoint, table = ddb_table
    real = result_store(config.resolve({"backend": ddb_url(endpoint, table)}))
    keys = [f"celery-task-meta-{i}" for i in range(130)]
    for k in keys:
        real.put(k, b"{}")
    sleeps: list[float] = []
    flaky = PartialClient(real.client, faults=6)  # type: ignore[attr-defined]
    store = DynamoDBResultStore(ddb_url(endpoint, table), flaky, table, sleep=sleeps.append)
    assert set(store.get_many(keys)) == set(keys)
    assert flaky.calls["get"] > 2 and sleeps  # retried, with backoff
    flaky.faults = 6
    store.delete_many(keys)
    assert real.get_many(keys) == {}
    assert flaky.calls["write"] > 6


# -- show ------------------------------------------------------------------------------------------------------


@pytest.fixture
def fstore(tmp_path: Path) -> tuple[Path, str]:
    d = tmp_path / "results"
    d.mkdir()
    return d, f"file://{d}"


def put(d: Path, task_id: str, raw: bytes, prefix: str = "") -> None:
    (d / f"{prefix}celery-task-meta-{task_id}").write_bytes(raw)


def by_level(rows: list[Any]) -> list[Any]:
    """Tree rows in a stable order (the streamed order is level by level, each level as the walk met it)."""
    return sorted(rows, key=lambda r: (r[0], repr(r[1:])))


def r_size(d: Path, task_id: str) -> int:
    return len((d / f"celery-task-meta-{task_id}").read_bytes())


def test_show_json_fields_exactly(run: Any, fstore: tuple[Path, str]) -> None:
    d, url = fstore
    a, b, g = tid(), tid(), tid()
    put(
        d,
        a,
        meta(
            a,
            "FAILURE",
            {"exc_type": "ValueError", "exc_message": ["bad 2"], "exc_module": "builtins"},
            traceback="Traceback...\nValueError: bad 2\n",
            children=child(b),
            group_id=g,
            parent_id=b,
            name="app.fail",
            args=[2],
            kwargs={"k": "v"},
            worker="celery@h",
            retries=0,
            queue="celery",
        ),
    )
    r = run("--backend", url, "-o", "json", "result", "show", a)
    assert r.exit_code == 0, r.stderr
    assert r.json == [
        {
            "task_id": a,
            "state": "FAILURE",
            "found": True,
            "name": "app.fail",
            "args": [2],
            "kwargs": {"k": "v"},
            "result": None,
            "exception": {"type": "ValueError", "message": "bad 2", "module": "builtins"},
            "traceback": "Traceback...\nValueError: bad 2\n",
            "date_done": "2026-11-22T01:30:54.472084+00:00",
            "worker": "celery@h",
            "retries": 0,
            "queue": "celery",
            "parent_id": b,
            "group_id": g,
            "children": [b],
            "expired": False,
            "serializer": "json",
            "compression": None,
            "undecodable": None,
            "problem": None,
            "size": len((d / f"celery-task-meta-{a}").read_bytes()),
        }
    ]
    r = run("--backend", url, "result", "show", a, "-o", "plain")
    assert r.stdout.splitlines()[1].split()[:5] == [a, "FAILURE", str(r_size(d, a)), "app.fail", "ValueError:"]
    assert "ValueError: bad 2" in r.stdout


def test_show_unknown_and_missing_ok(run: Any, fstore: tuple[Path, str]) -> None:
    _, url = fstore
    r = run("--backend", url, "-o", "json", "result", "show", "nope")
    assert r.exit_code == 3 and r.json[0]["found"] is False and r.json[0]["state"] == "PENDING"
    assert run("--backend", url, "result", "show", "nope", "--missing-ok").exit_code == 0
    assert run("--backend", url, "result", "show", "-", input="\n").exit_code == 2


def test_malicious_pickle_is_shown_without_running(run: Any, fstore: tuple[Path, str], tmp_path: Path) -> None:
    d, url = fstore
    marker = tmp_path / "marker"

    class Evil:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {marker}",))

    a = tid()
    put(
        d,
        a,
        pickle.dumps(
            {
                "status": "SUCCESS",
                "result": Evil(),
                "traceback": None,
                "children": [],
                "date_done": "2026-11-22T01:30:54+00:00",
                "task_id": a,
            },
            protocol=4,
        ),
    )
    r = run("--backend", url, "-o", "json", "result", "show", a)  # no --serializer: sniffed
    assert r.exit_code == 0, r.stderr
    row = r.json[0]
    assert row["serializer"] == "pickle"
    assert row["result"] == {"__pickle_global__": f"{os.system.__module__}.system", "args": [f"touch {marker}"]}
    r = run("--backend", url, "result", "show", a, "--serializer", "pickle", "-o", "plain")
    assert f'pickle: {{"__pickle_global__": "{os.system.__module__}.system"' in r.stdout
    assert not marker.exists()

    b = tid()
    put(
        d,
        b,
        pickle.dumps(
            {"status": "SUCCESS", "result": {1, 2}, "traceback": None, "children": [], "date_done": None, "task_id": b}
        ),
    )
    r = run("--backend", url, "-o", "json", "result", "show", b, "--unsafe-pickle", "--serializer", "pickle")
    assert r.json[0]["result"] == [1, 2]


def test_undecodable_values_are_reported(run: Any, fstore: tuple[Path, str]) -> None:
    d, url = fstore
    a = tid()
    put(d, a, b"\x00celery-compressed\x00application/x-gzip\x00garbage")
    r = run("--backend", url, "-o", "json", "result", "show", a)
    assert r.exit_code == 0
    row = r.json[0]
    assert (row["state"], row["found"]) == ("UNKNOWN", True)
    assert row["undecodable"]["size"] == 45 and row["undecodable"]["error"].startswith("cannot decompress")
    r = run("--backend", url, "-o", "plain", "result", "show", a)
    assert "<undecodable: 45 bytes," in r.stdout


def test_key_prefix_both_celery_spellings(run: Any, fstore: tuple[Path, str]) -> None:
    d, url = fstore
    new, old = tid(), tid()
    put(d, new, meta(new), prefix="app:")  # Celery 5.5+
    put(d, old, meta(old), prefix="app:_")  # Celery <= 5.4
    r = run("--backend", url, "-o", "json", "result", "show", new, old, "--key-prefix", "app:")
    assert r.exit_code == 0 and [x["found"] for x in r.json] == [True, True]
    assert run("--backend", url, "result", "show", new).exit_code == 3  # without the prefix: not found


def test_expired_dynamodb_items(run: Any, dynamodb_servers: Any, unique_name: str) -> None:
    """moto keeps expired items readable, as real DynamoDB does for up to two days (DynamoDB Local sweeps them)."""
    import boto3

    endpoint = dynamodb_servers.get("moto")
    if endpoint is None:
        pytest.skip("moto not available")
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    client.create_table(
        TableName=unique_name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        a, b = tid(), tid()
        for i, ttl in ((a, time.time() - 60), (b, time.time() + 3600)):
            client.put_item(
                TableName=unique_name,
                Item={
                    "id": {"S": f"b'celery-task-meta-{i}'"},
                    "result": {"B": meta(i)},
                    "timestamp": {"N": str(time.time())},
                    "ttl": {"N": str(int(ttl))},
                },
            )
        r = run("--backend", ddb_url(endpoint, unique_name), "-o", "json", "result", "show", a, b)
        assert [x["expired"] for x in r.json] == [True, False]
        r = run("--backend", ddb_url(endpoint, unique_name), "-o", "plain", "result", "show", a)
        assert "SUCCESS (expired)" in r.stdout
    finally:
        client.delete_table(TableName=unique_name)


# -- tree ------------------------------------------------------------------------------------------------------


def test_tree_cycles_self_references_and_missing_nodes_never_loop(run: Any, fstore: tuple[Path, str]) -> None:
    d, url = fstore
    a, b, c, gone, g = "a", "b", "c", "gone", "g1"
    put(
        d,
        a,
        meta(
            a,
            "RETRY",
            {"exc_type": "ValueError", "exc_message": ["try again"], "exc_module": "builtins"},
            children=[*child(a, b), [[g, None], child(c, gone)]],
        ),
    )
    put(d, b, meta(b, children=child(c)))
    put(
        d,
        c,
        meta(c, "FAILURE", {"exc_type": "KeyError", "exc_message": ["k"], "exc_module": "builtins"}, children=child(a)),
    )
    r = run("--backend", url, "-o", "json", "result", "tree", a)
    assert r.exit_code == 0, r.stderr
    doc = r.json
    assert (doc["task_id"], doc["state"]) == (a, "RETRY")
    kids = doc["children"]
    assert (kids[0]["task_id"], kids[0]["cycle"], kids[0]["children"]) == (a, True, [])  # the retry self-loop
    # breadth first: c is expanded where it is first met (in the group, depth 2), and only referenced under b
    assert kids[1]["task_id"] == b
    assert [(x["task_id"], x["repeat"], x["children"]) for x in kids[1]["children"]] == [(c, True, [])]
    grp = kids[2]
    assert grp["group_id"] == g and [x["task_id"] for x in grp["children"]] == [c, gone]
    full_c = grp["children"][0]
    assert (full_c["state"], full_c["exception"]["message"], full_c["repeat"]) == ("FAILURE", "'k'", False)
    assert [(x["task_id"], x["cycle"]) for x in full_c["children"]] == [(a, True)]  # c -> a closes a cycle
    assert (grp["children"][1]["found"], grp["children"][1]["state"]) == (False, "PENDING")

    r = run("--backend", url, "-o", "jsonl", "result", "tree", a)
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    # rows stream level by level, each after its parent
    assert by_level([(x["depth"], x["kind"], x["id"], x["parent"]) for x in rows]) == by_level(
        [
            (0, "task", a, None),
            (1, "task", a, a),
            (1, "task", b, a),
            (2, "task", c, b),
            (1, "group", g, a),
            (2, "task", c, g),
            (3, "task", a, c),
            (2, "task", gone, g),
        ]
    )
    r = run("--backend", url, "result", "tree", a, "--check")
    assert r.exit_code == 1
    r = run("--backend", url, "result", "tree", c, "--up")  # c -> no parent_id: c is the root
    assert r.exit_code == 0


def test_tree_table_view_has_states_and_counts(fstore: tuple[Path, str]) -> None:
    import io

    from taskctl import output

    d, url = fstore
    put(d, "r", meta("r", children=child("x", "y")))
    put(d, "x", meta("x", "FAILURE", {"exc_type": "ValueError", "exc_message": ["bad [2]"], "exc_module": "builtins"}))
    out = results.tree(config.resolve({"backend": url}), "r")
    buf = io.StringIO()
    output.Renderer("table", out=buf, width=200).render(out.value)
    text = buf.getvalue()
    assert "├── x FAILURE ValueError: bad [2]" in text
    assert "└── y PENDING (not stored)" in text
    assert text.splitlines()[-1] == "FAILURE 1  PENDING 1  SUCCESS 1"


def test_tree_reads_one_batch_per_level(ddb_table: tuple[str, str]) -> None:
    """Requests counted with a botocore event hook: one BatchGetItem per 100 nodes of a level."""
    from taskctl.backends import dynamodb

    endpoint, table = ddb_table
    url = ddb_url(endpoint, table)
    store = result_store(config.resolve({"backend": url}))
    level1 = [f"n1-{i}" for i in range(3)]
    level2 = [f"n2-{i}" for i in range(150)]
    store.put("celery-task-meta-root", meta("root", children=child(*level1)))
    for i, n in enumerate(level1):
        store.put(f"celery-task-meta-{n}", meta(n, children=child(*level2[i * 50 : (i + 1) * 50])))
    for n in level2:
        store.put(f"celery-task-meta-{n}", meta(n))
    calls: list[int] = []

    def hook(client: Any) -> None:
        client.meta.events.register("before-send.dynamodb.BatchGetItem", lambda **kw: calls.append(1))

    dynamodb.CLIENT_HOOKS.append(hook)
    try:
        out = results.tree(config.resolve({"backend": url}), "root")
        counts = out.value.counts  # the walk runs when the tree is first used (printed)
    finally:
        dynamodb.CLIENT_HOOKS.remove(hook)
    assert out.exit_code == 0 and counts == {"SUCCESS": 154}
    assert len(calls) == 1 + 1 + 2 and out.value.levels == 3


# -- list and forget by filters ---------------------------------------------------------------------------------


def iso(ago: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ago)).isoformat()


@pytest.fixture
def aged(fstore: tuple[Path, str]) -> tuple[str, dict[str, str]]:
    d, url = fstore
    ids = {"old_ok": tid(), "old_fail": tid(), "new_fail": tid(), "pending": tid()}
    exc = {"exc_type": "ValueError", "exc_message": ["x"], "exc_module": "builtins"}
    put(d, ids["old_ok"], meta(ids["old_ok"], date_done=iso(8 * 86400), name="app.a"))
    put(d, ids["old_fail"], meta(ids["old_fail"], "FAILURE", exc, date_done=iso(8 * 86400), name="app.b"))
    put(d, ids["new_fail"], meta(ids["new_fail"], "FAILURE", exc, date_done=iso(60), name="app.b"))
    put(d, ids["pending"], meta(ids["pending"], "STARTED", {"pid": 1, "hostname": "h"}, name="other.c"))
    (d / "celery-taskset-meta-g1").write_bytes(b'{"result": [["g1", null], [[["m1", null], null]]]}')
    return url, ids


def listed(run: Any, url: str, *args: str) -> list[str]:
    r = run("--backend", url, "-o", "json", "result", "list", *args)
    assert r.exit_code == 0, r.stderr
    return sorted(x["task_id"] for x in r.json)


def test_list_filters(run: Any, aged: tuple[str, dict[str, str]]) -> None:
    url, ids = aged
    assert listed(run, url) == sorted(ids.values())
    assert listed(run, url, "--state", "FAILURE") == sorted([ids["old_fail"], ids["new_fail"]])
    assert listed(run, url, "--state", "failure,started") == sorted([ids["old_fail"], ids["new_fail"], ids["pending"]])
    assert listed(run, url, "--older-than", "7d") == sorted([ids["old_ok"], ids["old_fail"]])
    # STARTED has no date_done: its age is the store's timestamp (here the file's mtime, just now)
    assert listed(run, url, "--newer-than", "1h") == sorted([ids["new_fail"], ids["pending"]])
    assert listed(run, url, "--task", "app.*", "--state", "FAILURE", "--newer-than", "1h") == [ids["new_fail"]]
    assert len(listed(run, url, "-n", "2")) == 2
    r = run("--backend", url, "-o", "json", "result", "list", "--kind", "group")
    assert r.json == [
        {
            "kind": "group",
            "group_id": "g1",
            "members": ["m1"],
            "chord_count": None,
            "stored_at": r.json[0]["stored_at"],
            "expired": False,
            "undecodable": None,
            "problem": None,
        }
    ]
    assert run("--backend", url, "result", "list", "--kind", "nope").exit_code == 2
    assert run("--backend", url, "result", "list", "--older-than", "soon").exit_code == 2


def test_forget_by_filters(run: Any, aged: tuple[str, dict[str, str]]) -> None:
    url, ids = aged
    args = ("--backend", url, "-o", "json", "result", "forget", "--state", "FAILURE", "--older-than", "7d")
    r = run(*args, "--dry-run")
    assert r.json == {
        "forgotten": [ids["old_fail"]],
        "missing": [],
        "dry_run": True,
        "groups": [],
        "kept": [],
        "count": 1,
        "earlier": 0,
        "truncated": False,
    }
    assert run(*args).exit_code == 2  # no --yes off a terminal
    r = run(*args, "--yes")
    assert r.exit_code == 0 and r.json["forgotten"] == [ids["old_fail"]]
    assert listed(run, url) == sorted([ids["old_ok"], ids["new_fail"], ids["pending"]])
    assert run("--backend", url, "result", "forget", "--yes").exit_code == 2  # neither ids nor filters


# -- wait ------------------------------------------------------------------------------------------------------


def test_wait_exit_codes(run: Any, fstore: tuple[Path, str]) -> None:
    d, url = fstore
    ok, bad, rev, slow = tid(), tid(), tid(), tid()
    put(d, ok, meta(ok, result={"x": 1}))
    put(d, bad, meta(bad, "FAILURE", {"exc_type": "ValueError", "exc_message": ["bad 2"], "exc_module": "builtins"}))
    put(d, rev, R.encode_payload(R.revoked_meta(rev)))
    put(d, slow, meta(slow, "STARTED", {"pid": 1, "hostname": "h"}))
    r = run("--backend", url, "-o", "json", "result", "wait", ok)
    assert r.exit_code == 0 and r.json["result"] == {"x": 1}
    r = run("--backend", url, "result", "wait", bad)
    assert r.exit_code == 1 and "ended FAILURE: ValueError: bad 2" in r.stderr
    assert run("--backend", url, "result", "wait", rev).exit_code == 1
    t0 = time.monotonic()
    r = run("--backend", url, "-o", "json", "result", "wait", slow, "--timeout", "0.4", "--interval", "0.1")
    assert r.exit_code == 124 and r.json["state"] == "STARTED" and time.monotonic() - t0 < 5
    assert run("--backend", url, "result", "wait", "nope", "--timeout", "0.2", "--interval", "0.1").exit_code == 124


def test_wait_follows_progress(fstore: tuple[Path, str]) -> None:
    d, url = fstore
    a = tid()
    steps = iter(
        [
            meta(a, "PROGRESS", {"current": 1, "total": 4}),
            meta(a, "PROGRESS", {"current": 3, "total": 4}),
            meta(a, result=7),
        ]
    )
    updates: list[dict[str, Any]] = []

    class Bar:
        def advance(self, n: int = 1) -> None:
            pass

        def update(self, **kw: Any) -> None:
            updates.append(kw)

    from contextlib import contextmanager

    from taskctl import events

    @contextmanager
    def progress(description: str, total: int | None) -> Iterator[Bar]:
        yield Bar()

    events.install(progress=progress)
    put(d, a, next(steps))
    out = results.wait(config.resolve({"backend": url}), a, interval=0.01, sleep=lambda s: put(d, a, next(steps)))
    assert out.exit_code == 0 and out.value.result == 7
    assert [(u.get("completed"), u.get("total")) for u in updates][:2] == [(1, 4), (3, 4)]


def test_stored_item_expiry_marks_expired() -> None:
    f = results.Fetched(
        StoredItem("celery-task-meta-a", meta("a"), expires_at=time.time() - 1), R.decode_payload(meta("a")), None
    )
    f.meta = R.parse_task_meta(f.decoded.value, "a")
    assert results.task_result("a", f).expired is True


def test_tree_chain_recorded_by_its_last_task_starts_at_the_first(run: Any, fstore: tuple[Path, str]) -> None:
    """A task that started a chain records the chain's last task with its first as parent (§1.5)."""
    d, url = fstore
    put(
        d,
        "root",
        meta("root", children=[[["last", [["first", None], None]], None], [["last2", [["gone", None], None]], None]]),
    )
    put(d, "first", meta("first", children=child("last")))
    put(d, "last", meta("last", parent_id="first"))
    put(d, "last2", meta("last2", parent_id="gone"))  # its chain's first task was forgotten already
    r = run("--backend", url, "-o", "jsonl", "result", "tree", "root")
    rows = [(x["depth"], x["id"], x["parent"], x["found"]) for x in map(json.loads, r.stdout.splitlines())]
    # rows stream level by level, each after its parent
    assert by_level(rows) == by_level(
        [
            (0, "root", None, True),
            (1, "first", "root", True),
            (2, "last", "first", True),
            (1, "gone", "root", False),
            (1, "last2", "root", True),
        ]
    )


# -- saved groups, state names, hostile values ----------------------------------------------------------------


def test_saved_group_can_be_walked_and_forgotten(run: Any, fstore: tuple[Path, str]) -> None:
    """A group id as `result list --kind group` shows it (GroupResult.save()) is a tree root for tree and forget."""
    d, url = fstore
    g, m1, m2, c1 = "grp-1", tid(), tid(), tid()
    (d / f"celery-taskset-meta-{g}").write_text(json.dumps({"result": [[g, None], child(m1, m2)]}))
    put(d, m1, meta(m1, children=child(c1)))
    put(d, c1, meta(c1, "FAILURE", {"exc_type": "ValueError", "exc_message": ["x"], "exc_module": "builtins"}))
    r = run("--backend", url, "-o", "json", "result", "list", "--kind", "group")
    assert [x["group_id"] for x in r.json] == [g]

    r = run("--backend", url, "-o", "jsonl", "result", "tree", g)
    assert r.exit_code == 0, r.stderr
    # rows stream level by level, each after its parent
    assert by_level(
        [(x["depth"], x["kind"], x["id"], x["found"]) for x in map(json.loads, r.stdout.splitlines())]
    ) == by_level(
        [
            (0, "group", g, None),
            (1, "task", m1, True),
            (2, "task", c1, True),
            (1, "task", m2, False),
        ]
    )
    assert run("--backend", url, "result", "tree", g, "--check").exit_code == 1
    assert run("--backend", url, "result", "tree", "no-such-id").exit_code == 3

    r = run("--backend", url, "-o", "json", "result", "forget", g, "--tree", "--yes")
    assert r.exit_code == 0, r.stderr
    assert r.json == {
        "forgotten": [m1, c1],
        "missing": [m2],
        "dry_run": False,
        "groups": [g],
        "kept": [],
        "count": 2,
        "earlier": 0,
        "truncated": False,
    }
    assert list(d.iterdir()) == []


def test_state_that_celery_never_sets_warns_with_the_closest(run: Any, aged: tuple[str, dict[str, str]]) -> None:
    url, _ = aged
    r = run("--backend", url, "-o", "json", "result", "list", "--state", "FAILED")
    assert r.exit_code == 0 and r.json == []  # custom states are legitimate: it still runs
    assert "warning: no Celery state FAILED; did you mean FAILURE?" in r.stderr
    r = run("--backend", url, "-o", "json", "result", "forget", "--state", "SUCESS", "--dry-run")
    assert r.exit_code == 0 and "did you mean SUCCESS?" in r.stderr
    r = run("--backend", url, "-o", "json", "result", "list", "--state", "PROGRESS")
    assert r.exit_code == 0 and r.stderr == ""  # a custom state with no near Celery name: nothing to say


def test_hostile_values_never_stop_list_or_forget(run: Any, fstore: tuple[Path, str]) -> None:
    """Exit codes: `result list` 0 with a problem on each unreadable row (and a warning counting them);
    `result forget --state` 0, forgetting every match and leaving what it cannot read."""
    d, url = fstore
    good = [tid() for _ in range(3)]
    raw, deep, inf = tid(), tid(), tid()
    put(d, good[0], meta(good[0]))
    put(d, raw, b"\x80\x81\xfe\xff\x00 not a pickle, not anything")
    put(d, good[1], meta(good[1]))
    put(d, deep, b'{"status": "SUCCESS", "result": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    put(d, inf, b'{"status": "SUCCESS", "result": 1e999}')
    put(d, good[2], meta(good[2]))

    for fmt in ("json", "jsonl", "plain"):
        r = run("--backend", url, "-o", fmt, "result", "list")
        assert r.exit_code == 0, r.stderr
        assert all(g in r.stdout for g in good) and all(b in r.stdout for b in (raw, deep, inf))
    r = run("--backend", url, "-o", "jsonl", "result", "list")
    by_id = {x["task_id"]: x for x in map(json.loads, r.stdout.splitlines())}
    assert all(by_id[g]["state"] == "SUCCESS" and by_id[g]["problem"] is None for g in good)
    assert by_id[raw]["state"] == "UNKNOWN" and by_id[raw]["problem"]
    assert by_id[deep]["state"] == "UNKNOWN" and "nested too deeply" in by_id[deep]["problem"]
    assert "2 stored values could not be read" in r.stderr

    r = run("--backend", url, "-o", "json", "result", "forget", "--state", "SUCCESS", "--yes")
    assert r.exit_code == 0, r.stderr
    assert set(good) <= set(r.json["forgotten"])
    left = {p.name.removeprefix("celery-task-meta-") for p in d.iterdir()}
    assert not left & set(good) and {raw, deep} <= left

    (d / "celery-taskset-meta-bad").write_bytes(b"\xff" * 10)
    (d / "celery-taskset-meta-good").write_text(json.dumps({"result": [["good", None], child(good[0])]}))
    r = run("--backend", url, "-o", "json", "result", "list", "--kind", "group")
    assert r.exit_code == 0, r.stderr
    groups = {x["group_id"]: x for x in r.json}
    assert groups["good"]["members"] == [good[0]] and groups["good"]["problem"] is None
    assert groups["bad"]["members"] == [] and groups["bad"]["problem"]


def test_dynamodb_numbers_out_of_float_range_are_read_as_unknown(ddb_table: tuple[str, str], run: Any) -> None:
    """Anyone who can write the table can store `timestamp`/`ttl`/`chord_count` of 1E+125: the item still reads."""
    import boto3

    endpoint, table = ddb_table
    tid = "22222222-2222-2222-2222-222222222222"
    boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1").put_item(
        TableName=table,
        Item={
            "id": {"S": f"b'celery-task-meta-{tid}'"},
            "result": {"B": b'{"status": "SUCCESS", "result": 1, "task_id": "%s"}' % tid.encode()},
            "timestamp": {"N": "1E+125"},
            "ttl": {"N": "-1E+125"},
            "chord_count": {"N": "9E+125"},
        },
    )
    item = result_store(config.resolve({"backend": ddb_url(endpoint, table)})).get_many([f"celery-task-meta-{tid}"])
    got = item[f"celery-task-meta-{tid}"]
    assert (got.timestamp, got.expires_at, got.chord_count) == (1e125, -1e125, None)
    r = run("--backend", ddb_url(endpoint, table), "result", "show", tid, "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json[0]["result"] == 1
