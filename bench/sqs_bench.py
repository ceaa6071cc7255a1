"""SQS benchmark on moto's server: requests per 1,000 messages drained, taskctl against kombu's own consumer.

Both sides drain the same data (N Celery protocol-2 task messages, sent by taskctl in kombu's SQS envelope) from
a queue on moto's server (``python -m moto.server``, started here on a free loopback port), through a counting
HTTP proxy in front of it, so every request either side sends is counted the same way, by SQS operation:

- taskctl: ``taskctl queue drain --file`` in-process (receive 10 a request, fsync, DeleteMessageBatch of 10),
  run until the queue is empty and one idle second has passed, as a user runs it;
- kombu: kombu's SQS transport consumer (``kombu.Consumer``, prefetch 10, ``drain_events``, ``message.ack()``
  per message: DeleteMessage one at a time), what a Celery worker does.

Goal (issue 10): at most 220 requests per 1,000 messages (the floor is 200: receive and delete in tens).
Times are moto's, not AWS's: moto is slow and its receive grows with the queue; requests are what AWS bills.

Usage: python bench/sqs_bench.py [--messages N] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taskctl import backends, queues  # noqa: E402
from taskctl.config import Settings  # noqa: E402
from taskctl.formats.message import build_task_message  # noqa: E402

OPTIONS = {"region": "us-east-1", "wait_time_seconds": 1}
GOAL = 220
FLOOR = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("moto's server did not start") from None
            time.sleep(0.1)


class CountingProxy:
    """Forwards every HTTP request to moto and counts it by SQS operation (JSON X-Amz-Target or query Action)."""

    def __init__(self, upstream_port: int) -> None:
        self.counts: Counter[str] = Counter()
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target") or ""
                op = target.rsplit(".", 1)[-1] if target else ""
                if not op:
                    query = parse_qs(body.decode("utf-8", "replace")) if body else {}
                    query.update(parse_qs(self.path.partition("?")[2]))
                    op = (query.get("Action") or ["?"])[0]
                with lock:
                    outer.counts[op] += 1
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> Counter[str]:
        out = Counter(self.counts)
        self.counts.clear()
        return out

    def close(self) -> None:
        self.server.shutdown()


def fill(b: Any, q: str, n: int) -> None:
    with b.publisher() as pub:
        for i in range(n):
            m = build_task_message("bench.add", [i, i], {"note": "x" * 40}, task_id=str(uuid.uuid4()), queue=q)
            pub.publish(m, "", q)
        pub.flush()


def taskctl_drain(url: str, q: str, n: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "drain.jsonl"
        t = time.perf_counter()
        s = queues.drain(
            Settings(broker=url, transport_options=dict(OPTIONS)), q, file=str(path), limit=None, task=None, idle=1
        )
        secs = time.perf_counter() - t
    assert getattr(s, "count", 0) == n, s
    return secs


def kombu_drain(url: str, q: str, n: int) -> float:
    from kombu import Connection, Consumer, Queue

    got = 0

    def on_message(body: Any, message: Any) -> None:
        nonlocal got
        message.ack()
        got += 1

    t = time.perf_counter()
    with Connection(url, transport_options=dict(OPTIONS)) as conn:
        queue = Queue(q, routing_key=q)
        with Consumer(conn, [queue], callbacks=[on_message], prefetch_count=10, accept=["json"]):
            idle_since = time.monotonic()
            while time.monotonic() - idle_since < 1.0:
                before = got
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass
                if got != before:
                    idle_since = time.monotonic()
    secs = time.perf_counter() - t
    assert got == n, (got, n)
    return secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n = args.messages
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    moto, moto_port = start_moto()
    proxy = CountingProxy(moto_port)
    direct = f"sqs://bench:bench@127.0.0.1:{moto_port}"
    counted = f"sqs://bench:bench@127.0.0.1:{proxy.port}"
    res: dict[str, Any] = {"messages": n}
    try:
        b = backends.broker_class(direct).from_url(direct, transport_options=dict(OPTIONS))
        for side, run in (("taskctl", taskctl_drain), ("kombu", kombu_drain)):
            q = f"bench-{side}-{uuid.uuid4().hex[:8]}"
            b.declare_queue(q)
            fill(b, q, n)
            proxy.take()
            secs = run(counted, q, n)
            counts = proxy.take()
            total = sum(counts.values())
            res[side] = {"requests": total, "per_1000": total * 1000 / n, "seconds": secs, "by_op": dict(counts)}
            b.delete_queue(q)
    finally:
        proxy.close()
        moto.terminate()
        moto.wait()
    if args.json:
        print(json.dumps(res, indent=2))
        return
    t, k = res["taskctl"], res["kombu"]
    lines = [
        f"Queue: {n:,} Celery task messages on moto's SQS server (loopback), counted by a proxy in front of it.",
        "",
        "| consumer | requests | per 1,000 messages | time (moto) |",
        "| --- | ---: | ---: | ---: |",
        f"| `taskctl queue drain --file` | {t['requests']:,} | {t['per_1000']:.0f} | {t['seconds']:.1f} s |",
        f"| kombu's SQS consumer (prefetch 10, ack per message) | {k['requests']:,} | {k['per_1000']:.0f} | "
        f"{k['seconds']:.1f} s |",
        "",
        f"Requests by operation: taskctl {t['by_op']}; kombu {k['by_op']}.",
        "",
        f"Goal: at most {GOAL} requests per 1,000 messages (floor {FLOOR}): "
        f"{t['per_1000']:.0f} ({'met' if t['per_1000'] <= GOAL else 'NOT met'}); "
        f"{k['per_1000'] / t['per_1000']:.1f}x fewer than kombu's consumer.",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
