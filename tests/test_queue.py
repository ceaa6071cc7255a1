"""`taskctl queue ...` end to end, one contract run on every transport: RabbitMQ, Redis, kombu's filesystem://
and memory:// (in-process only). The embedded transports need no server, so the contract runs everywhere."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import RABBITMQ_URL, REDIS_URL, port_open, service_missing

from taskctl import backends
from taskctl.formats.message import build_task_message

# the adapter class, loaded the way the operations load it
KombuBroker = backends.load(backends.BROKER)


@dataclass
class Env:
    url: str
    broker: Any
    queue: str
    other: str
    scheme: str

    def fill(self, n: int, queue: str | None = None, names: tuple[str, ...] = ("app.add", "app.mul")) -> list[str]:
        q = queue or self.queue
        ids = []
        with self.broker.publisher() as pub:
            for i in range(n):
                tid = f"{q}-{i:05d}"
                ids.append(tid)
                pub.publish(build_task_message(names[i % len(names)], [i, i], {}, task_id=tid, queue=q), "", q)
            pub.flush()
        return ids


def _make(kind: str, tmp_path: Path, unique_name: str) -> Env:
    opts: dict[str, Any] = {}
    if kind == "amqp":
        if not port_open("127.0.0.1", 5672):
            service_missing("RabbitMQ on 127.0.0.1:5672")
        url = RABBITMQ_URL
    elif kind == "redis":
        if not port_open("127.0.0.1", 6379):
            service_missing("Redis on 127.0.0.1:6379")
        url = REDIS_URL
    elif kind == "filesystem":
        folder = tmp_path / "fsq"
        folder.mkdir()
        opts = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
        url = "filesystem://"
    else:
        url = "memory://"
    cfg = Path("taskctl.toml")
    lines = ["[default]", f'broker = "{url}"']
    if opts:
        lines.append("[default.transport_options]")
        lines += [f'{k} = "{v}"' for k, v in opts.items()]
    cfg.write_text("\n".join(lines) + "\n")
    broker = KombuBroker(url, opts)
    env = Env(url, broker, unique_name, unique_name + "-dst", kind)
    if kind in ("amqp", "memory"):
        for q in (env.queue, env.other):
            broker.declare_queue(q)
    return env


@pytest.fixture(params=["amqp", "redis", "filesystem", "memory"])
def qenv(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[Env]:
    env = _make(request.param, tmp_path, unique_name)
    yield env
    for q in (env.queue, env.other):
        try:
            if env.scheme == "amqp":
                env.broker.delete_queue(q)
            else:
                env.broker.purge(q)
        except Exception:
            pass


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_stats_counts_ready_messages(qenv: Env, run: Any) -> None:
    qenv.fill(7)
    r = run("queue", "stats", qenv.queue, "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json[0]["queue"] == qenv.queue and r.json[0]["messages"] == 7
    assert r.json[0]["consumers"] == (0 if qenv.scheme == "amqp" else None)


def test_peek_shows_decoded_and_leaves_messages(qenv: Env, run: Any) -> None:
    ids = qenv.fill(5)
    r = run("queue", "peek", qenv.queue, "-n", "3", "-o", "json")
    assert r.exit_code == 0, r.stderr
    got = r.json
    assert len(got) == 3 and {m["task_id"] for m in got} <= set(ids)
    assert got[0]["kind"] == "task" and got[0]["task"] in ("app.add", "app.mul") and got[0]["size"] > 0
    assert run("queue", "stats", qenv.queue, "-o", "json").json[0]["messages"] == 5
    if qenv.scheme in ("amqp", "redis"):
        assert [m["task_id"] for m in got] == ids[:3]


def test_drain_to_file_then_publish_back_byte_exact(qenv: Env, run: Any, tmp_path: Path) -> None:
    ids = qenv.fill(12)
    before = run("queue", "peek", qenv.queue, "-n", "1", "-o", "json").json[0]["message"]
    out = tmp_path / "drain.jsonl"
    r = run("queue", "drain", "--yes", qenv.queue, "--file", str(out), "--idle", "0.5", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["count"] == 12 and r.json["action"] == "drain"
    recs = lines(out)
    assert sorted(x["task_id"] for x in recs) == sorted(ids)
    assert run("queue", "stats", qenv.queue, "-o", "json").json[0]["messages"] == 0
    first = next(x for x in recs if x["task_id"] == before["headers"]["id"])
    assert first["message"]["body"] == before["body"] and first["message"]["headers"] == before["headers"]
    # a second drain appends (never truncates); publish sends each id once
    qenv.fill(2)
    run("queue", "drain", "--yes", qenv.queue, "--file", str(out), "--idle", "0.3")
    assert len(lines(out)) == 14
    r = run("queue", "publish", str(out), "--to", qenv.other, "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert (r.json["count"], r.json["skipped"]) == (12, 2)
    back = run("queue", "peek", qenv.other, "-n", "20", "-o", "json").json
    assert {m["task_id"] for m in back} == set(ids)
    one = next(m for m in back if m["task_id"] == first["task_id"])
    assert base64.b64decode(one["message"]["body"]) == base64.b64decode(first["message"]["body"])
    assert one["message"]["headers"] == first["message"]["headers"]


def test_drain_limit_and_stdout_lines(qenv: Env, run: Any) -> None:
    qenv.fill(6)
    r = run("queue", "drain", "--yes", qenv.queue, "--limit", "4", "--idle", "0.5")
    assert r.exit_code == 0, r.stderr
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(recs) == 4 and all("message" in x and x["kind"] == "task" for x in recs)
    assert run("queue", "stats", qenv.queue, "-o", "json").json[0]["messages"] == 2


def test_drain_task_glob_one_pass_puts_others_back_in_order(qenv: Env, run: Any, tmp_path: Path) -> None:
    ids = qenv.fill(10)
    out = tmp_path / "adds.jsonl"
    r = run(
        "queue", "drain", "--yes", qenv.queue, "--task", "app.add", "--file", str(out), "--idle", "0.5", "-o", "json"
    )
    assert r.exit_code == 0, r.stderr
    # RabbitMQ returns the messages not taken to their place (never acked), elsewhere they go back to the tail
    put_back = 0 if qenv.scheme == "amqp" else 5
    assert (r.json["count"], r.json["put_back"], r.json["stopped"]) == (5, put_back, "one-pass")
    assert {x["task"] for x in lines(out)} == {"app.add"}
    rest = run("queue", "peek", qenv.queue, "-n", "10", "-o", "json").json
    assert {m["task"] for m in rest} == {"app.mul"}
    if qenv.scheme in ("amqp", "redis", "memory"):
        assert [m["task_id"] for m in rest] == [i for n, i in enumerate(ids) if n % 2 == 1]


def test_move_with_task_and_limit(qenv: Env, run: Any) -> None:
    qenv.fill(8)
    r = run(
        "queue",
        "move",
        "--yes",
        qenv.queue,
        qenv.other,
        "--task",
        "app.mul",
        "--limit",
        "3",
        "--idle",
        "0.5",
        "-o",
        "json",
    )
    assert r.exit_code == 0, r.stderr
    assert r.json["count"] == 3 and r.json["action"] == "move"
    moved = run("queue", "peek", qenv.other, "-n", "10", "-o", "json").json
    assert len(moved) == 3 and {m["task"] for m in moved} == {"app.mul"}
    assert run("queue", "stats", qenv.queue, "-o", "json").json[0]["messages"] == 5


def test_purge_needs_yes_reports_counts_and_dry_run(qenv: Env, run: Any) -> None:
    qenv.fill(4)
    assert run("queue", "purge", qenv.queue).exit_code == 2
    r = run("queue", "purge", qenv.queue, "--dry-run", "-o", "json")
    assert r.json == [{"queue": qenv.queue, "purged": 4, "dry_run": True, "note": None}]
    r = run("queue", "purge", qenv.queue, "--yes", "-o", "json")
    assert r.exit_code == 0 and r.json[0]["queue"] == qenv.queue and r.json[0]["purged"] == 4
    assert run("queue", "stats", qenv.queue, "-o", "json").json[0]["messages"] == 0


def test_missing_queue(qenv: Env, run: Any) -> None:
    r = run("queue", "stats", qenv.queue + "-nope", "-o", "json")
    if qenv.scheme == "amqp" or qenv.scheme == "memory":
        assert r.exit_code == 3 and "does not exist" in r.stderr
        r = run("queue", "purge", qenv.queue + "-nope", "--yes")
        assert r.exit_code == 3
        r = run("queue", "purge", qenv.queue + "-nope", "--yes", "--missing-ok", "-o", "json")
        assert r.exit_code == 0 and r.json == [
            {"queue": qenv.queue + "-nope", "purged": 0, "dry_run": False, "note": "missing"}
        ]
    else:
        assert r.exit_code == 0 and r.json[0]["messages"] == 0 and r.json[0]["note"] == "empty or missing"


def test_filesystem_warns_about_ack_after_delete(tmp_path: Path, unique_name: str, run: Any) -> None:
    env = _make("filesystem", tmp_path, unique_name)
    env.fill(1)
    r = run("queue", "drain", "--yes", env.queue, "--file", str(tmp_path / "x.jsonl"), "--idle", "0.3")
    assert r.exit_code == 0 and "filesystem:// transport deletes a message" in r.stderr
