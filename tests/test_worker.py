"""`worker list|active|reserved|registered|stats|consume` against two real Celery workers on RabbitMQ.

One prefork worker (concurrency 2) and one solo worker, each with its own unique node name and queue. Other
workers on the shared broker may answer too, so the assertions look only at these two (and `--worker` narrows
the early-return checks to them: a busy worker elsewhere on the broker must not make a test slow or flaky).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import REDIS_URL, port_open, service_missing

pytestmark = pytest.mark.celery

BROKER = "amqp://guest:guest@127.0.0.1:5672//"

APP_SOURCE = """
import os
import pathlib
import time

from celery import Celery

app = Celery("wk_app", broker=os.environ["WK_BROKER"], backend=os.environ["WK_BACKEND"])
app.conf.update(
    worker_prefetch_multiplier=2,
    broker_connection_retry_on_startup=True,
    control_exchange=os.environ["WK_CONTROL"],
    event_exchange=os.environ["WK_CONTROL"] + "ev",
)


@app.task(name="wk.sleep")
def sleep(seconds, tag=None):
    time.sleep(seconds)
    return tag


@app.task(name="wk.add")
def add(x, y):
    return x + y


@app.task(name="wk.fail")
def fail(why):
    raise ValueError(why)
"""


@dataclass
class Workers:
    """Two running workers: prefork and solo, on queues of their own."""

    root: Path
    tag: str
    prefork: str
    solo: str
    queue_prefork: str
    queue_solo: str
    procs: list[subprocess.Popen[bytes]]
    broker: str = BROKER
    _app: Any = None

    @property
    def cli(self) -> list[str]:
        return ["--broker", self.broker, "--config", str(self.root / "taskctl.toml")]

    def app(self) -> Any:
        if self._app is None:
            from celery import Celery

            self._app = Celery("wk_client", broker=self.broker, backend=REDIS_URL)
        return self._app

    def send(self, name: str, args: list[Any], queue: str, **kw: Any) -> str:
        tid = str(uuid.uuid4())
        self.app().send_task(name, args=args, task_id=tid, queue=queue, **kw)
        return tid


def _start(root: Path, name: str, queue: str, pool: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = root / f"{name.split('@')[0]}.log"
    argv = [sys.executable, "-m", "celery", "-A", "wk_app", "worker", *pool, "-Q", queue, "-n", name]
    # heartbeats on: without them (and without -E) a worker has no event dispatcher to enable
    argv += ["--without-gossip", "--without-mingle", "-l", "info"]
    with open(log, "wb") as fh:
        return subprocess.Popen(argv, cwd=root, env=env, stdout=fh, stderr=fh)


def _wait_ready(root: Path, procs: list[subprocess.Popen[bytes]], names: list[str]) -> None:
    deadline = time.monotonic() + 90
    logs = [root / f"{n.split('@')[0]}.log" for n in names]
    while time.monotonic() < deadline:
        for p, log in zip(procs, logs, strict=True):
            if p.poll() is not None:
                raise RuntimeError(f"worker exited at start-up:\n{log.read_text()[-3000:]}")
        if all(" ready." in log.read_text() for log in logs):
            return
        time.sleep(0.2)
    raise RuntimeError("workers not ready within 90s")


def start_workers(root: Path, broker: str, specs: dict[str, list[str]]) -> Workers:
    """Workers named wk-<kind>-<tag>@test for each kind in SPECS (pool options), each on a queue of its own."""
    (root / "wk_app.py").write_text(APP_SOURCE)
    tag = uuid.uuid4().hex[:8]
    (root / "taskctl.toml").write_text(f'[default]\ncontrol_exchange = "wk{tag}"\nevent_exchange = "wk{tag}ev"\n')
    env = dict(os.environ, WK_BROKER=broker, WK_BACKEND=REDIS_URL, WK_CONTROL=f"wk{tag}", PYTHONPATH=str(root))
    names = [f"wk-{kind}-{tag}@test" for kind in specs]
    w = Workers(
        root=root,
        tag=tag,
        prefork=names[0],
        solo=names[-1],
        queue_prefork=f"wk-q1-{tag}",
        queue_solo=f"wk-q{len(specs)}-{tag}",
        procs=[],
        broker=broker,
    )
    for i, (name, pool) in enumerate(zip(names, specs.values(), strict=True)):
        w.procs.append(_start(root, name, f"wk-q{i + 1}-{tag}", pool, env))
    try:
        _wait_ready(root, w.procs, names)
    except BaseException:
        stop_workers(w)
        raise
    return w


def stop_workers(w: Workers) -> None:
    for p in w.procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in w.procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    from kombu import Connection

    with Connection(w.broker) as conn:
        for q in (w.queue_prefork, w.queue_solo, f"wk-extra-{w.tag}"):
            ch = conn.channel()
            try:
                ch.queue_delete(queue=q)
            except Exception:
                pass


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    if not port_open("127.0.0.1", 5672):
        service_missing("RabbitMQ on 127.0.0.1:5672")
    if not port_open("127.0.0.1", 6379):
        service_missing("Redis on 127.0.0.1:6379")
    w = start_workers(
        tmp_path_factory.mktemp("workers"), BROKER, {"prefork": ["-P", "prefork", "-c", "2"], "solo": ["-P", "solo"]}
    )
    try:
        yield w
    finally:
        stop_workers(w)


def _mine(rows: list[dict[str, Any]], w: Workers) -> dict[str, dict[str, Any]]:
    return {r["worker"]: r for r in rows if r["worker"] in (w.prefork, w.solo)}


def test_list_shows_both_workers_with_pool_and_queues(run, two_workers: Workers) -> None:  # type: ignore[no-untyped-def]
    w = two_workers
    r = run(*w.cli, "worker", "list", "--timeout", "3", "-o", "json")
    assert r.exit_code == 0, r.stderr
    rows = _mine(r.json, w)
    assert set(rows) == {w.prefork, w.solo}
    assert rows[w.prefork]["pool"] == "prefork" and rows[w.prefork]["concurrency"] == 2
    assert rows[w.solo]["pool"] == "solo" and rows[w.solo]["concurrency"] == 1
    assert rows[w.prefork]["queues"] == [w.queue_prefork]
    assert rows[w.solo]["queues"] == [w.queue_solo]
    for row in rows.values():
        assert row["state"] == "online"
        assert row["pid"] and row["pid"] > 0
        assert row["version"] and row["version"].startswith("5.")
        assert row["uptime"] is not None and row["uptime"] >= 0
        assert isinstance(row["processed"], int)

    r = run(*w.cli, "worker", "ping", "-w", w.solo, "-o", "plain")
    assert r.exit_code == 0, r.stderr
    assert w.solo in r.stdout and w.prefork not in r.stdout


def test_list_returns_once_every_expected_worker_answered(run, two_workers: Workers) -> None:  # type: ignore[no-untyped-def]
    """Timeout 5 s: both workers bound to the control exchange (management API) answered, so it ends far sooner."""
    w = two_workers
    for extra in ([], ["-w", w.prefork, "-w", w.solo]):
        start = time.monotonic()
        r = run(*w.cli, "worker", "list", *extra, "--timeout", "5", "-o", "json")
        elapsed = time.monotonic() - start
        assert r.exit_code == 0, r.stderr
        assert [x["worker"] for x in r.json] == sorted([w.prefork, w.solo])
        assert elapsed < 0.8 * 5, f"worker list {extra} took {elapsed:.2f}s"


def test_silent_worker_is_named_and_check_exits_1(run, two_workers: Workers) -> None:  # type: ignore[no-untyped-def]
    w = two_workers
    ghost = f"wk-ghost-{w.tag}@test"
    r = run(*w.cli, "worker", "list", "-w", w.solo, "-w", ghost, "--timeout", "0.5", "-o", "json")
    assert r.exit_code == 0, r.stderr
    states = {x["worker"]: x["state"] for x in r.json}
    assert states == {w.solo: "online", ghost: "no reply"}
    r = run(*w.cli, "worker", "list", "-w", w.solo, "-w", ghost, "--timeout", "0.5", "--check", "-o", "json")
    assert r.exit_code == 1
    assert ghost in r.stderr


def test_active_shows_a_running_task_with_its_args(run, two_workers: Workers) -> None:  # type: ignore[no-untyped-def]
    w = two_workers
    tid = w.send("wk.sleep", [4], w.queue_prefork, kwargs={"tag": "needle\x1b[31m"})
    deadline = time.monotonic() + 20
    row = None
    while row is None and time.monotonic() < deadline:
        r = run(*w.cli, "worker", "active", "-w", w.prefork, "--timeout", "2", "-o", "json")
        assert r.exit_code == 0, r.stderr
        row = next((x for x in r.json if x["task_id"] == tid), None)
        if row is None:
            time.sleep(0.2)
    assert row is not None, "the running task never showed in `worker active`"
    assert row["worker"] == w.prefork and row["kind"] == "active" and row["name"] == "wk.sleep"
    assert row["args"] == "[4]" or row["args"] == "(4,)"
    assert "needle" in row["kwargs"]
    assert row["started"] and row["started"].endswith("Z")
    assert row["runtime"] is not None and 0 <= row["runtime"] < 20
    # text output escapes the control character a task argument carried
    r = run(*w.cli, "worker", "active", "-w", w.prefork, "--timeout", "2", "-o", "plain")
    assert tid in r.stdout and "\x1b" not in r.stdout


def _wait_idle(run, w: Workers, name: str) -> None:  # type: ignore[no-untyped-def]
    """Until NAME runs nothing (an earlier test's task may still be running)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = run(*w.cli, "worker", "active", "-w", name, "--timeout", "2", "-o", "json")
        if r.exit_code == 0 and r.json == []:
            return
        time.sleep(0.3)
    raise AssertionError(f"{name} still busy")


def test_reserved_and_scheduled_on_a_busy_prefork_worker(run, two_workers: Workers) -> None:  # type: ignore[no-untyped-def]
    """Both processes busy: a third task waits reserved (prefetch 2 x 2), one with a countdown is scheduled.

    (A busy solo worker would not answer at all: its one thread runs the task, not the remote control.)
    """
    w = two_workers
    q = w.queue_prefork
    _wait_idle(run, w, w.prefork)
    busy = [w.send("wk.sleep", [4], q), w.send("wk.sleep", [4], q)]
    waiting = w.send("wk.add", [1, 2], q)
    later = w.send("wk.add", [5, 6], q, countdown=60)
    deadline = time.monotonic() + 20
    seen: dict[str, set[str]] = {}
    while time.monotonic() < deadline:
        seen = {}
        for kind in ("active", "reserved", "scheduled"):
            r = run(*w.cli, "worker", kind, "-w", w.prefork, "--timeout", "2", "-o", "json")
            assert r.exit_code == 0, r.stderr
            seen[kind] = {x["task_id"] for x in r.json}
        if set(busy) <= seen["active"] and waiting in seen["reserved"] and later in seen["scheduled"]:
            break
        time.sleep(0.2)
    assert set(busy) <= seen["active"]
    assert waiting in seen["reserved"]
    assert later in seen["scheduled"]
    r = run(*w.cli, "worker", "scheduled", "-w", w.prefork, "-o", "json")
    row = next(x for x in r.json if x["task_id"] == later)
    assert row["eta"] and row["name"] == "wk.add" and "5" in row["args"]
    assert row["started"] is None and row["runtime"] is None
    r = run(*w.cli, "task", "revoke", later, "--yes", "--no-mark", "-o", "json")
    assert r.exit_code == 0, r.stderr


def test_registered_and_stats(run, two_workers: Workers) -> None:  # type: ignore[no-untyped-def]
    w = two_workers
    r = run(*w.cli, "worker", "registered", "-w", w.prefork, "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert {x["task"] for x in r.json} >= {"wk.sleep", "wk.add"}
    r = run(*w.cli, "worker", "stats", "-w", w.prefork, "-w", w.solo, "-o", "json")
    assert r.exit_code == 0, r.stderr
    rows = {x["worker"]: x for x in r.json}
    assert rows[w.prefork]["pool"] == "prefork" and rows[w.solo]["pool"] == "solo"
    assert rows[w.prefork]["pid"] != rows[w.solo]["pid"]


def _queues_of(run, w: Workers, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    r = run(*w.cli, "worker", "list", "-w", name, "--timeout", "2", "-o", "json")
    assert r.exit_code == 0, r.stderr
    return list(r.json[0]["queues"])


def test_consume_cancel_and_add(run, two_workers: Workers) -> None:  # type: ignore[no-untyped-def]
    w = two_workers
    extra = f"wk-extra-{w.tag}"
    r = run(*w.cli, "worker", "consume", extra, "--add", "-w", w.solo, "--dry-run", "-o", "json")
    assert r.exit_code == 0 and r.json[0]["dry_run"] is True
    assert extra not in _queues_of(run, w, w.solo)

    r = run(*w.cli, "worker", "consume", extra, "--add", "-w", w.solo, "-o", "json")
    assert r.exit_code == 2 and "--yes" in r.stderr

    r = run(*w.cli, "worker", "consume", extra, "--add", "-w", w.solo, "--yes", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json[0]["worker"] == w.solo and r.json[0]["ok"] is True
    deadline = time.monotonic() + 10
    while extra not in _queues_of(run, w, w.solo) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert set(_queues_of(run, w, w.solo)) == {w.queue_solo, extra}

    r = run(*w.cli, "worker", "consume", extra, "--cancel", "-w", w.solo, "--yes", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json[0]["action"] == "cancel_consumer" and r.json[0]["ok"] is True
    deadline = time.monotonic() + 10
    while extra in _queues_of(run, w, w.solo) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _queues_of(run, w, w.solo) == [w.queue_solo]
    # the other worker was never touched
    assert _queues_of(run, w, w.prefork) == [w.queue_prefork]


def test_consume_needs_exactly_one_of_add_or_cancel(run) -> None:  # type: ignore[no-untyped-def]
    r = run("--broker", BROKER, "worker", "consume", "q", "--yes")
    assert r.exit_code == 2 and "--add or --cancel" in r.stderr


@pytest.fixture(scope="module")
def redis_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    if not port_open("127.0.0.1", 6379):
        service_missing("Redis on 127.0.0.1:6379")
    w = start_workers(tmp_path_factory.mktemp("redis-workers"), REDIS_URL, {"solo": ["-P", "solo"]})
    try:
        yield w
    finally:
        stop_workers(w)


def test_redis_list_ends_once_the_bound_worker_answered(run, redis_worker: Workers) -> None:  # type: ignore[no-untyped-def]
    """Redis: the expected workers come from the set _kombu.binding.<namespace>.pidbox."""
    w = redis_worker
    start = time.monotonic()
    r = run(*w.cli, "worker", "list", "--timeout", "5", "-o", "json")
    elapsed = time.monotonic() - start
    assert r.exit_code == 0, r.stderr
    assert [(x["worker"], x["state"], x["pool"]) for x in r.json] == [(w.solo, "online", "solo")]
    assert r.json[0]["queues"] == [w.queue_solo]
    assert elapsed < 0.8 * 5, f"worker list took {elapsed:.2f}s"


def test_events_say_how_to_turn_them_on_when_none_arrive(run, two_workers: Workers) -> None:  # type: ignore[no-untyped-def]
    """The test workers run without -E: only worker heartbeats arrive on their event exchange."""
    w = two_workers
    start = time.monotonic()
    r = run(*w.cli, "events", "--timeout", "1.5", "--state", "succeeded", "-o", "jsonl")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    assert "worker events --enable" in r.stderr and "-E" in r.stderr
    assert time.monotonic() - start < 10


def test_enable_events_then_follow_a_task(run, two_workers: Workers) -> None:  # type: ignore[no-untyped-def]
    w = two_workers
    r = run(*w.cli, "worker", "events", "--enable", "-w", w.prefork, "-w", w.solo, "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert {x["worker"] for x in r.json} == {w.prefork, w.solo} and all(x["ok"] for x in r.json), r.json
    argv = [sys.executable, "-m", "taskctl", *w.cli, "events", "--task", "wk.add", "--limit", "6"]
    argv += ["--timeout", "40", "-o", "jsonl"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # start-up and the bound queue; tasks sent before would not be seen (not an error)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            w.send("wk.add", [1, 2], w.queue_solo)
            w.send("wk.sleep", [0], w.queue_solo)  # filtered out by --task
            time.sleep(0.5)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        run(*w.cli, "worker", "events", "--disable", "-w", w.prefork, "-w", w.solo)
    assert proc.returncode == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 6
    assert {r["name"] for r in rows} == {"wk.add"}
    assert {r["worker"] for r in rows} == {w.solo}
    kinds = {r["type"] for r in rows}
    assert kinds <= {"task-received", "task-started", "task-succeeded"} and "task-succeeded" in kinds
    done = next(r for r in rows if r["type"] == "task-succeeded")
    assert done["event"]["result"] == "3" and "result=3" in done["info"] and done["time"].endswith("Z")
    got = next((r for r in rows if r["type"] == "task-received"), None)
    assert got is None or got["event"]["args"] == "(1, 2)" or got["event"]["args"] == "[1, 2]"


def test_redis_events_heartbeat(run, redis_worker: Workers) -> None:  # type: ignore[no-untyped-def]
    """Redis: Celery publishes events to a fanout exchange there; a heartbeat arrives within its 2 s interval."""
    w = redis_worker
    r = run(*w.cli, "events", "--state", "heartbeat", "--limit", "1", "--timeout", "15", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert [(x["type"], x["worker"]) for x in r.json] == [("worker-heartbeat", w.solo)]
    assert r.json[0]["event"]["active"] == 0


def test_revoke_by_selector_lists_where_each_task_was_found(run, two_workers: Workers) -> None:  # type: ignore[no-untyped-def]
    w = two_workers
    _wait_idle(run, w, w.prefork)
    running = w.send("wk.sleep", [5], w.queue_prefork)
    later = w.send("wk.add", [7, 8], w.queue_solo, countdown=120)
    deadline = time.monotonic() + 20
    matches: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = run(*w.cli, "task", "revoke", "--task", "wk.*", "--reply-timeout", "2", "--dry-run", "-o", "json")
        assert r.exit_code == 0, r.stderr
        matches = {m["task_id"]: m for m in r.json}
        if running in matches and later in matches:
            break
        time.sleep(0.3)
    assert matches[running]["found"] == [f"worker:{w.prefork}:active"] and matches[running]["name"] == "wk.sleep"
    assert matches[later]["found"] == [f"worker:{w.solo}:scheduled"]

    r = run(*w.cli, "task", "revoke", "--queue", w.queue_solo, "--reply-timeout", "2", "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert [m["task_id"] for m in r.json] == [later]

    r = run(*w.cli, "task", "revoke", "--queue", w.queue_solo, "--task", "wk.add", "--no-mark", "--yes", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["revoked"] == [later]
    assert w.solo in {x["worker"] for x in r.json["replies"]}
    r = run(*w.cli, "task", "revoked", "-o", "json")
    assert later in {x["task_id"] for x in r.json}

    r = run(*w.cli, "task", "revoke", "--task", "no.such.*", "--yes", "-o", "json")
    assert r.exit_code == 3 and "no task matched" in r.stderr
    r = run(*w.cli, "task", "revoke", running, "--task", "wk.*", "--yes")
    assert r.exit_code == 2


def test_revoke_root_selector_uses_the_result_tree(run, two_workers: Workers) -> None:  # type: ignore[no-untyped-def]
    """A root with no stored result yet (PENDING) is its own tree: found in the result backend, not on workers."""
    w = two_workers
    root = str(uuid.uuid4())
    r = run(*w.cli, "--backend", REDIS_URL, "task", "revoke", "--root", root, "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json == [{"task_id": root, "name": None, "found": ["result"]}]


def test_top_once_snapshot(run, two_workers: Workers) -> None:  # type: ignore[no-untyped-def]
    w = two_workers
    r = run(*w.cli, "worker", "events", "--enable", "-w", w.prefork, "-w", w.solo)
    assert r.exit_code == 0, r.stderr
    argv = [sys.executable, "-m", "taskctl", *w.cli, "top", "--once", "--window", "6", "-o", "json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)
        while proc.poll() is None:
            w.send("wk.add", [2, 2], w.queue_solo)
            w.send("wk.fail", ["boom-top"], w.queue_prefork)
            time.sleep(0.4)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        run(*w.cli, "worker", "events", "--disable", "-w", w.prefork, "-w", w.solo)
    assert proc.returncode == 0, err
    rows = json.loads(out)
    by = {(x["kind"], x["name"]): x for x in rows}
    for name in (w.prefork, w.solo):
        assert by[("worker", name)]["values"]["state"] == "up"
        assert by[("worker", name)]["values"]["processed"] >= 0
    # the management API's counters of a queue a few seconds old lag (stats rounds every 5 s): shape only
    assert set(by[("queue", w.queue_solo)]["values"]) == {"ready", "unacked", "consumers", "rate_in", "rate_out"}
    add = by[("task", "wk.add")]["values"]
    assert add["succeeded"] > 0 and add["runtime_p50"] is not None and add["runtime_p95"] >= add["runtime_p50"]
    assert by[("task", "wk.fail")]["values"]["failed"] > 0
    fails = [x for x in rows if x["kind"] == "failure"]
    assert fails and all(x["name"] == "wk.fail" and "boom-top" in x["values"]["exception"] for x in fails)

    r = run(*w.cli, "top", "--window", "0.5", "-o", "json")  # off a terminal: one snapshot, --once or not
    assert r.exit_code == 0, r.stderr
    assert {(x["kind"], x["name"]) for x in r.json} >= {("worker", w.prefork), ("worker", w.solo)}


def test_list_without_the_management_api_waits_the_timeout(run, two_workers: Workers) -> None:  # type: ignore[no-untyped-def]
    """No way to know the bound workers: the round ends after --timeout without a reply, as Celery's does."""
    w = two_workers
    start = time.monotonic()
    r = run(*w.cli, "--management-url", "http://127.0.0.1:9", "worker", "list", "--timeout", "1.5", "-o", "json")
    elapsed = time.monotonic() - start
    assert r.exit_code == 0, r.stderr
    assert {x["worker"] for x in r.json} == {w.prefork, w.solo}
    assert elapsed >= 1.5
