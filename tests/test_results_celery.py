"""Real Celery writes the results, taskctl reads, walks and forgets them; Celery's own AsyncResult is the judge.

One in-process worker (solo pool, kombu memory:// broker) per backend configuration: file:// + json,
redis:// + msgpack + global_keyprefix, dynamodb:// (DynamoDB Local) + json, dynamodb:// + pickle + gzip
result_compression (Celery 5.7). Workflows: a chain, a chain failing in the middle, a group, a chord, a task
spawning a task, a group, a chord and a chain, a retry, a custom PROGRESS state; result_extended is on.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

celery = pytest.importorskip("celery")

from celery import Celery, chord, group  # noqa: E402
from celery.contrib.testing.worker import start_worker  # noqa: E402
from celery.result import GroupResult  # noqa: E402

from taskctl import output  # noqa: E402
from taskctl.formats.result import to_plain  # noqa: E402

pytestmark = pytest.mark.celery

GATE = threading.Event()

CONFIGS = [
    pytest.param(("file", "json", None), id="file-json"),
    pytest.param(("redis", "msgpack", None), id="redis-msgpack", marks=pytest.mark.redis),
    pytest.param(("dynamodb", "json", None), id="dynamodb-json"),
    pytest.param(("dynamodb", "pickle", "gzip"), id="dynamodb-pickle-gzip"),
]


@dataclass
class Env:
    kind: str
    serializer: str
    compression: str | None
    app: Celery
    url: str
    args: list[str]
    tasks: dict[str, Any]
    flows: dict[str, Any] = field(default_factory=dict)


def make_app(url: str, serializer: str, compression: str | None, prefix: str | None) -> tuple[Celery, dict[str, Any]]:
    app = Celery(f"tc{uuid.uuid4().hex[:6]}", broker="memory://", backend=url, set_as_current=False)
    conf: dict[str, Any] = {
        "result_serializer": serializer,
        "accept_content": ["json", serializer],
        "result_accept_content": [serializer],
        "result_extended": True,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        # kombu's virtual transports poll an empty queue once a second by default
        "broker_transport_options": {"polling_interval": 0.01},
    }
    if compression:
        conf["result_compression"] = compression
    if prefix:
        conf["result_backend_transport_options"] = {"global_keyprefix": prefix}
    app.conf.update(conf)

    @app.task(name=f"{app.main}.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name=f"{app.main}.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name=f"{app.main}.tsum")
    def tsum(xs: list[int]) -> int:
        return sum(xs)

    @app.task(name=f"{app.main}.fail")
    def fail(x: Any = None) -> None:
        raise ValueError(f"bad {x}")

    @app.task(name=f"{app.main}.missing")
    def missing() -> None:
        raise KeyError("missing-7")

    @app.task(name=f"{app.main}.flaky", bind=True, max_retries=3)
    def flaky(self: Any) -> str:
        if self.request.retries < 1:
            raise self.retry(countdown=0, exc=ValueError("try again"))
        return "ok"

    @app.task(name=f"{app.main}.progress", bind=True)
    def progress(self: Any) -> str:
        self.update_state(state="PROGRESS", meta={"current": 1, "total": 3})
        GATE.wait(30)
        return "done"

    @app.task(name=f"{app.main}.spawn")
    def spawn(n: int) -> dict[str, Any]:
        one = add.delay(100, 1)
        g = group(add.s(i, i) for i in range(n)).apply_async()
        body = chord([add.s(1, 1), add.s(2, 2)], tsum.s()).apply_async()
        last = (add.s(1, 1) | add.s(5)).apply_async()
        return {"wait": [one.id, *[r.id for r in g.results], body.id, last.id], "body": body.id}

    tasks = dict(add=add, mul=mul, tsum=tsum, fail=fail, missing=missing, flaky=flaky, progress=progress, spawn=spawn)
    return app, tasks


def celery_ids(app: Celery, root: str) -> set[str]:
    """Every id Celery's own API reaches from ROOT through AsyncResult.children (guarded against self-loops)."""
    seen: set[str] = set()
    todo = [app.AsyncResult(root)]
    while todo:
        r = todo.pop()
        if isinstance(r, GroupResult):
            todo.extend(r.results)
            continue
        if r.id in seen:
            continue
        seen.add(r.id)
        todo.extend(r.children or [])
    return seen


def wait_ready(app: Celery, ids: set[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(app.AsyncResult(i).state in ("SUCCESS", "FAILURE") for i in ids):
            return
        time.sleep(0.1)
    raise AssertionError("workflow did not finish")


def run_flows(env: Env) -> dict[str, Any]:
    t, app = env.tasks, env.app
    flows: dict[str, Any] = {}
    c = (t["add"].s(1, 2) | t["add"].s(10) | t["mul"].s(3)).apply_async()
    assert c.get(timeout=30) == 39
    flows["chain"] = [c.parent.parent.id, c.parent.id, c.id]

    bad = (t["add"].s(1, 2) | t["fail"].s() | t["add"].s(1)).apply_async()
    first, mid = bad.parent.parent.id, bad.parent.id
    wait_ready(app, {first, mid})
    flows["broken"] = [first, mid, bad.id]

    g = group(t["add"].s(i, i) for i in range(3)).apply_async()
    assert g.get(timeout=30) == [0, 2, 4]
    flows["group"] = [r.id for r in g.results]

    ch = chord([t["add"].s(1, 1), t["add"].s(2, 2)], t["tsum"].s())()
    assert ch.get(timeout=30) == 6
    flows["chord"] = {"body": ch.id, "header": [r.id for r in ch.parent.results], "group": ch.parent.id}

    sp = t["spawn"].delay(2)
    spawned = sp.get(timeout=30)
    wait_ready(app, set(spawned["wait"]))
    flows["spawn"] = sp.id
    flows["spawn_body"] = spawned["body"]

    fl = t["flaky"].delay()
    assert fl.get(timeout=30) == "ok"
    flows["flaky"] = fl.id

    km = t["missing"].delay()
    wait_ready(app, {km.id})
    flows["keyerror"] = km.id
    return flows


@pytest.fixture(scope="module", params=CONFIGS)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    kind, serializer, compression = request.param
    cleanup: list[Any] = []
    prefix = None
    args = ["--serializer", serializer]
    if kind == "file":
        d = tmp_path_factory.mktemp("results")
        url = f"file://{d}"
        cleanup.append(lambda: shutil.rmtree(d, ignore_errors=True))
    elif kind == "redis":
        redis_url = request.getfixturevalue("redis_url")
        prefix = f"tc{uuid.uuid4().hex[:8]}:"
        url = redis_url
        args += ["--key-prefix", prefix]

        def drop_redis() -> None:
            import redis

            client = redis.Redis.from_url(redis_url)
            for k in client.scan_iter(match=f"{prefix}*"):
                client.delete(k)

        cleanup.append(drop_redis)
    else:
        endpoint = request.getfixturevalue("dynamodb_endpoint")
        port = endpoint.rsplit(":", 1)[1]
        table = f"t-results-{uuid.uuid4().hex[:8]}"
        url = f"dynamodb://testing:testing@localhost:{port}/{table}?read=50&write=50"

        def drop_table() -> None:
            import boto3

            boto3.client(
                "dynamodb",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            ).delete_table(TableName=table)

        cleanup.append(drop_table)
    app, tasks = make_app(url, serializer, compression, prefix)
    e = Env(kind, serializer, compression, app, url, args, tasks)
    GATE.clear()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10):
            e.flows = run_flows(e)
            yield e
            GATE.set()
    finally:
        for fn in cleanup:
            try:
                fn()
            except Exception:
                pass


def tc(run: Any, env: Env, *args: str, input: str | None = None) -> Any:
    return run("--backend", env.url, *args, *env.args, input=input)


def plain(value: Any) -> Any:
    return json.loads(output.dumps(to_plain(value)))


def assert_agrees(env: Env, row: dict[str, Any]) -> None:
    """`result show` says what Celery's AsyncResult says: state, result or exception, extended fields."""
    ar = env.app.AsyncResult(row["task_id"])
    assert row["state"] == ar.state, row
    if ar.state == "PENDING":
        assert row["found"] is False
        return
    assert row["found"] is True
    if ar.state in ("FAILURE", "RETRY", "REVOKED"):
        exc = ar.result
        assert row["exception"] == {"type": type(exc).__name__, "message": str(exc), "module": type(exc).__module__}
        assert row["result"] is None
        assert row["traceback"] == ar.traceback
    else:
        assert row["exception"] is None
        assert row["result"] == plain(ar.result)
    assert row["name"] == ar.name
    assert row["args"] == plain(ar.args)
    assert row["kwargs"] == plain(ar.kwargs)
    assert row["worker"] == ar.worker
    assert row["retries"] == ar.retries
    assert row["queue"] == ar.queue
    assert row["date_done"] is not None and ar.date_done is not None
    assert row["serializer"] == env.serializer
    expected_compression = "application/x-gzip" if env.compression == "gzip" else None
    assert row["compression"] == expected_compression
    assert row["expired"] is False


def all_ids(env: Env) -> list[str]:
    f = env.flows
    return [
        *f["chain"],
        *f["broken"],
        *f["group"],
        f["chord"]["body"],
        *f["chord"]["header"],
        f["spawn"],
        f["flaky"],
        f["keyerror"],
        *sorted(celery_ids(env.app, f["spawn"])),
    ]


def test_show_agrees_with_celery_for_every_id(env: Env, run: Any) -> None:
    ids = list(dict.fromkeys(all_ids(env)))
    r = tc(run, env, "-o", "json", "result", "show", *ids, "--missing-ok")
    assert r.exit_code == 0, r.stderr
    rows = r.json
    assert [x["task_id"] for x in rows] == ids  # order as given
    for row in rows:
        assert_agrees(env, row)
    by_id = {x["task_id"]: x for x in rows}
    first, mid, last = env.flows["chain"]
    assert by_id[first]["children"] == [mid] and by_id[mid]["parent_id"] == first
    assert by_id[last]["result"] == 39 and by_id[last]["children"] == []
    assert by_id[env.flows["broken"][1]]["exception"]["message"] == "bad 3"
    assert by_id[env.flows["keyerror"]]["exception"]["type"] == "KeyError"
    assert by_id[env.flows["flaky"]]["retries"] == 1
    for m in env.flows["group"]:
        assert by_id[m]["group_id"] is not None


def test_show_reports_unknown_ids_as_pending_and_exit_3(env: Env, run: Any) -> None:
    first = env.flows["chain"][0]
    unknown = str(uuid.uuid4())
    r = tc(run, env, "-o", "json", "result", "show", "-", input=f"{first}\n{unknown}\n")
    assert r.exit_code == 3
    assert [(x["task_id"], x["state"], x["found"]) for x in r.json] == [
        (first, "SUCCESS", True),
        (unknown, "PENDING", False),
    ]
    assert "1 of 2 ids have no stored result" in r.stderr
    assert env.app.AsyncResult(unknown).state == "PENDING"


def tree_task_ids(doc: dict[str, Any]) -> list[str]:
    out: list[str] = []
    stack = [doc]
    while stack:
        n = stack.pop()
        if "task_id" in n and not n.get("repeat") and not n.get("cycle"):
            out.append(n["task_id"])
        stack.extend(n["children"])
    return out


def test_tree_finds_exactly_what_celery_recorded(env: Env, run: Any) -> None:
    for root in (env.flows["spawn"], env.flows["chain"][0], env.flows["broken"][0], env.flows["flaky"]):
        r = tc(run, env, "-o", "json", "result", "tree", root)
        assert r.exit_code == 0, r.stderr
        ids = tree_task_ids(r.json)
        assert len(ids) == len(set(ids))
        assert set(ids) == celery_ids(env.app, root), root
    spawn = env.flows["spawn"]
    doc = tc(run, env, "-o", "json", "result", "tree", spawn).json
    groups = [c for c in doc["children"] if "group_id" in c]
    assert len(groups) == 2 and all(len(g["children"]) in (2,) for g in groups)


def test_tree_deep_finds_the_chord_body(env: Env, run: Any) -> None:
    spawn = env.flows["spawn"]
    plain_ids = set(tree_task_ids(tc(run, env, "-o", "json", "result", "tree", spawn).json))
    deep = tc(run, env, "-o", "json", "result", "tree", spawn, "--deep")
    assert deep.exit_code == 0, deep.stderr
    body = env.flows["spawn_body"]
    assert body not in plain_ids  # Celery names a chord body in no children list
    assert set(tree_task_ids(deep.json)) - plain_ids == {body}
    assert env.app.AsyncResult(body).name == env.tasks["tsum"].name and env.app.AsyncResult(body).result == 6


def test_tree_up_climbs_to_the_root_and_rows_have_depth_and_parent(env: Env, run: Any) -> None:
    first, mid, last = env.flows["chain"]
    r = tc(run, env, "-o", "jsonl", "result", "tree", last, "--up")
    assert r.exit_code == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["depth"], x["id"], x["parent"], x["state"]) for x in rows] == [
        (0, first, None, "SUCCESS"),
        (1, mid, first, "SUCCESS"),
        (2, last, mid, "SUCCESS"),
    ]
    r = tc(run, env, "-o", "plain", "result", "tree", first, "--depth", "1")
    assert [line.split()[0] for line in r.stdout.splitlines()[1:]] == ["0", "1"]


def test_tree_check_and_retry_self_reference(env: Env, run: Any) -> None:
    r = tc(run, env, "-o", "json", "result", "tree", env.flows["broken"][0], "--check")
    assert r.exit_code == 1 and "1 of 2 tasks in the tree are FAILURE or REVOKED" in r.stderr
    assert r.json["children"][0]["state"] == "FAILURE"
    assert r.json["children"][0]["exception"]["type"] == "ValueError"
    assert tc(run, env, "result", "tree", env.flows["chain"][0], "--check").exit_code == 0
    flaky = env.flows["flaky"]
    # after a retry Celery stores parent_id == task_id: --up must stop there, not loop
    assert tc(run, env, "-o", "json", "result", "show", flaky).json[0]["parent_id"] == flaky
    doc = tc(run, env, "-o", "json", "result", "tree", flaky, "--up", "--deep").json
    assert (doc["task_id"], doc["state"], doc["children"]) == (flaky, "SUCCESS", [])


def test_progress_state_and_wait(env: Env, run: Any) -> None:
    from taskctl import config, events, results

    GATE.clear()
    r = env.tasks["progress"].delay()
    deadline = time.monotonic() + 20
    while env.app.AsyncResult(r.id).state != "PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    res = tc(run, env, "-o", "json", "result", "show", r.id)
    assert res.json[0]["state"] == "PROGRESS" and res.json[0]["result"] == {"current": 1, "total": 3}
    res = tc(run, env, "-o", "json", "result", "wait", r.id, "--timeout", "0.3", "--interval", "0.1")
    assert res.exit_code == 124 and res.json["state"] == "PROGRESS"
    assert "still PROGRESS" in res.stderr

    updates: list[dict[str, Any]] = []

    class Bar:
        def advance(self, n: int = 1) -> None:
            pass

        def update(self, **kw: Any) -> None:
            updates.append(kw)
            if kw.get("completed") == 1:
                GATE.set()  # the task finishes once the bar has shown 1/3

    from contextlib import contextmanager

    @contextmanager
    def progress(description: str, total: int | None) -> Iterator[Bar]:
        yield Bar()

    events.install(progress=progress)
    settings = config.resolve({"backend": env.url, "serializer": env.serializer})
    opts = results.Options(serializer=env.serializer, key_prefix=env.args[3] if len(env.args) > 3 else None)
    out = results.wait(settings, r.id, timeout=30, interval=0.05, opts=opts)
    assert out.exit_code == 0 and out.value.state == "SUCCESS" and out.value.result == "done"
    assert {"total": 3, "completed": 1, "description": f"{r.id} PROGRESS"} in updates
    res = tc(run, env, "-o", "json", "result", "wait", env.flows["broken"][1], "--timeout", "5")
    assert res.exit_code == 1 and "ended FAILURE: ValueError: bad 3" in res.stderr


def test_forget_tree_deletes_exactly_the_subtree(env: Env, run: Any) -> None:
    t = env.tasks
    c = (t["add"].s(1, 1) | t["add"].s(1) | t["add"].s(1) | t["add"].s(1)).apply_async()
    assert c.get(timeout=30) == 5
    a, b, cc, d = c.parent.parent.parent.id, c.parent.parent.id, c.parent.id, c.id
    other = env.flows["chain"]
    r = tc(run, env, "-o", "json", "result", "forget", b, "--tree", "--keep", d, "--dry-run")
    assert r.exit_code == 0 and r.json["forgotten"] == [b, cc] and r.json["dry_run"] is True and r.json["kept"] == [d]
    assert env.app.AsyncResult(b).state == "SUCCESS"
    r = tc(run, env, "-o", "json", "result", "forget", b, "--tree", "--keep", d)
    assert r.exit_code == 2 and "--yes" in r.stderr  # stdin is not a terminal
    r = tc(run, env, "-o", "json", "result", "forget", b, "--tree", "--keep", d, "--yes")
    assert r.exit_code == 0, r.stderr
    assert r.json == {
        "forgotten": [b, cc],
        "missing": [],
        "dry_run": False,
        "groups": [],
        "kept": [d],
        "count": 2,
        "earlier": 0,
        "truncated": False,
    }
    assert [env.app.AsyncResult(i).state for i in (a, b, cc, d)] == ["SUCCESS", "PENDING", "PENDING", "SUCCESS"]
    assert all(env.app.AsyncResult(i).state == "SUCCESS" for i in other)
    again = tc(run, env, "-o", "json", "result", "forget", b, cc, "--yes")
    assert again.exit_code == 0 and again.json["forgotten"] == [] and again.json["missing"] == [b, cc]

    sp = env.flows["spawn"]
    doomed = celery_ids(env.app, sp)
    r = tc(run, env, "-o", "json", "result", "forget", sp, "--tree", "--deep", "--yes")
    assert r.exit_code == 0, r.stderr
    stored = {i for i in doomed if i not in r.json["missing"]}
    assert set(r.json["forgotten"]) >= stored and len(r.json["forgotten"]) == len(stored) + 1  # + the chord body
    assert all(env.app.AsyncResult(i).state == "PENDING" for i in r.json["forgotten"])
    assert all(env.app.AsyncResult(i).state == "SUCCESS" for i in (a, d, *other))
