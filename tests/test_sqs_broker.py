"""SQS as a Celery broker, on moto's server (tests/conftest.py ``sqs_endpoint``) reached as a real endpoint through
boto3, kombu and a real Celery worker: stats and list, peek and its refusal, purge twice, drain and move in
batches, SIGKILL at random moments, requeue from a dead-letter queue run by a worker.

What moto (5.2) does not do as AWS does, and how the tests live with it:

- StartMessageMoveTask / ListMessageMoveTasks are not implemented: requeue always receives, sends and deletes
  (which it does anyway, to check each task's expires/eta and report it).
- Counts are exact at once (AWS's ``ApproximateNumberOf*`` lag by up to a minute), a purge takes effect at once
  (AWS: up to 60 s), and a short poll sees every message (AWS samples a subset of its servers; taskctl long-polls
  for a second).
- The one-purge-a-minute rule is moto's own (``MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR``, on by default):
  no stub is needed for PurgeQueueInProgress.
- A receipt handle stays valid after its visibility timeout ran out (AWS may refuse it); visibility runs out
  on the next receive, not on a timer. Dead-lettering happens on receive, past maxReceiveCount, as on AWS.
- Moto is slow (tens of ms a request, growing with the queue), so the queues hold hundreds of messages, not
  tens of thousands, and the kill tests use a visibility timeout of 20 s.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from taskctl import backends
from taskctl.formats.message import build_task_message

VISIBILITY = 20


def broker(url: str, **opts: Any) -> Any:
    cls = backends.broker_class(url)
    return cls.from_url(
        url, transport_options={"region": "us-east-1", "taskctl_visibility_timeout": VISIBILITY, **opts}
    )


def write_config(url: str, **opts: Any) -> None:
    """./taskctl.toml (the tests run in tmp_path) naming the broker and its transport options."""
    import tomlkit

    options = {"region": "us-east-1", "taskctl_visibility_timeout": VISIBILITY, **opts}
    Path("taskctl.toml").write_text(tomlkit.dumps({"default": {"broker": url, "transport_options": options}}))


@pytest.fixture
def sqs(sqs_url: str, unique_name: str) -> Any:
    """A broker on moto, the config file pointing at it, and a name for this test's queues."""
    write_config(sqs_url)
    b = broker(sqs_url)
    yield b, unique_name
    for q in b.iter_queues():
        if q.queue.startswith(unique_name):
            b.delete_queue(q.queue)


def with_dlq(b: Any, name: str, max_receives: int) -> tuple[str, str]:
    dlq = name + "-dlq"
    b.declare_queue(dlq)
    policy = {"deadLetterTargetArn": b.queue_arn(dlq), "maxReceiveCount": max_receives}
    b.declare_queue(name, attributes={"RedrivePolicy": json.dumps(policy)})
    return name, dlq


def fill(b: Any, q: str, n: int, prefix: str = "s") -> set[str]:
    ids = set()
    with b.publisher() as pub:
        for i in range(n):
            tid = f"{prefix}-{i:05d}"
            ids.add(tid)
            pub.publish(build_task_message("app.add", [i, i], {}, task_id=tid, queue=q), "", q)
        pub.flush()
    return ids


def file_ids(path: Path) -> list[str]:
    out: list[str] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line)["task_id"])
        except ValueError:
            continue  # a partial last line of a killed writer
    return out


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def wait_for(cond: Any, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def celery_app(url: str, queue: str) -> Any:
    """A Celery client on the same broker, as an application would send tasks."""
    from celery import Celery

    app = Celery("sq_client", broker=url)
    app.conf.update(
        broker_transport_options={"region": "us-east-1", "wait_time_seconds": 1},
        task_default_queue=queue,
    )
    return app


# -- looking ----------------------------------------------------------------------------------------------------


def test_stats_and_list_show_visible_in_flight_delayed_and_redrive(run: Any, sqs: Any) -> None:
    b, name = sqs
    src, dlq = with_dlq(b, name, 3)
    fill(b, src, 5)
    client = b.client()
    url = b.queue_url(src)
    client.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=300)
    client.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=300)

    r = run("queue", "stats", src, "-o", "json")
    assert r.exit_code == 0, r.stderr
    (row,) = r.json
    assert (row["messages"], row["in_flight"], row["delayed"]) == (3, 2, 1)
    assert (row["dead_letter_queue"], row["max_receive_count"], row["consumers"]) == (dlq, 3, None)

    r = run("queue", "list", "--match", f"{name}*", "-o", "json")
    assert r.exit_code == 0, r.stderr
    rows = {x["queue"]: x for x in r.json}
    assert set(rows) == {src, dlq}
    assert (rows[src]["ready"], rows[src]["unacked"], rows[src]["delayed"]) == (3, 2, 1)
    assert (rows[src]["dead_letter_queue"], rows[src]["delivery_limit"]) == (dlq, 3)
    assert rows[dlq]["dead_letter_queue"] is None and rows[dlq]["messages"] == 0

    r = run("queue", "list", "--match", f"{name}*")
    assert r.exit_code == 0 and dlq in r.stdout


def test_kombu_queue_names_and_missing_queue(run: Any, sqs: Any) -> None:
    """A Celery queue 'a.b' is SQS queue 'a-b' (kombu's names); a missing queue is exit 3, one line."""
    b, name = sqs
    dotted = name + ".tasks"
    b.declare_queue(dotted)
    assert b.queue_url(dotted).endswith("/" + name + "-tasks")
    app = celery_app(b.url, dotted)
    app.send_task("app.add", args=[1, 2], queue=dotted)
    r = run("queue", "stats", dotted, "-o", "json")
    assert r.exit_code == 0 and r.json[0]["messages"] == 1, r.stderr
    r = run("queue", "stats", name + "-nosuch")
    assert r.exit_code == 3
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr and "testing:testing" not in r.stderr


def test_unreachable_endpoint_exits_5_without_the_secret(run: Any, sqs: Any) -> None:
    r = run("queue", "stats", "q", "--broker", "sqs://KEY:s3cret@127.0.0.1:1")
    assert r.exit_code == 5
    assert "cannot reach SQS" in r.stderr and "s3cret" not in r.stderr and "Traceback" not in r.stderr


def test_peek_refuses_where_receives_count_toward_a_dlq(run: Any, sqs: Any) -> None:
    b, name = sqs
    src, _ = with_dlq(b, name, 2)
    ids = fill(b, src, 3)
    r = run("queue", "peek", src)
    assert r.exit_code == 4
    assert "dead-letter" in r.stderr and "--force" in r.stderr
    assert b.stats(src).messages == 3  # nothing was received

    r = run("queue", "peek", src, "--force", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert {x["task_id"] for x in r.json} == ids
    assert {x["task"] for x in r.json} == {"app.add"}
    c = b.stats(src)
    assert (c.messages, c.in_flight) == (3, 0)  # released at once

    plain = name + "-plain"
    b.declare_queue(plain)
    fill(b, plain, 2)
    r = run("queue", "peek", plain, "-o", "json")
    assert r.exit_code == 0 and len(r.json) == 2, r.stderr
    assert b.stats(plain).messages == 2


def test_purge_twice_within_a_minute_exits_4(run: Any, sqs: Any) -> None:
    b, name = sqs
    b.declare_queue(name)
    fill(b, name, 7)
    r = run("queue", "purge", name, "--yes", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json[0]["purged"] == 7
    assert b.stats(name).messages == 0
    fill(b, name, 1)
    r = run("queue", "purge", name, "--yes")
    assert r.exit_code == 4
    assert "one purge a minute" in r.stderr and "again at" in r.stderr and "Traceback" not in r.stderr
    assert b.stats(name).messages == 1


# -- envelope, both directions ----------------------------------------------------------------------------------


def test_celery_messages_round_trip_through_drain_and_move(run: Any, sqs: Any, tmp_path: Path) -> None:
    """Celery (kombu's SQS transport) sends; taskctl drains and moves; kombu reads the moved message as sent."""
    from kombu import Connection

    b, name = sqs
    src, dst = name, name + "-dst"
    b.declare_queue(src)
    b.declare_queue(dst)
    app = celery_app(b.url, src)
    sent = [app.send_task("app.add", args=[i, 1], kwargs={"k": i}, queue=src).id for i in range(3)]

    r = run("queue", "move", src, dst, "--yes", "--idle", "1", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["count"] == 3
    got: dict[str, Any] = {}
    with Connection(b.url, transport_options={"region": "us-east-1", "wait_time_seconds": 1}) as conn:
        q = conn.SimpleQueue(dst)
        for _ in range(3):
            m = q.get(timeout=10)
            got[m.headers["id"]] = (m.headers["task"], m.decode()[0], m.content_type, m.delivery_info["routing_key"])
            m.ack()
    assert set(got) == set(sent)
    assert all(v[0] == "app.add" and v[2] == "application/json" and v[3] == dst for v in got.values())
    assert sorted(v[1] for v in got.values()) == [[0, 1], [1, 1], [2, 1]]

    app.send_task("app.add", args=[5, 5], queue=src, task_id="drained-1")
    out = tmp_path / "d.jsonl"
    r = run("queue", "drain", src, "--yes", "--file", str(out), "--idle", "1")
    assert r.exit_code == 0, r.stderr
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert (line["task_id"], line["task"]) == ("drained-1", "app.add")


def test_drain_and_move_in_batches(run: Any, sqs: Any, tmp_path: Path) -> None:
    b, name = sqs
    src, dst = name, name + "-dst"
    b.declare_queue(src)
    b.declare_queue(dst)
    ids = fill(b, src, 230)
    r = run("queue", "move", src, dst, "--yes", "--idle", "1", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["count"] == 230
    assert (b.stats(src).messages, b.stats(dst).messages) == (0, 230)
    out = tmp_path / "all.jsonl"
    r = run("queue", "drain", dst, "--yes", "--file", str(out), "--idle", "1", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["count"] == 230
    assert Counter(file_ids(out)) == Counter(ids)
    c = b.stats(dst)
    assert (c.messages, c.in_flight) == (0, 0)


# -- SIGKILL -----------------------------------------------------------------------------------------------------

TOTAL = 300
#: the transfer engine deletes every 500 messages at most: duplicates stay below that
MAX_DUPS = 500


def _kill(p: subprocess.Popen[Any], cond: Any) -> None:
    try:
        wait_for(lambda: cond() or p.poll() is not None, timeout=120)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()


def _finish(run: Any, b: Any, q: str, path: Path) -> None:
    """Wait out the visibility timeout of what the killed process held, then drain the rest."""
    wait_for(lambda: b.stats(q).in_flight == 0, timeout=VISIBILITY * 3)
    r = run("queue", "drain", "--yes", q, "--file", str(path), "--idle", "2")
    assert r.exit_code == 0, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_drain_loses_nothing(run: Any, sqs: Any, taskctl_cmd: list[str], tmp_path: Path, seed: int) -> None:
    b, name = sqs
    b.declare_queue(name)
    ids = fill(b, name, TOTAL)
    kill_at = random.Random(seed).randrange(1, TOTAL - 50)
    out = tmp_path / "drain.jsonl"
    p = subprocess.Popen([*taskctl_cmd, "queue", "drain", "--yes", name, "--file", str(out)], stderr=subprocess.DEVNULL)
    _kill(p, lambda: count_lines(out) >= kill_at)
    assert count_lines(out) < TOTAL, "drain finished before the kill"
    _finish(run, b, name, out)
    got = Counter(file_ids(out))
    assert set(got) == ids, f"lost {len(ids - set(got))}"
    assert sum(got.values()) - len(got) <= MAX_DUPS


@pytest.mark.slow
@pytest.mark.parametrize("seed", [4, 5])
def test_sigkill_move_loses_nothing(run: Any, sqs: Any, taskctl_cmd: list[str], tmp_path: Path, seed: int) -> None:
    b, name = sqs
    src, dst = name, name + "-dst"
    b.declare_queue(src)
    b.declare_queue(dst)
    ids = fill(b, src, TOTAL)
    kill_at = random.Random(seed).randrange(10, TOTAL - 50)
    p = subprocess.Popen([*taskctl_cmd, "queue", "move", "--yes", src, dst], stderr=subprocess.DEVNULL)
    _kill(p, lambda: b.stats(dst).messages >= kill_at)
    assert b.stats(dst).messages < TOTAL, "move finished before the kill"
    out_src, out_dst = tmp_path / "src.jsonl", tmp_path / "dst.jsonl"
    _finish(run, b, src, out_src)
    _finish(run, b, dst, out_dst)
    got = Counter(file_ids(out_src) + file_ids(out_dst))
    assert set(got) == ids, f"lost {len(ids - set(got))}"
    assert sum(got.values()) - len(got) <= MAX_DUPS


@pytest.mark.slow
def test_sigkill_requeue_loses_nothing(run: Any, sqs: Any, taskctl_cmd: list[str], tmp_path: Path) -> None:
    b, name = sqs
    src, dst = name, name + "-dst"
    b.declare_queue(src)
    b.declare_queue(dst)
    ids = fill(b, src, TOTAL)
    kill_at = random.Random(6).randrange(10, TOTAL - 50)
    argv = [*taskctl_cmd, "task", "requeue", "--from", src, "--to", dst, "--yes", "-o", "jsonl"]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill(p, lambda: b.stats(dst).messages >= kill_at)
    assert b.stats(dst).messages < TOTAL, "requeue finished before the kill"
    out_src, out_dst = tmp_path / "src.jsonl", tmp_path / "dst.jsonl"
    _finish(run, b, src, out_src)
    _finish(run, b, dst, out_dst)
    got = Counter(file_ids(out_src) + file_ids(out_dst))
    assert set(got) == ids, f"lost {len(ids - set(got))}"
    assert sum(got.values()) - len(got) <= MAX_DUPS


# -- requeue from a dead-letter queue, run by a real worker ------------------------------------------------------

WORKER_APP = """
import os
import pathlib

from celery import Celery

app = Celery("sq_app", broker=os.environ["SQ_BROKER"])
app.conf.update(
    broker_transport_options={"region": "us-east-1", "wait_time_seconds": 1, "polling_interval": 0.2},
    broker_connection_retry_on_startup=True,
    task_default_queue=os.environ["SQ_QUEUE"],
    worker_enable_remote_control=False,
    worker_prefetch_multiplier=1,
)


@app.task(name="sq.touch")
def touch(path):
    pathlib.Path(path).write_text("ran")
    return "touched"
"""


def _dead_letter(b: Any, src: str, dlq: str, n: int) -> None:
    """Receive SRC's messages past maxReceiveCount (1), as failing workers would, until SQS moved them to DLQ."""
    client, url = b.client(), b.queue_url(src)
    end = time.monotonic() + 60
    while b.stats(dlq).messages < n:
        assert time.monotonic() < end, "messages not dead-lettered"
        client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)


@pytest.mark.celery
def test_requeue_from_dlq_back_to_its_source_and_a_worker_runs_it(run: Any, sqs: Any, tmp_path: Path) -> None:
    pytest.importorskip("pycurl", reason="kombu's SQS transport needs pycurl in a worker")
    b, name = sqs
    src, dlq = with_dlq(b, name, 1)
    app = celery_app(b.url, src)
    markers = [tmp_path / f"ran-{i}" for i in range(2)]
    ids = [app.send_task("sq.touch", args=[str(m)], queue=src).id for m in markers]
    _dead_letter(b, src, dlq, 2)
    assert b.stats(src).messages == 0

    r = run("task", "requeue", "--from", dlq, "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert sorted((x["task_id"], x["action"], x["queue"]) for x in r.json) == sorted(
        (i, "would-requeue", src) for i in ids
    )
    assert b.stats(dlq).messages == 2  # a dry run deletes nothing

    r = run("task", "requeue", "--from", dlq, "--yes", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert sorted((x["task_id"], x["task"], x["action"], x["queue"]) for x in r.json) == sorted(
        (i, "sq.touch", "requeued", src) for i in ids
    )
    assert (b.stats(dlq).messages, b.stats(src).messages) == (0, 2)

    (tmp_path / "sq_app.py").write_text(WORKER_APP)
    env = {**os.environ, "SQ_BROKER": b.url, "SQ_QUEUE": src, "PYTHONPATH": str(tmp_path)}
    log = tmp_path / "worker.log"
    argv = [sys.executable, "-m", "celery", "-A", "sq_app", "worker", "-P", "solo", "-Q", src, "-l", "info"]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    with log.open("wb") as fh:
        w = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=fh, stderr=fh)
    try:
        wait_for(lambda: all(m.exists() for m in markers) or w.poll() is not None, timeout=90)
        assert all(m.read_text() == "ran" for m in markers), log.read_text()[-3000:]
        wait_for(lambda: b.stats(src).messages + (b.stats(src).in_flight or 0) == 0, timeout=30)
    finally:
        w.send_signal(signal.SIGTERM)
        try:
            w.wait(20)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def test_requeue_from_a_queue_no_redrive_policy_names(run: Any, sqs: Any) -> None:
    """Without a source queue to go back to, each message is skipped (and stays) until --to names one."""
    b, name = sqs
    b.declare_queue(name)
    b.declare_queue(name + "-to")
    ids = fill(b, name, 2)
    r = run("task", "requeue", "--from", name, "--yes", "-o", "json")
    assert {x["action"] for x in r.json} == {"skipped"}
    assert "pass --to" in r.json[0]["note"]
    assert b.stats(name).messages == 2
    r = run("task", "requeue", "--from", name, "--to", name + "-to", "--yes", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert {x["task_id"] for x in r.json if x["action"] == "requeued"} == ids
    assert b.stats(name + "-to").messages == 2


def test_bodies_that_are_not_kombu_envelopes_never_stop_a_drain(run: Any, sqs: Any, tmp_path: Path) -> None:
    """Stored data is untrusted: raw text, base64 of non-JSON, a JSON list, a bad inner body, deep nesting."""
    import base64

    b, name = sqs
    b.declare_queue(name)
    bodies = [
        "plain text, not base64",
        base64.b64encode(b"\xff\xfe not utf-8").decode(),
        base64.b64encode(b"[1, 2, 3]").decode(),
        base64.b64encode(json.dumps({"body": "%%%", "properties": {"body_encoding": "base64"}}).encode()).decode(),
        "[" * 50_000,
    ]
    client, url = b.client(), b.queue_url(name)
    for body in bodies:
        client.send_message(QueueUrl=url, MessageBody=body)
    fill(b, name, 1, prefix="good")
    out = tmp_path / "poison.jsonl"
    r = run("queue", "drain", name, "--yes", "--file", str(out), "--idle", "1", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["count"] == 6
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 6 and "good-00000" in [x.get("task_id") for x in lines]
    assert b.stats(name).messages == 0


def test_a_drain_longer_than_the_visibility_timeout_deletes_before_it_runs_out(
    sqs_url: str, unique_name: str, taskctl_cmd: list[str]
) -> None:
    """A 4 s visibility timeout and a reader that takes 8 s to read 200 lines: taskctl deletes what it holds
    after 2 s, so SQS never hands a message out twice, and the drain runs to the end."""
    write_config(sqs_url, taskctl_visibility_timeout=4)
    b = broker(sqs_url)
    b.declare_queue(unique_name)
    try:
        ids = fill(b, unique_name, 200)
        argv = [*taskctl_cmd, "queue", "drain", unique_name, "--yes", "-o", "jsonl", "--idle", "1"]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stderr is not None
        got: list[str] = []
        t = time.monotonic()
        for line in p.stdout:
            got.append(json.loads(line)["task_id"])
            time.sleep(0.04)
        took = time.monotonic() - t
        err = p.stderr.read()
        assert p.wait(30) == 0, err
        assert took > 4
        assert Counter(got) == Counter(ids)
        assert "could not be deleted" not in err
        assert b.stats(unique_name).messages == 0
    finally:
        b.delete_queue(unique_name)


def test_queue_name_prefix_and_predefined_queues(run: Any, sqs_url: str, unique_name: str) -> None:
    """As kombu reads them: the prefix is added to every name (and taken off in listings); with
    predefined_queues only those queues exist for taskctl."""
    prefix = unique_name[:20] + "-"
    write_config(sqs_url, queue_name_prefix=prefix)
    b = broker(sqs_url, queue_name_prefix=prefix)
    b.declare_queue("jobs.low")
    try:
        assert b.queue_url("jobs.low").endswith("/" + prefix + "jobs-low")
        fill(b, "jobs.low", 2)
        r = run("queue", "list", "-o", "json")
        assert r.exit_code == 0, r.stderr
        assert [x["queue"] for x in r.json] == ["jobs-low"]
        r = run("queue", "stats", "jobs.low", "-o", "json")
        assert r.exit_code == 0 and r.json[0]["messages"] == 2, r.stderr

        url = b.queue_url("jobs.low")
        write_config(sqs_url, predefined_queues={prefix + "jobs-low": {"url": url}}, queue_name_prefix=prefix)
        r = run("queue", "list", "-o", "json")
        assert [x["queue"] for x in r.json] == ["jobs-low"]
        r = run("queue", "stats", "other")
        assert r.exit_code == 3 and "predefined_queues" in r.stderr
    finally:
        b.delete_queue("jobs.low")


def test_a_message_the_destination_refuses_is_not_deleted(run: Any, sqs: Any, tmp_path: Path) -> None:
    """A destination with a 1 KiB MaximumMessageSize refuses the big message: move exits 1 and says what was
    done; every message is still in the source or in the destination (the refused one in the source)."""
    b, name = sqs
    src, dst = name, name + "-small"
    b.declare_queue(src)
    b.declare_queue(dst, attributes={"MaximumMessageSize": "1024"})
    ids = fill(b, src, 25)
    with b.publisher() as pub:
        pub.publish(build_task_message("app.big", ["x" * 3000], {}, task_id="big", queue=src), "", src)
        pub.flush()
    r = run("queue", "move", src, dst, "--yes", "--idle", "1")
    assert r.exit_code == 1
    assert "shorter than 1024" in r.stderr and "Traceback" not in r.stderr and "testing:testing" not in r.stderr
    assert b.stats(src).in_flight == 0  # released at once on the way out
    out_src, out_dst = tmp_path / "src.jsonl", tmp_path / "dst.jsonl"
    for q, out in ((src, out_src), (dst, out_dst)):
        r = run("queue", "drain", q, "--yes", "--file", str(out), "--idle", "1")
        assert r.exit_code == 0, r.stderr
    assert "big" in file_ids(out_src)
    assert set(file_ids(out_src) + file_ids(out_dst)) == ids | {"big"}
