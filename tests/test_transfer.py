"""The transfer engine's guarantees on real RabbitMQ (issue 9): counts of what is confirmed, Ctrl-C, a closed
stdout, a full disk, poison messages, bounded filtered scans, and consent (--yes) for every removal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskctl import backends
from taskctl.formats.message import RawMessage, build_task_message

KombuBroker = backends.load(backends.BROKER)


@pytest.fixture
def amqp(rabbitmq_url: str, unique_name: str) -> Iterator[tuple[Any, str, str]]:
    b = KombuBroker(rabbitmq_url)
    src, dst = unique_name, unique_name + "-dst"
    for q in (src, dst):
        b.declare_queue(q)
    yield b, src, dst
    for q in (src, dst):
        b.delete_queue(q)


def fill(b: Any, q: str, n: int, name: str = "app.add", start: int = 0) -> list[str]:
    ids = []
    with b.publisher() as pub:
        for i in range(start, start + n):
            tid = f"t-{i:06d}"
            ids.append(tid)
            pub.publish(build_task_message(name, [i, i], {}, task_id=tid, queue=q), "", q)
        pub.flush()
    return ids


def file_ids(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line)["task_id"])
        except ValueError:
            continue
    return out


def peek_ids(run: Any, url: str, q: str, n: int) -> list[str]:
    r = run("queue", "peek", q, "-n", str(n), "-o", "json", "--broker", url)
    assert r.exit_code == 0, r.stderr
    return [m["task_id"] for m in r.json]


POISON_BODY = b"[" * 100_000 + b"]" * 100_000


def poison(q: str) -> RawMessage:
    """A result-like JSON body nested 100,000 levels (no task headers: the body must be decoded to read it)."""
    return RawMessage(POISON_BODY, "application/json", "utf-8", {}, {"delivery_mode": 2}, routing_key=q)


# -- counts are of what is confirmed --------------------------------------------------------------------------------


def test_dry_run_with_task_counts_what_a_real_run_takes(amqp: Any, rabbitmq_url: str, run: Any) -> None:
    b, src, dst = amqp
    fill(b, src, 10)
    r = run("queue", "drain", src, "--task", "nomatch*", "--dry-run", "-o", "json", "--broker", rabbitmq_url)
    assert r.exit_code == 0, r.stderr
    assert r.json["count"] == 0 and r.json["dry_run"] is True
    r = run(
        "queue",
        "move",
        src,
        dst,
        "--task",
        "app.add",
        "--limit",
        "4",
        "--dry-run",
        "-o",
        "json",
        "--broker",
        rabbitmq_url,
    )
    assert r.json["count"] == 4
    # the dry runs took nothing, and the order is intact
    assert b.stats(src).messages == 10 and b.stats(dst).messages == 0
    assert peek_ids(run, rabbitmq_url, src, 10) == [f"t-{i:06d}" for i in range(10)]


def test_filtered_move_bounded_scan_leaves_others_in_place(amqp: Any, rabbitmq_url: str, run: Any) -> None:
    """`move --task no.match --limit 10` once republished the whole source to its tail: now nothing moves."""
    b, src, dst = amqp
    ids = fill(b, src, 2_000)
    r = run(
        "queue",
        "move",
        "--yes",
        src,
        dst,
        "--task",
        "no.match",
        "--limit",
        "10",
        "--idle",
        "0.5",
        "-o",
        "json",
        "--broker",
        rabbitmq_url,
    )
    assert r.exit_code == 0, r.stderr
    assert (r.json["count"], r.json["put_back"], r.json["stopped"]) == (0, 0, "one-pass")
    assert b.stats(src).messages == 2_000 and b.stats(dst).messages == 0
    assert peek_ids(run, rabbitmq_url, src, 5) == ids[:5]  # nothing went to the tail
    r = run(
        "queue", "move", "--yes", src, dst, "--task", "app.add", "--scan", "3", "-o", "json", "--broker", rabbitmq_url
    )
    assert r.json["count"] == 3 and b.stats(dst).messages == 3


def _close_connection(name: str, timeout: float = 10.0) -> bool:
    import base64
    import urllib.parse
    import urllib.request

    auth = "Basic " + base64.b64encode(b"guest:guest").decode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        req = urllib.request.Request("http://127.0.0.1:15672/api/connections?columns=name,client_properties")
        req.add_header("Authorization", auth)
        with urllib.request.urlopen(req, timeout=5) as r:
            conns = json.loads(r.read())
        for c in conns:
            if (c.get("client_properties") or {}).get("connection_name") == name:
                d = urllib.request.Request(
                    "http://127.0.0.1:15672/api/connections/" + urllib.parse.quote(c["name"], safe=""),
                    method="DELETE",
                )
                d.add_header("Authorization", auth)
                urllib.request.urlopen(d, timeout=5).close()
                return True
        time.sleep(0.05)
    return False


def test_move_cut_off_counts_only_confirmed(amqp: Any, rabbitmq_url: str, taskctl_cmd: list[str]) -> None:
    """The publisher's connection closed mid-move: the error's count is never above what DST holds."""
    from conftest import port_open, service_missing

    if not port_open("127.0.0.1", 15672):
        service_missing("RabbitMQ management API on 127.0.0.1:15672")
    b, src, dst = amqp
    fill(b, src, 20_000)
    p = subprocess.Popen(
        [*taskctl_cmd, "queue", "move", "--yes", src, dst, "--retries", "0", "--broker", rabbitmq_url],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while b.stats(dst).messages < 2_000 and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _close_connection(f"taskctl move {src} -> {dst}") or p.poll() is not None
        rc = p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    err = p.stderr.read() if p.stderr else ""
    if rc == 0:
        pytest.skip("the move finished before the connection was closed")
    assert rc == 5, err
    import re

    m = re.search(r"(\d+) published to '[^']+' and acknowledged", err)
    assert m, err
    assert int(m.group(1)) <= b.stats(dst).messages
    assert b.stats(src).messages + b.stats(dst).messages >= 20_000  # nothing lost


# -- Ctrl-C, closed stdout, full disk ------------------------------------------------------------------------------


def test_ctrl_c_stops_promptly_and_says_what_was_done(
    amqp: Any, rabbitmq_url: str, taskctl_cmd: list[str], tmp_path: Path
) -> None:
    b, src, _ = amqp
    ids = fill(b, src, 300)
    out = tmp_path / "d.jsonl"
    # a long --idle: after the 300 messages the drain waits on the broker when the interrupt comes
    p = subprocess.Popen(
        [*taskctl_cmd, "queue", "drain", "--yes", src, "--file", str(out), "--idle", "60", "--broker", rabbitmq_url],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while len(file_ids(out)) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=10)
    took = time.monotonic() - t0
    err = p.stderr.read() if p.stderr else ""
    assert rc == 130 and took < 3, (rc, took, err)
    assert err.startswith("error: interrupted: 300 written to") and "acknowledged" in err, err
    assert sorted(file_ids(out)) == ids and b.stats(src).messages == 0


def test_closed_stdout_exits_quietly_and_acks_nothing_unwritten(
    amqp: Any, rabbitmq_url: str, taskctl_cmd: list[str]
) -> None:
    b, src, _ = amqp
    fill(b, src, 5_000)
    p = subprocess.run(
        [
            "bash",
            "-c",
            " ".join([*taskctl_cmd, "queue", "drain", "--yes", src, "-o", "jsonl", "--broker", rabbitmq_url])
            + " | head -1; echo rc=${PIPESTATUS[0]} >&2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert len(p.stdout.splitlines()) == 1
    # quiet: no error line, no traceback (the exit code itself, 0, is set by cli.py's BrokenPipeError handler)
    assert p.stderr.strip() in ("rc=0", "rc=1"), p.stderr
    # what was acked was written to the pipe before it closed: at most one commit batch (500)
    assert b.stats(src).messages >= 5_000 - 500


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "tiny"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 64 KiB tmpfs here (needs root): {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


def test_full_disk_is_a_clear_error_and_nothing_is_lost(
    amqp: Any, rabbitmq_url: str, run: Any, tiny_disk: Path, tmp_path: Path
) -> None:
    b, src, _ = amqp
    ids = fill(b, src, 2_000)  # ~700 KB of lines: far more than 64 KiB
    out = tiny_disk / "d.jsonl"
    r = run("queue", "drain", "--yes", src, "--file", str(out), "--idle", "0.5", "--broker", rabbitmq_url)
    assert r.exit_code == 1, r.stderr
    assert r.stderr.startswith("error: ") and "no space left on device" in r.stderr and "internal" not in r.stderr
    assert "written to" in r.stderr and "the rest stay in the queue" in r.stderr and "hint:" in r.stderr
    written = file_ids(out)
    left = b.stats(src).messages
    assert left > 0 and left + len(set(written)) >= 2_000
    rest = tmp_path / "rest.jsonl"
    r = run("queue", "drain", "--yes", src, "--file", str(rest), "--idle", "0.5", "--broker", rabbitmq_url)
    assert r.exit_code == 0
    assert set(written) | set(file_ids(rest)) == set(ids)


# -- poison messages -----------------------------------------------------------------------------------------------


def test_poison_message_is_drained_raw_and_reported(amqp: Any, rabbitmq_url: str, run: Any, tmp_path: Path) -> None:
    b, src, _ = amqp
    fill(b, src, 3)
    with b.publisher() as pub:
        pub.publish(poison(src), "", src)
        pub.publish(RawMessage(b"\xff\xfe\x00bad", "application/json", "utf-8", {}), "", src)
        pub.flush()
    fill(b, src, 2, start=3)
    out = tmp_path / "p.jsonl"
    r = run("queue", "drain", "--yes", src, "--file", str(out), "--idle", "0.5", "-o", "json", "--broker", rabbitmq_url)
    assert r.exit_code == 0, r.stderr
    assert r.json["count"] == 7 and b.stats(src).messages == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    import base64

    assert base64.b64decode(recs[3]["message"]["body"]) == POISON_BODY and recs[3]["error"]
    # the file publishes back: every message, the poison one byte-exact
    r = run("queue", "publish", str(out), "--to", src, "-o", "json", "--broker", rabbitmq_url)
    assert r.exit_code == 0, r.stderr
    assert r.json["count"] == 7 and b.stats(src).messages == 7
    r = run("queue", "drain", "--yes", src, "-o", "jsonl", "--idle", "0.5", "--broker", rabbitmq_url)
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 7, r.stderr


def test_requeue_with_poison_publishes_each_message_once(amqp: Any, rabbitmq_url: str, run: Any) -> None:
    b, src, dst = amqp
    fill(b, src, 2)
    with b.publisher() as pub:
        pub.publish(poison(src), "", src)
        pub.flush()
    fill(b, src, 2, start=2)
    for _ in range(3):
        r = run("task", "requeue", "--from", src, "--to", dst, "--yes", "-o", "json", "--broker", rabbitmq_url)
        assert r.exit_code in (0, 1), r.stderr
        assert "internal error" not in r.stderr
    assert b.stats(dst).messages == 5 and b.stats(src).messages == 0


# -- consent ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("queue", "drain", "{src}", "--file", "{tmp}/x.jsonl"),
        ("queue", "move", "{src}", "{dst}"),
        ("queue", "purge", "{src}"),
        ("rpc", "drain", "{src}"),
    ],
)
def test_removals_need_yes_off_a_terminal(
    amqp: Any, rabbitmq_url: str, run: Any, tmp_path: Path, args: tuple[str, ...]
) -> None:
    b, src, dst = amqp
    fill(b, src, 3)
    argv = [a.format(src=src, dst=dst, tmp=tmp_path) for a in args]
    r = run(*argv, "--broker", rabbitmq_url)
    assert r.exit_code == 2 and "without --yes" in r.stderr and "--dry-run" in r.stderr
    assert b.stats(src).messages == 3
    r = run(*argv, "--dry-run", "--broker", rabbitmq_url)
    assert r.exit_code == 0, r.stderr
    assert b.stats(src).messages == 3 and b.stats(dst).messages == 0


# -- queue stats, publish --to ---------------------------------------------------------------------------------------


def test_rpc_drain_all_needs_yes_off_a_terminal(rabbitmq_url: str, run: Any) -> None:
    """`rpc drain --all --idle-for 0 < /dev/null` once deleted reply queues: now it refuses before listing any."""
    r = run("rpc", "drain", "--all", "--idle-for", "0", "--broker", rabbitmq_url, input="")
    assert r.exit_code == 2 and "without --yes" in r.stderr and "--dry-run" in r.stderr


def test_stats_prints_existing_rows_then_exits_3(amqp: Any, rabbitmq_url: str, run: Any) -> None:
    b, src, dst = amqp
    fill(b, src, 2)
    r = run("queue", "stats", src, dst, src + "-missing", "-o", "json", "--broker", rabbitmq_url)
    assert r.exit_code == 3
    assert [(x["queue"], x["messages"]) for x in r.json] == [(src, 2), (dst, 0)]
    error = json.loads(r.stderr)["error"]  # under -o json the error is JSON on stderr, after the rows
    assert (error["code"], error["exit_code"]) == ("not-found", 3)
    assert error["message"].startswith(f"queue '{src}-missing' does not exist")
    r = run("queue", "stats", src, src + "-missing", "--broker", rabbitmq_url)
    assert r.exit_code == 3 and r.stderr.startswith(f"error: queue '{src}-missing' does not exist")


# -- the socket fast path and its fallback ------------------------------------------------------------------------


def test_fast_path_off_by_env_and_on_odd_transports(amqp: Any, rabbitmq_url: str, run: Any, tmp_path: Path) -> None:
    from taskctl.backends import amqp_fastpath

    class NoSockTransport:
        _read_buffer = b""

    class FakeConnection:
        transport = NoSockTransport()

    assert amqp_fastpath.buffer_reads(FakeConnection()) is None
    assert amqp_fastpath.buffer_reads(object()) is None
    b, src, _ = amqp
    ids = fill(b, src, 1_500)
    out = tmp_path / "slow.jsonl"
    r = run(
        "queue",
        "drain",
        "--yes",
        src,
        "--file",
        str(out),
        "--idle",
        "0.5",
        "--broker",
        rabbitmq_url,
        env={"TASKCTL_AMQP_FASTPATH": "0"},
    )
    assert r.exit_code == 0, r.stderr
    assert file_ids(out) == ids and b.stats(src).messages == 0


def test_fast_path_used_and_switch_read_per_connection(rabbitmq_url: str, unique_name: str, monkeypatch: Any) -> None:
    from taskctl.backends import amqp_fastpath

    b = KombuBroker(rabbitmq_url)
    b.declare_queue(unique_name)
    try:
        with b.consume(unique_name) as c:
            assert c._reader is not None  # the fast path is on by default
        monkeypatch.setenv("TASKCTL_AMQP_FASTPATH", "0")
        assert not amqp_fastpath.enabled()
        with b.consume(unique_name) as c:
            assert c._reader is None
    finally:
        b.delete_queue(unique_name)


def test_no_global_logger_level(rabbitmq_url: str, unique_name: str) -> None:
    import logging

    before = logging.getLogger("amqp").level
    b = KombuBroker(rabbitmq_url)
    b.declare_queue(unique_name)
    try:
        b.peek(unique_name, 1)
    finally:
        b.delete_queue(unique_name)
    assert logging.getLogger("amqp").level == before and not logging.getLogger("amqp").filters


# -- peek fails closed -----------------------------------------------------------------------------------------------


@pytest.fixture
def limited_quorum(rabbitmq_url: str, unique_name: str) -> Iterator[tuple[Any, str]]:
    b = KombuBroker(rabbitmq_url)
    b.declare_queue(unique_name, arguments={"x-queue-type": "quorum", "x-delivery-limit": 2})
    fill(b, unique_name, 3)
    yield b, unique_name
    b.delete_queue(unique_name)


@pytest.mark.parametrize(
    "management_url",
    ["http://127.0.0.1:1", "http://guest:wrong-password@127.0.0.1:15672"],
    ids=["unreachable", "wrong-password"],
)
def test_peek_refuses_when_the_delivery_limit_cannot_be_read(
    limited_quorum: Any, rabbitmq_url: str, run: Any, management_url: str
) -> None:
    b, q = limited_quorum
    for _ in range(4):
        r = run("queue", "peek", q, "--management-url", management_url, "--broker", rabbitmq_url)
        assert r.exit_code == 4, r.stderr
        assert "cannot tell whether peeking" in r.stderr and "--force" in r.stderr and "wrong-password" not in r.stderr
    assert b.stats(q).messages == 3  # nothing dropped
    r = run("queue", "peek", q, "--force", "--management-url", management_url, "--broker", rabbitmq_url)
    assert r.exit_code == 0 and "peeking anyway" in r.stderr


def test_peek_detects_rabbitmq4_default_delivery_limit(rabbitmq_url: str, unique_name: str, run: Any) -> None:
    """Stub: no RabbitMQ 4 here, so a tiny HTTP server answers as its management API would (version 4.0.5, a
    quorum queue with no explicit limit); the queue itself is a real classic queue on the local broker."""
    import http.server
    import threading

    b = KombuBroker(rabbitmq_url)
    b.declare_queue(unique_name)

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/api/overview"):
                body: Any = {"rabbitmq_version": "4.0.5"}
            else:
                body = {"name": unique_name, "vhost": "/", "type": "quorum", "arguments": {"x-queue-type": "quorum"}}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        r = run("queue", "peek", unique_name, "--management-url", url, "--broker", rabbitmq_url)
        assert r.exit_code == 4 and "delivery limit 20" in r.stderr, r.stderr
    finally:
        srv.shutdown()
        b.delete_queue(unique_name)


def test_env_is_clean() -> None:
    assert "TASKCTL_AMQP_FASTPATH" not in os.environ
