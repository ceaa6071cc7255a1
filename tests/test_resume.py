"""Resumable broker work on real RabbitMQ: `--checkpoint FILE` (a run killed with SIGKILL and started again goes on
where it stopped and repeats nothing acked) and `--retries N` (a connection closed by the broker mid-run is opened
again and the run finishes). Duplicates are counted by task id in what the destination ends up holding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_kill import TOTAL, count_lines, file_ids, fill, wait_for
from test_transfer import _close_connection

from taskctl import backends

KombuBroker = backends.load(backends.BROKER)
#: the transfer engine's batch: what one kill can leave published but not yet confirmed
BATCH = 500


@pytest.fixture
def queues(rabbitmq_url: str, unique_name: str) -> Any:
    b = KombuBroker(rabbitmq_url)
    names = [unique_name, unique_name + "-dst"]
    for q in names:
        b.declare_queue(q)
    yield b, names
    for q in names:
        b.delete_queue(q)


def need_management() -> None:
    from conftest import port_open, service_missing

    if not port_open("127.0.0.1", 15672):
        service_missing("RabbitMQ management API on 127.0.0.1:15672")


def kill_when(p: subprocess.Popen[Any], cond: Any) -> None:
    try:
        wait_for(lambda: cond() or p.poll() is not None)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()


def collect(run: Any, url: str, q: str, path: Path) -> list[str]:
    """Every task id in Q (drained into PATH), in order."""
    r = run("queue", "drain", "--yes", q, "--file", str(path), "--idle", "1", "--broker", url)
    assert r.exit_code == 0, r.stderr
    return file_ids(path)


def drain_cmd(q: str, out: Path, ckpt: Path, url: str) -> list[str]:
    return ["queue", "drain", "--yes", q, "--file", str(out), "--checkpoint", str(ckpt), "--broker", url]


def move_cmd(src: str, dst: str, ckpt: Path, url: str) -> list[str]:
    return ["queue", "move", "--yes", src, dst, "--checkpoint", str(ckpt), "--broker", url]


def dups(ids: list[str]) -> int:
    c = Counter(ids)
    return sum(c.values()) - len(c)


# -- --checkpoint: SIGKILL and run again ---------------------------------------------------------------------------


def test_killed_drain_resumed_with_checkpoint_writes_each_message_once(
    queues: Any, rabbitmq_url: str, run: Any, taskctl_cmd: list[str], tmp_path: Path
) -> None:
    """Two SIGKILLs mid-drain, then a rerun: the file holds every message exactly once, and the summary says how
    many earlier runs wrote."""
    b, (q, _) = queues
    ids = fill(b, q)
    out, ckpt = tmp_path / "drain.jsonl", tmp_path / "drain.ckpt"
    cmd = [*taskctl_cmd, "queue", "drain", "--yes", q, "--file", str(out), "--checkpoint", str(ckpt)]
    for kill_at in (4_000, 11_000):
        p = subprocess.Popen([*cmd, "--broker", rabbitmq_url])
        kill_when(p, lambda n=kill_at: count_lines(out) >= n)
    assert b.stats(q).messages > 0, "drain finished before the kill"
    r = run(*drain_cmd(q, out, ckpt, rabbitmq_url), "--idle", "1", "-o", "json")
    assert r.exit_code == 0, r.stderr
    got = file_ids(out)
    assert set(got) == ids and dups(got) == 0 and len(got) == TOTAL
    assert r.json["earlier"] > 0 and r.json["earlier"] + r.json["count"] == TOTAL
    assert b.stats(q).messages == 0


def test_killed_move_resumed_with_checkpoint_loses_nothing_and_repeats_at_most_the_batch_in_flight(
    queues: Any, rabbitmq_url: str, run: Any, taskctl_cmd: list[str], tmp_path: Path
) -> None:
    b, (src, dst) = queues
    ids = fill(b, src)
    ckpt = tmp_path / "move.ckpt"
    p = subprocess.Popen(
        [*taskctl_cmd, "queue", "move", "--yes", src, dst, "--checkpoint", str(ckpt), "--broker", rabbitmq_url]
    )
    kill_when(p, lambda: b.stats(dst).messages >= 6_000)
    assert b.stats(src).messages > 0, "move finished before the kill"
    r = run(*move_cmd(src, dst, ckpt, rabbitmq_url), "--idle", "1", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["earlier"] > 0 and r.json["earlier"] + r.json["count"] == TOTAL
    got = collect(run, rabbitmq_url, dst, tmp_path / "dst.jsonl")
    assert set(got) == ids and dups(got) <= BATCH


KILL_AFTER_SAVE = """
import os, signal, sys
from taskctl import backends
from taskctl.results import checkpoint

saves = 0
kill_at = int(sys.argv[1])
real_save = checkpoint.Checkpoint.save


def save(self):
    # die the moment batch N is recorded: its messages are confirmed at DST, written to the checkpoint, not acked
    global saves
    real_save(self)
    saves += 1
    if saves == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


checkpoint.Checkpoint.save = save
from taskctl.cli import main

sys.argv = ["taskctl", *sys.argv[2:]]
main()
"""


def test_batch_confirmed_but_not_acked_is_acked_by_the_rerun_without_publishing_again(
    queues: Any, rabbitmq_url: str, run: Any, tmp_path: Path
) -> None:
    """A kill exactly between the checkpoint write and the ack (the window a checkpoint closes): the batch comes back
    to SRC, and the rerun acks it without publishing it again: DST holds every message once. The kill point is made
    exact by a wrapper that SIGKILLs the process right after its third checkpoint write."""
    b, (src, dst) = queues
    ids = fill(b, src, 3_000)
    ckpt = tmp_path / "move.ckpt"
    script = tmp_path / "kill_after_save.py"
    script.write_text(textwrap.dedent(KILL_AFTER_SAVE))
    p = subprocess.run(
        [
            sys.executable,
            str(script),
            "3",
            "queue",
            "move",
            "--yes",
            src,
            dst,
            "--checkpoint",
            str(ckpt),
            "--broker",
            rabbitmq_url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=120,
    )
    assert p.returncode == -signal.SIGKILL, p.stderr
    state = json.loads(ckpt.read_text())
    assert state["version"] == 1 and state["done"] == 3 * BATCH and len(state["state"]["unacked"]) == BATCH
    assert b.stats(dst).messages == 3 * BATCH and b.stats(src).messages == 3_000 - 2 * BATCH  # last batch unacked
    r = run(*move_cmd(src, dst, ckpt, rabbitmq_url), "--idle", "1", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert (r.json["earlier"], r.json["recovered"], r.json["count"]) == (3 * BATCH, BATCH, 3_000 - 3 * BATCH)
    got = collect(run, rabbitmq_url, dst, tmp_path / "dst.jsonl")
    assert set(got) == ids and dups(got) == 0


def test_same_batch_without_checkpoint_is_published_twice(
    queues: Any, rabbitmq_url: str, run: Any, tmp_path: Path
) -> None:
    """The same kill without a checkpoint (a wrapper kills after the third commit's confirms, before the ack):
    the batch is published again by the rerun. The duplicates the checkpoint removes."""
    b, (src, dst) = queues
    ids = fill(b, src, 3_000)
    script = tmp_path / "kill_after_flush.py"
    script.write_text(
        textwrap.dedent(KILL_AFTER_SAVE)
        .replace("from taskctl.results import checkpoint", "from taskctl import transfer")
        .replace("real_save = checkpoint.Checkpoint.save", "real_save = transfer.Transfer._durable")
        .replace("checkpoint.Checkpoint.save = save", "transfer.Transfer._durable = save")
        .replace("def save(self):", "def save(self, *a):")
        .replace("real_save(self)", "real_save(self, *a)")
    )
    p = subprocess.run(
        [sys.executable, str(script), "3", "queue", "move", "--yes", src, dst, "--broker", rabbitmq_url],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=120,
    )
    assert p.returncode == -signal.SIGKILL, p.stderr
    r = run("queue", "move", "--yes", src, dst, "--idle", "1", "--broker", rabbitmq_url, "-o", "json")
    assert r.exit_code == 0, r.stderr
    got = collect(run, rabbitmq_url, dst, tmp_path / "dst.jsonl")
    assert set(got) == ids and dups(got) == BATCH


def test_killed_requeue_from_results_resumes_after_the_last_confirmed_chunk(
    rabbitmq_url: str, run: Any, taskctl_cmd: list[str], tmp_path: Path, unique_name: str
) -> None:
    """4,000 stored failures (result_extended meta in a file:// store) requeued by id, SIGKILLed part-way and run
    again with the same checkpoint: every task is in its queue, at most one chunk (200) twice."""
    b = KombuBroker(rabbitmq_url)
    q = unique_name
    b.declare_queue(q)
    try:
        store = tmp_path / "results"
        store.mkdir()
        ids = [str(uuid.uuid4()) for _ in range(4_000)]
        for i, tid in enumerate(ids):
            meta = {
                "status": "FAILURE",
                "result": {"exc_type": "ValueError", "exc_message": ["x"], "exc_module": "builtins"},
                "traceback": None,
                "children": [],
                "date_done": "2026-01-01T00:00:00",
                "task_id": tid,
                "name": "app.add",
                "args": [i, i],
                "kwargs": {},
                "queue": q,
                "worker": "w1",
                "retries": 0,
            }
            (store / f"celery-task-meta-{tid}").write_text(json.dumps(meta))
        ckpt = tmp_path / "requeue.ckpt"
        idfile = tmp_path / "ids.txt"
        idfile.write_text("\n".join(ids))
        base = ["task", "requeue", "-", "--from-results", "--yes", "--checkpoint", str(ckpt)]
        glob = ["--backend", f"file://{store}", "--broker", rabbitmq_url]
        with idfile.open() as stdin:
            p = subprocess.Popen([*taskctl_cmd, *glob, *base, "-o", "jsonl"], stdin=stdin, stdout=subprocess.DEVNULL)
            kill_when(p, lambda: b.stats(q).messages >= 1_000)
        first = b.stats(q).messages
        assert first < len(ids), "requeue finished before the kill"
        r = run(*glob, *base, "-o", "jsonl", input="\n".join(ids))
        assert r.exit_code == 0, r.stderr
        rows = [json.loads(x) for x in r.stdout.splitlines()]
        assert rows and all(x["action"] == "requeued" for x in rows)
        assert f"of the {len(ids)} ids done by earlier runs" in r.stderr
        assert len(rows) <= len(ids) - first + 200 and json.loads(ckpt.read_text())["done"] == len(ids)
        got = collect(run, rabbitmq_url, q, tmp_path / "q.jsonl")
        assert set(got) == set(ids) and dups(got) <= 200

        r = run(*glob, *base, "-o", "jsonl", input="\n".join(ids))  # a finished job: nothing again
        assert r.exit_code == 0 and r.stdout == "" and b.stats(q).messages == 0
    finally:
        b.delete_queue(q)


# -- the checkpoint belongs to one job ------------------------------------------------------------------------------


def test_checkpoint_of_another_job_is_refused(queues: Any, rabbitmq_url: str, run: Any, tmp_path: Path) -> None:
    b, (q, other) = queues
    fill(b, q, 10)
    ckpt = tmp_path / "c.ckpt"
    out = tmp_path / "out.jsonl"
    r = run(*drain_cmd(q, out, ckpt, rabbitmq_url), "--idle", "0.5")
    assert r.exit_code == 0, r.stderr
    r = run(*drain_cmd(other, out, ckpt, rabbitmq_url), "--idle", "0.5")
    assert r.exit_code == 2 and "belongs to another command" in r.stderr and "Traceback" not in r.stderr
    r = run(*move_cmd(q, other, ckpt, rabbitmq_url))
    assert r.exit_code == 2 and "belongs to another command" in r.stderr
    r = run(*drain_cmd(q, out, ckpt, rabbitmq_url), "--dry-run")
    assert r.exit_code == 2 and "--dry-run" in r.stderr
    data = json.loads(ckpt.read_text())
    ckpt.write_text(json.dumps({**data, "version": 99}))
    r = run(*drain_cmd(q, out, ckpt, rabbitmq_url), "--idle", "0.5")
    assert r.exit_code == 2 and "version 99" in r.stderr
    ckpt.write_text("not json")
    r = run(*drain_cmd(q, out, ckpt, rabbitmq_url), "--idle", "0.5")
    assert r.exit_code == 2 and "is not a taskctl checkpoint" in r.stderr


def test_drain_file_changed_since_its_checkpoint_is_refused(
    queues: Any, rabbitmq_url: str, run: Any, tmp_path: Path
) -> None:
    b, (q, _) = queues
    fill(b, q, 10)
    ckpt, out = tmp_path / "c.ckpt", tmp_path / "out.jsonl"
    r = run(*drain_cmd(q, out, ckpt, rabbitmq_url), "--idle", "0.5")
    assert r.exit_code == 0 and count_lines(out) == 10
    out.write_text("")
    r = run(*drain_cmd(q, out, ckpt, rabbitmq_url), "--idle", "0.5")
    assert r.exit_code == 2 and "shorter" in r.stderr


# -- --retries: the broker closes the connection mid-run ------------------------------------------------------------


def _closed_mid_run(p: subprocess.Popen[str], name: str, progress: Any) -> tuple[int, str]:
    try:
        wait_for(lambda: progress() or p.poll() is not None)
        wait_for(lambda: _close_connection(name, timeout=0.5) or p.poll() is not None, timeout=15)
        rc = p.wait(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
    return rc, p.stderr.read() if p.stderr else ""


def test_drain_reconnects_after_the_broker_closes_its_connection(
    queues: Any, rabbitmq_url: str, run: Any, taskctl_cmd: list[str], tmp_path: Path
) -> None:
    """Closed by the management API (as an operator or a restart would): exit 0, nothing lost, no duplicate (the
    batch written before the close is recognised when the broker delivers it again)."""
    need_management()
    b, (q, _) = queues
    ids = fill(b, q)
    out = tmp_path / "drain.jsonl"
    p = subprocess.Popen(
        [
            *taskctl_cmd,
            "queue",
            "drain",
            "--yes",
            q,
            "--file",
            str(out),
            "--idle",
            "3",
            "-o",
            "json",
            "--broker",
            rabbitmq_url,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    rc, err = _closed_mid_run(p, f"taskctl drain {q}", lambda: count_lines(out) >= 3_000)
    assert rc == 0, err
    assert "connecting the consumer again" in err and "Traceback" not in err
    summary = json.loads(p.stdout.read() if p.stdout else "{}")
    assert summary["reconnects"] >= 1 and summary["count"] == TOTAL
    got = file_ids(out)
    assert set(got) == ids and dups(got) == 0 and b.stats(q).messages == 0


@pytest.mark.parametrize("side", ["consumer", "publisher"])
def test_move_reconnects_after_the_broker_closes_a_connection(
    queues: Any, rabbitmq_url: str, run: Any, taskctl_cmd: list[str], tmp_path: Path, side: str
) -> None:
    """The consumer's connection closed: its batch is confirmed at DST and acked when delivered again (no
    duplicate). The publisher's: the batch's unconfirmed publishes are sent again (duplicates at most a batch)."""
    need_management()
    b, (src, dst) = queues
    ids = fill(b, src)
    p = subprocess.Popen(
        [*taskctl_cmd, "queue", "move", "--yes", src, dst, "--idle", "3", "--broker", rabbitmq_url],
        stderr=subprocess.PIPE,
        text=True,
    )
    name = f"taskctl move {src}" if side == "consumer" else f"taskctl move {src} -> {dst}"
    rc, err = _closed_mid_run(p, name, lambda: b.stats(dst).messages >= 3_000)
    assert rc == 0, err
    assert f"connecting the {side} again" in err and "Traceback" not in err
    assert b.stats(src).messages == 0
    got = collect(run, rabbitmq_url, dst, tmp_path / "dst.jsonl")
    assert set(got) == ids and dups(got) <= (0 if side == "consumer" else BATCH)


def test_retries_zero_keeps_exit_5_with_counts(
    queues: Any, rabbitmq_url: str, run: Any, taskctl_cmd: list[str], tmp_path: Path
) -> None:
    need_management()
    b, (q, _) = queues
    ids = fill(b, q)
    out = tmp_path / "drain.jsonl"
    p = subprocess.Popen(
        [
            *taskctl_cmd,
            "queue",
            "drain",
            "--yes",
            q,
            "--file",
            str(out),
            "--idle",
            "25",
            "--retries",
            "0",
            "--broker",
            rabbitmq_url,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    rc, err = _closed_mid_run(p, f"taskctl drain {q}", lambda: count_lines(out) >= 3_000)
    assert rc == 5, err
    assert "written to" in err and "acknowledged" in err and "connecting" not in err
    r = run("queue", "drain", "--yes", q, "--file", str(out), "--idle", "1", "--broker", rabbitmq_url)
    assert r.exit_code == 0
    assert set(file_ids(out)) == ids


def test_retry_waits_double_up_to_a_bound() -> None:
    from taskctl.transfer import BACKOFF_MAX, backoff

    assert [backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert backoff(30) == BACKOFF_MAX


def test_requeue_from_queue_killed_after_its_checkpoint_write_publishes_nothing_twice(
    queues: Any, rabbitmq_url: str, run: Any, tmp_path: Path
) -> None:
    """`task requeue --from DLQ --checkpoint`: killed right after its third checkpoint write (three batches of 200
    confirmed, the third not acked), the rerun acks that batch without publishing it again and says so."""
    b, (dlq, dst) = queues
    ids = fill(b, dlq, 1_000)
    ckpt = tmp_path / "requeue.ckpt"
    script = tmp_path / "kill_after_save.py"
    script.write_text(textwrap.dedent(KILL_AFTER_SAVE))
    args = ["task", "requeue", "--from", dlq, "--to", dst, "--yes", "--checkpoint", str(ckpt), "--broker", rabbitmq_url]
    p = subprocess.run(
        [sys.executable, str(script), "3", *args, "-o", "jsonl"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=120,
    )
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert b.stats(dst).messages == 600 and b.stats(dlq).messages == 600
    r = run(*args, "-o", "jsonl")
    assert r.exit_code == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(rows) == 400 and {x["action"] for x in rows} == {"requeued"}
    assert "400 requeued; 600 requeued by earlier runs" in r.stderr and "200 of them acked now" in r.stderr
    got = collect(run, rabbitmq_url, dst, tmp_path / "dst.jsonl")
    assert set(got) == ids and dups(got) == 0 and b.stats(dlq).messages == 0


def test_requeue_from_queue_reconnects_after_the_broker_closes_its_connection(
    queues: Any, rabbitmq_url: str, run: Any, taskctl_cmd: list[str], tmp_path: Path
) -> None:
    """`task requeue --from` reads with basic_get on a connection of its own: closed mid-pass, it is opened again,
    the batch published before the close is acked when the broker gives it back, and nothing is published twice."""
    need_management()
    b, (dlq, dst) = queues
    ids = fill(b, dlq, 15_000)
    rows_file = tmp_path / "rows.jsonl"
    with rows_file.open("w") as stdout:
        p = subprocess.Popen(
            [
                *taskctl_cmd,
                "task",
                "requeue",
                "--from",
                dlq,
                "--to",
                dst,
                "--yes",
                "-o",
                "jsonl",
                "--broker",
                rabbitmq_url,
            ],
            stderr=subprocess.PIPE,
            stdout=stdout,
            text=True,
        )
        rc, err = _closed_mid_run(p, f"taskctl requeue {dlq}", lambda: b.stats(dst).messages >= 600)
    out = rows_file.read_text()
    assert rc == 0, err
    assert "connecting the consumer again" in err and "Traceback" not in err
    rows = [json.loads(x) for x in out.splitlines()]
    assert len(rows) == 15_000 and {x["action"] for x in rows} == {"requeued"}
    got = collect(run, rabbitmq_url, dst, tmp_path / "dst.jsonl")
    assert set(got) == ids and dups(got) == 0 and b.stats(dlq).messages == 0
