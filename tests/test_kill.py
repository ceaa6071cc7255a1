"""Nothing lost, on real RabbitMQ: SIGKILL `queue drain` and `queue move` mid-way, and have the broker close the
connection mid-drain. Afterwards every message is in the file/destination or back in the source; duplicates
stay within the prefetch window (1000)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from taskctl import backends
from taskctl.formats.message import build_task_message

KombuBroker = backends.load(backends.BROKER)
TOTAL = 20_000
PREFETCH = 1000


def fill(b: Any, q: str, n: int = TOTAL) -> set[str]:
    ids = set()
    with b.publisher() as pub:
        for i in range(n):
            tid = f"k-{i:06d}"
            ids.add(tid)
            pub.publish(build_task_message("app.add", [i, i], {}, task_id=tid, queue=q), "", q)
        pub.flush()
    return ids


def file_ids(path: Path) -> list[str]:
    out = []
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
    t = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > t:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def finish(run: Any, url: str, q: str, path: Path) -> None:
    r = run("queue", "drain", "--yes", q, "--file", str(path), "--idle", "1", "--broker", url)
    assert r.exit_code == 0, r.stderr


@pytest.fixture
def queues(rabbitmq_url: str, unique_name: str) -> Any:
    b = KombuBroker(rabbitmq_url)
    names = [unique_name, unique_name + "-dst"]
    for q in names:
        b.declare_queue(q)
    yield b, names
    for q in names:
        b.delete_queue(q)


@pytest.mark.parametrize("kill_at", [5_000, 11_000])
def test_sigkill_drain_loses_nothing(
    queues: Any, rabbitmq_url: str, run: Any, taskctl_cmd: list[str], tmp_path: Path, kill_at: int
) -> None:
    b, (q, _) = queues
    ids = fill(b, q)
    out = tmp_path / "drain.jsonl"
    p = subprocess.Popen([*taskctl_cmd, "queue", "drain", "--yes", q, "--file", str(out), "--broker", rabbitmq_url])
    try:
        wait_for(lambda: count_lines(out) >= kill_at or p.poll() is not None)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    first = count_lines(out)
    assert first < TOTAL, "drain finished before the kill"
    finish(run, rabbitmq_url, q, out)
    got = Counter(file_ids(out))
    assert set(got) == ids, f"lost {len(ids - set(got))}"
    dups = sum(got.values()) - len(got)
    assert dups <= PREFETCH, dups


@pytest.mark.parametrize("kill_at", [5_000, 12_000])
def test_sigkill_move_loses_nothing(
    queues: Any, rabbitmq_url: str, run: Any, taskctl_cmd: list[str], tmp_path: Path, kill_at: int
) -> None:
    b, (src, dst) = queues
    ids = fill(b, src)
    p = subprocess.Popen([*taskctl_cmd, "queue", "move", "--yes", src, dst, "--broker", rabbitmq_url])
    try:
        wait_for(lambda: b.stats(dst).messages >= kill_at or p.poll() is not None)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    assert b.stats(dst).messages < TOTAL, "move finished before the kill"
    out_src, out_dst = tmp_path / "src.jsonl", tmp_path / "dst.jsonl"
    finish(run, rabbitmq_url, src, out_src)
    finish(run, rabbitmq_url, dst, out_dst)
    got = Counter(file_ids(out_src) + file_ids(out_dst))
    assert set(got) == ids, f"lost {len(ids - set(got))}"
    assert sum(got.values()) - len(got) <= PREFETCH


def _close_connection(name: str) -> bool:
    """Close a client connection server-side through the management API (as an operator would)."""
    auth = "Basic " + base64.b64encode(b"guest:guest").decode()
    req = urllib.request.Request("http://127.0.0.1:15672/api/connections?columns=name,client_properties")
    req.add_header("Authorization", auth)
    with urllib.request.urlopen(req, timeout=5) as r:
        conns = json.loads(r.read())
    for c in conns:
        if (c.get("client_properties") or {}).get("connection_name") == name:
            d = urllib.request.Request(
                "http://127.0.0.1:15672/api/connections/" + urllib.parse.quote(c["name"], safe=""), method="DELETE"
            )
            d.add_header("Authorization", auth)
            d.add_header("X-Reason", "closed by test")
            urllib.request.urlopen(d, timeout=5).close()
            return True
    return False


def test_broker_closes_connection_mid_drain(
    queues: Any, rabbitmq_url: str, run: Any, taskctl_cmd: list[str], tmp_path: Path
) -> None:
    from conftest import port_open, service_missing

    if not port_open("127.0.0.1", 15672):
        service_missing("RabbitMQ management API on 127.0.0.1:15672")
    b, (q, _) = queues
    ids = fill(b, q)
    out = tmp_path / "drain.jsonl"
    # a long --idle keeps the connection open until the close lands: the drain can empty the queue before the
    # management API lists its connection; closed mid-drain or while waiting, it must exit 5 and lose nothing
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
    try:
        wait_for(lambda: count_lines(out) >= 3_000 or p.poll() is not None)
        wait_for(lambda: _close_connection(f"taskctl drain {q}") or p.poll() is not None, timeout=10)
        rc = p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    err = p.stderr.read() if p.stderr else ""
    assert rc == 5, err
    assert "the broker closed the connection" in err and "Traceback" not in err and "guest:guest" not in err
    assert len([x for x in err.splitlines() if x.startswith("error:")]) == 1
    finish(run, rabbitmq_url, q, out)
    got = Counter(file_ids(out))
    assert set(got) == ids
    assert sum(got.values()) - len(got) <= PREFETCH


def _kill_when(p: subprocess.Popen[Any], cond: Any) -> None:
    try:
        wait_for(lambda: cond() or p.poll() is not None)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()


def test_sigkill_drain_to_stdout_loses_nothing(
    queues: Any, rabbitmq_url: str, run: Any, taskctl_cmd: list[str], tmp_path: Path
) -> None:
    b, (q, _) = queues
    ids = fill(b, q)
    out = tmp_path / "stdout.jsonl"
    with out.open("wb") as fh:
        p = subprocess.Popen(
            [*taskctl_cmd, "queue", "drain", "--yes", q, "-o", "jsonl", "--broker", rabbitmq_url], stdout=fh
        )
        _kill_when(p, lambda: count_lines(out) >= 6_000)
    assert count_lines(out) < TOTAL, "drain finished before the kill"
    finish(run, rabbitmq_url, q, out)
    got = Counter(file_ids(out))
    assert set(got) == ids, f"lost {len(ids - set(got))}"
    assert sum(got.values()) - len(got) <= PREFETCH


def test_sigkill_requeue_from_queue_loses_nothing(
    queues: Any, rabbitmq_url: str, run: Any, taskctl_cmd: list[str], tmp_path: Path
) -> None:
    b, (src, dst) = queues
    ids = fill(b, src)
    p = subprocess.Popen(
        [*taskctl_cmd, "task", "requeue", "--from", src, "--to", dst, "--yes", "-o", "jsonl", "--broker", rabbitmq_url],
        stdout=subprocess.DEVNULL,
    )
    _kill_when(p, lambda: b.stats(dst).messages >= 3_000)
    assert b.stats(dst).messages < TOTAL, "requeue finished before the kill"
    out_src, out_dst = tmp_path / "src.jsonl", tmp_path / "dst.jsonl"
    finish(run, rabbitmq_url, src, out_src)
    finish(run, rabbitmq_url, dst, out_dst)
    got = Counter(file_ids(out_src) + file_ids(out_dst))
    assert set(got) == ids, f"lost {len(ids - set(got))}"
    assert sum(got.values()) - len(got) <= 200  # the requeue batch


def test_sigkill_rpc_drain_to_file_loses_nothing(
    queues: Any, rabbitmq_url: str, run: Any, taskctl_cmd: list[str], tmp_path: Path
) -> None:
    """rpc drain reads with basic_get (never consume a reply queue); same at-least-once guarantee."""
    b, (q, _) = queues
    ids = fill(b, q, 8_000)
    out = tmp_path / "rpc.jsonl"
    p = subprocess.Popen(
        [*taskctl_cmd, "rpc", "drain", "--yes", q, "--file", str(out), "--broker", rabbitmq_url],
        stdout=subprocess.DEVNULL,
    )
    _kill_when(p, lambda: count_lines(out) >= 1_000)
    first = count_lines(out)
    assert first < 8_000, "rpc drain finished before the kill"
    finish(run, rabbitmq_url, q, out)
    got = Counter(file_ids(out))
    assert set(got) == ids, f"lost {len(ids - set(got))}"
    assert sum(got.values()) - len(got) <= 100  # the rpc batch


def test_sigkill_rpc_drain_to_stdout_loses_nothing(
    queues: Any, rabbitmq_url: str, run: Any, taskctl_cmd: list[str], tmp_path: Path
) -> None:
    b, (q, _) = queues
    ids = fill(b, q, 8_000)
    out = tmp_path / "rpc-stdout.jsonl"
    with out.open("wb") as fh:
        p = subprocess.Popen(
            [*taskctl_cmd, "rpc", "drain", "--yes", q, "-o", "jsonl", "--broker", rabbitmq_url], stdout=fh
        )
        _kill_when(p, lambda: count_lines(out) >= 1_000)
    assert count_lines(out) < 8_000, "rpc drain finished before the kill"
    rest = tmp_path / "rest.jsonl"
    finish(run, rabbitmq_url, q, rest)
    got = Counter([json.loads(x)["task_id"] for x in out.read_text().splitlines() if x.endswith("}")] + file_ids(rest))
    assert set(got) == ids, f"lost {len(ids - set(got))}"
    assert sum(got.values()) - len(got) <= 100
