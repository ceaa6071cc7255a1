"""Bulk result work at scale: forgets that leave no orphans when interrupted, sharded and rate-limited scans,
resumable forgets, sizes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from taskctl import config, results
from taskctl.backends import result_store
from taskctl.errors import UnavailableError
from taskctl.formats.result import dynamodb_id
from tests.test_results import child, ddb_url, meta, table_at


@pytest.fixture
def local_table(dynamodb_servers: Any, unique_name: str) -> Iterator[tuple[str, str]]:
    endpoint = dynamodb_servers.get("dynamodb-local")
    if endpoint is None:
        pytest.skip("DynamoDB Local not available")
    with table_at(endpoint, unique_name) as t:
        yield t


def seed(endpoint: str, table: str, items: dict[str, bytes], *, stamp: float | None = None) -> None:
    """Write KEY -> VALUE in Celery's layout with batched writes (seeding through put() is 25x slower)."""
    import boto3

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    rows = [
        {
            "PutRequest": {
                "Item": {
                    "id": {"S": dynamodb_id(k)},
                    "result": {"B": v},
                    "timestamp": {"N": str(stamp if stamp is not None else time.time())},
                }
            }
        }
        for k, v in items.items()
    ]
    for i in range(0, len(rows), 25):
        req: dict[str, Any] = {table: rows[i : i + 25]}
        while req:
            req = client.batch_write_item(RequestItems=req).get("UnprocessedItems") or {}


def stored_keys(endpoint: str, table: str) -> set[str]:
    import boto3

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    out: set[str] = set()
    for page in client.get_paginator("scan").paginate(TableName=table):
        out.update(i["id"]["S"][2:-1] for i in page["Items"])
    return out


class FailAfter:
    """Wraps a botocore client: after N BatchWriteItem calls every further one fails as a lost connection would.

    A stub of the interruption only (the server is real and every other request reaches it): stopping DynamoDB
    Local at an exact batch cannot be timed from a test.
    """

    def __init__(self, client: Any, n: int) -> None:
        self._client = client
        self._left = n
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, **kw: Any) -> Any:
        from botocore.exceptions import EndpointConnectionError

        with self._lock:
            self._left -= 1
            if self._left < 0:
                raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        return self._client.batch_write_item(**kw)


def tree_ids(run: Any, url: str, root: str) -> set[str]:
    r = run("--backend", url, "-o", "jsonl", "result", "tree", root)
    return {json.loads(line)["id"] for line in r.stdout.splitlines()}


@pytest.mark.parametrize("batches", [30, 80])
def test_interrupted_tree_forget_leaves_no_orphans_and_a_rerun_finishes(
    run: Any, local_table: tuple[str, str], batches: int
) -> None:
    """A root, 20 children, 2,000 grandchildren; the forget loses its connection after BATCHES delete requests
    (30: among the grandchildren; 80: about when the grandchildren are done)."""
    endpoint, table = local_table
    url = ddb_url(endpoint, table)
    kids = [f"c{i}" for i in range(20)]
    items = {"celery-task-meta-root": meta("root", children=child(*kids))}
    for i, c in enumerate(kids):
        grand = [f"g{i}-{j}" for j in range(100)]
        items[f"celery-task-meta-{c}"] = meta(c, children=child(*grand))
        items.update({f"celery-task-meta-{g}": meta(g) for g in grand})
    seed(endpoint, table, items)
    settings = config.resolve({"backend": url})

    store = result_store(settings)
    store.client = FailAfter(store.client, batches)  # type: ignore[attr-defined]
    with pytest.raises(UnavailableError):
        results.forget(settings, ["root"], tree=True, store=store)

    left = stored_keys(endpoint, table)
    assert 0 < len(left) < len(items)
    assert "celery-task-meta-root" in left
    reachable = tree_ids(run, url, "root")
    assert {k.removeprefix("celery-task-meta-") for k in left} <= reachable

    r = run("--backend", url, "-o", "json", "result", "forget", "root", "--tree", "--yes")
    assert r.exit_code == 0, r.stderr
    assert len(r.json["forgotten"]) == len(left)
    assert len(r.json["missing"]) == len(items) - len(left)  # deleted by the first run, still named by the tree
    assert stored_keys(endpoint, table) == set()


# -- shares and pace ----------------------------------------------------------------------------------------------


def listed_ids(run: Any, url: str, *args: str) -> list[str]:
    r = run("--backend", url, "-o", "jsonl", "result", "list", *args)
    assert r.exit_code == 0, r.stderr
    return [json.loads(line)["task_id"] for line in r.stdout.splitlines()]


@pytest.mark.parametrize("store_kind", ["file", "redis", "dynamodb-local"])
def test_segments_partition_the_store(run: Any, request: pytest.FixtureRequest, store_kind: str, tmp_path: Any) -> None:
    """N runs of --segment I/N list every item exactly once between them (DynamoDB: native Segment and
    TotalSegments, also with --segments 3 inside each run; Redis and file: a hash of the key)."""
    import uuid

    ids = [f"s{i}-{uuid.uuid4().hex[:6]}" for i in range(300)]
    prefix = ""
    if store_kind == "file":
        d = tmp_path / "res"
        d.mkdir()
        url = f"file://{d}"
        for i in ids:
            (d / f"celery-task-meta-{i}").write_bytes(meta(i))
        cleanup = None
    elif store_kind == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = f"tc{uuid.uuid4().hex[:8]}:"
        store = result_store(config.resolve({"backend": url}))
        for i in ids:
            store.put(f"{prefix}celery-task-meta-{i}", meta(i), ttl_seconds=600)
        cleanup = lambda: store.delete_many([f"{prefix}celery-task-meta-{i}" for i in ids])  # noqa: E731
    else:
        endpoint = request.getfixturevalue("dynamodb_servers").get("dynamodb-local")
        if endpoint is None:
            pytest.skip("DynamoDB Local not available")
        name = f"t-seg-{uuid.uuid4().hex[:8]}"
        ctx = table_at(endpoint, name)
        ctx.__enter__()
        seed(endpoint, name, {f"celery-task-meta-{i}": meta(i) for i in ids})
        url = ddb_url(endpoint, name)
        cleanup = lambda: ctx.__exit__(None, None, None)  # noqa: E731
    try:
        extra = ["--key-prefix", prefix] if prefix else []
        whole = listed_ids(run, url, *extra)
        assert sorted(whole) == sorted(ids)
        for n, more in ((3, []), (4, ["--segments", "3"] if store_kind == "dynamodb-local" else [])):
            parts = [listed_ids(run, url, "--segment", f"{i}/{n}", *more, *extra) for i in range(n)]
            union = [x for p in parts for x in p]
            assert sorted(union) == sorted(ids)  # every item, none twice
            assert all(parts), "each share holds something"
        assert run("--backend", url, "result", "list", "--segment", "3/3").exit_code == 2
    finally:
        if cleanup is not None:
            cleanup()


def test_max_rate_bounds_list_and_forget(run: Any, tmp_path: Any) -> None:
    """50 items at 100/s take at least 0.4 s, listed or forgotten."""
    d = tmp_path / "res"
    d.mkdir()
    for i in range(50):
        (d / f"celery-task-meta-r{i}").write_bytes(meta(f"r{i}"))
    url = f"file://{d}"
    t0 = time.monotonic()
    assert len(listed_ids(run, url, "--max-rate", "100")) == 50
    assert time.monotonic() - t0 >= 0.4
    t0 = time.monotonic()
    r = run("--backend", url, "-o", "json", "result", "forget", "--state", "SUCCESS", "--max-rate", "100", "--yes")
    assert r.exit_code == 0, r.stderr
    assert time.monotonic() - t0 >= 0.4 and r.json["count"] == 50
    assert list(d.iterdir()) == []


def test_rate_limiter_keeps_the_rate_over_time() -> None:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    lim = results.RateLimiter(100, clock=lambda: now[0], sleep=sleep)
    for _ in range(20):
        lim.take(25)
    assert now[0] == pytest.approx(5.0)


def test_throttled_scans_and_deletes_are_retried_not_errors(
    run: Any, local_table: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DynamoDB Local never throttles: the throttling replies are canned (a before-send hook through the one client
    seam), every other request reaches the server. The forget still deletes every matching item and exits 0."""
    from taskctl.backends import dynamodb
    from tests.test_table_faults import Faults

    endpoint, table = local_table
    seed(endpoint, table, {f"celery-task-meta-x{i}": meta(f"x{i}") for i in range(60)})
    f = Faults()
    f.error("Scan", "ProvisionedThroughputExceededException", "slow down", times=3)
    f.error("BatchWriteItem", "ThrottlingException", "slow down", times=3)
    monkeypatch.setattr(dynamodb, "CLIENT_HOOKS", [f.install])
    r = run("--backend", ddb_url(endpoint, table), "-o", "json", "result", "forget", "--state", "SUCCESS", "--yes")
    assert r.exit_code == 0, r.stderr
    assert r.json["count"] == 60 and f.calls["Scan"] > 4 and f.calls["BatchWriteItem"] > 3
    assert stored_keys(endpoint, table) == set()


# -- resumable forgets ------------------------------------------------------------------------------------------


class CountingProxy:
    """A TCP proxy in front of DynamoDB Local that counts the HTTP requests passing through it: the request
    count of taskctl run as a subprocess, which no in-process hook can see."""

    def __init__(self, upstream: str) -> None:
        import socket

        host, port = upstream.rsplit("//", 1)[1].rsplit(":", 1)
        self.upstream = (host, int(port))
        self.requests = 0
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(conn, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, conn, False), daemon=True).start()

    def _pump(self, src: Any, dst: Any, count: bool) -> None:
        tail = b""
        try:
            while data := src.recv(65536):
                if count:
                    seen = tail + data
                    with self._lock:
                        self.requests += seen.count(b"POST / HTTP/1.1") - tail.count(b"POST / HTTP/1.1")
                    tail = seen[-20:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def _forget_items() -> dict[str, bytes]:
    items = {f"celery-task-meta-ok{i}": meta(f"ok{i}") for i in range(6000)}
    items.update({f"celery-task-meta-bad{i}": meta(f"bad{i}", "FAILURE") for i in range(1000)})
    return items


def test_killed_forget_resumes_from_its_checkpoint(
    dynamodb_servers: Any, taskctl_cmd: list[str], tmp_path: Any, unique_name: str
) -> None:
    """SIGKILL a forget of 6,000 of 7,000 items mid-run, run it again with the same checkpoint: every match is gone,
    the rest stays, and both runs together send at most 5% more requests than one uninterrupted run."""
    import os
    import signal
    import subprocess

    endpoint = dynamodb_servers.get("dynamodb-local")
    if endpoint is None:
        pytest.skip("DynamoDB Local not available")
    items = _forget_items()
    proxy = CountingProxy(endpoint)
    env = dict(os.environ)
    args = ["-o", "json", "result", "forget", "--state", "SUCCESS", "--yes"]
    try:
        with table_at(endpoint, unique_name + "-ref") as (_, ref), table_at(endpoint, unique_name) as (_, table):
            seed(endpoint, ref, items)
            seed(endpoint, table, items)
            url_ref = f"dynamodb://@127.0.0.1:{proxy.port}/{ref}"
            url = f"dynamodb://@127.0.0.1:{proxy.port}/{table}"

            proxy.requests = 0
            done = subprocess.run([*taskctl_cmd, "--backend", url_ref, *args], env=env, capture_output=True)
            assert done.returncode == 0, done.stderr
            uninterrupted = proxy.requests

            ckpt = tmp_path / "forget.ckpt"
            proxy.requests = 0
            p = subprocess.Popen(
                [*taskctl_cmd, "--backend", url, *args, "--checkpoint", str(ckpt)], env=env, stderr=subprocess.PIPE
            )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and p.poll() is None:
                try:
                    if json.loads(ckpt.read_text())["done"] >= 2000:
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.005)
            assert p.poll() is None, "the forget ended before it could be killed"
            p.send_signal(signal.SIGKILL)
            p.wait()
            p.stderr.close()  # type: ignore[union-attr]
            left = stored_keys(endpoint, table)
            assert 1000 < len(left) < 7000

            again = subprocess.run(
                [*taskctl_cmd, "--backend", url, *args, "--checkpoint", str(ckpt)], env=env, capture_output=True
            )
            assert again.returncode == 0, again.stderr
            report = json.loads(again.stdout)
            # the chunk being deleted at the kill is gone but not yet recorded: neither run can count it
            assert report["earlier"] >= 2000 and 6000 - 200 <= report["earlier"] + report["count"] <= 6000
            assert stored_keys(endpoint, table) == {k for k in items if "-bad" in k}
            both = proxy.requests
            assert both <= 1.05 * uninterrupted, (both, uninterrupted)
    finally:
        proxy.close()


def test_interrupted_tree_forget_with_checkpoint_goes_on_without_walking_again(
    local_table: tuple[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first run walks, records its plan and loses its connection (the FailAfter stub); the rerun with the same
    checkpoint reads nothing (no BatchGetItem), deletes only what is left, and says how much was done before."""
    from taskctl.backends import dynamodb

    endpoint, table = local_table
    url = ddb_url(endpoint, table)
    kids = [f"c{i}" for i in range(20)]
    items = {"celery-task-meta-root": meta("root", children=child(*kids))}
    for i, c in enumerate(kids):
        grand = [f"g{i}-{j}" for j in range(20)]
        items[f"celery-task-meta-{c}"] = meta(c, children=child(*grand))
        items.update({f"celery-task-meta-{g}": meta(g) for g in grand})
    seed(endpoint, table, items)
    settings = config.resolve({"backend": url})
    ckpt = str(tmp_path / "tree.ckpt")
    store = result_store(settings)
    store.client = FailAfter(store.client, 10)  # type: ignore[attr-defined]
    with pytest.raises(UnavailableError):
        results.forget(settings, ["root"], tree=True, store=store, checkpoint=ckpt)
    left = stored_keys(endpoint, table)
    assert 0 < len(left) < len(items)

    reads: list[int] = []
    monkeypatch.setattr(
        dynamodb,
        "CLIENT_HOOKS",
        [lambda c: c.meta.events.register("before-send.dynamodb.BatchGetItem", lambda **kw: reads.append(1))],
    )
    report = results.forget(settings, ["root"], tree=True, checkpoint=ckpt)
    assert reads == []
    gone = len(items) - len(left)
    assert gone - 200 < report.earlier <= gone  # only the chunk in flight (200 keys) is not counted as done
    assert report.count == len(items)
    assert stored_keys(endpoint, table) == set()
    with pytest.raises(Exception, match="belongs to another command"):
        results.forget(settings, ["other"], tree=True, checkpoint=ckpt)


# -- sizes --------------------------------------------------------------------------------------------------------


def test_list_larger_than_and_the_size_column(run: Any, tmp_path: Any) -> None:
    from taskctl.units import parse_size

    assert parse_size("100KB") == 100_000 and parse_size("1MiB") == 1 << 20 and parse_size("390k") == 390 * 1024
    d = tmp_path / "res"
    d.mkdir()
    small, big = meta("small"), meta("big", result="x" * 150_000)
    (d / "celery-task-meta-small").write_bytes(small)
    (d / "celery-task-meta-big").write_bytes(big)
    url = f"file://{d}"
    r = run("--backend", url, "-o", "json", "result", "list", "--larger-than", "100KB")
    assert r.exit_code == 0, r.stderr
    assert [(x["task_id"], x["size"]) for x in r.json] == [("big", len(big))]
    r = run("--backend", url, "-o", "plain", "result", "list", "--state", "SUCCESS")
    assert r.stdout.split("\n")[0].split()[:3] == ["TASK_ID", "STATE", "SIZE"]
    rows = {line.split()[0]: line.split()[2] for line in r.stdout.splitlines()[1:]}
    assert rows == {"small": str(len(small)), "big": str(len(big))}
    assert run("--backend", url, "result", "list", "--larger-than", "lots").exit_code == 2


# -- trees stream ------------------------------------------------------------------------------------------------


def test_tree_rows_stream_level_by_level_and_match_the_nested_tree(run: Any, tmp_path: Any) -> None:
    """jsonl rows come level by level (each after its parent) and say what the nested json says, node for node."""
    d = tmp_path / "res"
    d.mkdir()
    kids = [f"k{i}" for i in range(5)]
    (d / "celery-task-meta-root").write_bytes(meta("root", children=[*child(*kids), [["grp", None], child("k0", "m")]]))
    for k in kids:
        (d / f"celery-task-meta-{k}").write_bytes(meta(k, children=child(f"{k}-a", f"{k}-b", "root")))
    url = f"file://{d}"
    r = run("--backend", url, "-o", "jsonl", "result", "tree", "root")
    assert r.exit_code == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    seen: set[str] = set()
    depths = [x["depth"] for x in rows]
    for x in rows:
        assert x["parent"] is None or x["parent"] in seen
        seen.add(x["id"])
    assert depths == sorted(depths)
    nested = run("--backend", url, "-o", "json", "result", "tree", "root").json
    flat: list[tuple[int, str, str | None, bool, bool]] = []
    stack = [(0, None, nested)]
    while stack:
        depth, parent, n = stack.pop()
        ident = n.get("task_id") or n.get("group_id")
        flat.append((depth, ident, parent, bool(n.get("cycle")), bool(n.get("repeat"))))
        stack.extend((depth + 1, ident, c) for c in n["children"])
    assert sorted(flat) == sorted((x["depth"], x["id"], x["parent"], x["cycle"], x["repeat"]) for x in rows)
    assert sum(1 for x in rows if x["cycle"]) == 5 and sum(1 for x in rows if x["repeat"]) == 1
    assert run("--backend", url, "-o", "jsonl", "result", "tree", "nothing").exit_code == 3
