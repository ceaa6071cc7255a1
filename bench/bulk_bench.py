"""Bulk result work on DynamoDB Local, beside what an operator writes today, in the same run.

- ``result list --state FAILURE`` against ``aws dynamodb scan --filter-expression`` (contains on the value);
- ``result forget --state SUCCESS --older-than 7d`` against a single-threaded boto3 Scan + BatchWriteItem loop;
- a forget killed half-way and resumed with ``--checkpoint`` against an uninterrupted one: requests counted by a
  TCP proxy in front of the server (goal: at most 5% more).

Goals (issue 12): at least 3x the items/s of the AWS CLI on list, 2x the boto3 loop on forget.

Usage: python bench/bulk_bench.py [--items 200000] [--resume-items 100000] [--endpoint URL] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taskctl.localserver import start_dynamodb  # noqa: E402

OLD = (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).isoformat()
NEW = dt.datetime.now(dt.UTC).isoformat()
ENV = {
    **os.environ,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


#: the AWS CLI to run (--aws; default: the one installed beside this Python)
AWS: str | None = None


def meta(task_id: str, status: str, date_done: str) -> bytes:
    return json.dumps(
        {"status": status, "result": 1, "traceback": None, "children": [], "date_done": date_done, "task_id": task_id}
    ).encode()


def mix(n: int) -> dict[str, bytes]:
    """10% FAILURE, 45% SUCCESS a month old, 45% SUCCESS today."""
    out = {}
    for i in range(n):
        tid = str(uuid.uuid4())
        status, when = ("FAILURE", NEW) if i % 10 == 0 else ("SUCCESS", OLD if i % 2 else NEW)
        out[tid] = meta(tid, status, when)
    return out


def create(client: Any, table: str) -> None:
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def seed(client: Any, table: str, items: dict[str, bytes]) -> None:
    rows = [
        {
            "PutRequest": {
                "Item": {
                    "id": {"S": f"b'celery-task-meta-{k}'"},
                    "result": {"B": v},
                    "timestamp": {"N": str(time.time())},
                }
            }
        }
        for k, v in items.items()
    ]

    def write(i: int) -> None:
        req: dict[str, Any] = {table: rows[i : i + 25]}
        while req:
            req = client.batch_write_item(RequestItems=req).get("UnprocessedItems") or {}

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(0, len(rows), 25)))


class CountingProxy:
    """A TCP proxy counting the HTTP requests that pass through it (taskctl runs as a subprocess)."""

    def __init__(self, upstream: str) -> None:
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
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(conn, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, conn, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
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


def taskctl(url: str, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "taskctl", "--backend", url, *args], env=ENV, capture_output=True, text=True
    )
    if res.returncode != 0:
        raise SystemExit(f"taskctl {' '.join(args)} failed: {res.stderr.strip()}")
    return res, time.monotonic() - t0


def aws_scan(endpoint: str, table: str) -> tuple[int, float]:
    aws = AWS or str(Path(sys.executable).with_name("aws"))
    t0 = time.monotonic()
    res = subprocess.run(
        [
            str(aws),
            "dynamodb",
            "scan",
            "--table-name",
            table,
            "--endpoint-url",
            endpoint,
            "--filter-expression",
            "contains(#r, :f)",
            "--expression-attribute-names",
            json.dumps({"#r": "result"}),
            "--expression-attribute-values",
            json.dumps({":f": {"B": '"status": "FAILURE"'}}),  # AWS CLI v1 passes blob text as its bytes
            "--output",
            "json",
        ],
        env=ENV,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise SystemExit(f"aws dynamodb scan failed: {res.stderr.strip()}")
    return int(json.loads(res.stdout)["Count"]), time.monotonic() - t0


def boto3_forget(client: Any, table: str) -> tuple[int, float]:
    """What an operator writes: one paginated Scan, decode each value, BatchWriteItem 25 at a time."""
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=7)
    t0 = time.monotonic()
    batch: list[Any] = []
    n = 0

    def flush() -> None:
        req: dict[str, Any] = {table: [{"DeleteRequest": {"Key": k}} for k in batch]}
        while req:
            req = client.batch_write_item(RequestItems=req).get("UnprocessedItems") or {}

    for page in client.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            m = json.loads(bytes(item["result"]["B"]))
            if m.get("status") == "SUCCESS" and dt.datetime.fromisoformat(m["date_done"]) < cutoff:
                batch.append({"id": item["id"]})
                n += 1
                if len(batch) == 25:
                    flush()
                    batch = []
    if batch:
        flush()
    return n, time.monotonic() - t0


def resume_run(client: Any, endpoint: str, n: int) -> dict[str, Any]:
    proxy = CountingProxy(endpoint)
    items = {k: meta(k, "SUCCESS", OLD) for k in (str(uuid.uuid4()) for _ in range(n))}
    ref, table = f"bench-res-ref-{uuid.uuid4().hex[:6]}", f"bench-res-{uuid.uuid4().hex[:6]}"
    for t in (ref, table):
        create(client, t)
        seed(client, t, items)
    args = ["-o", "json", "result", "forget", "--state", "SUCCESS", "--older-than", "7d", "--yes"]
    try:
        proxy.requests = 0
        taskctl(f"dynamodb://@127.0.0.1:{proxy.port}/{ref}", *args)
        uninterrupted = proxy.requests
        url = f"dynamodb://@127.0.0.1:{proxy.port}/{table}"
        with tempfile.TemporaryDirectory() as d:
            ckpt = Path(d) / "forget.ckpt"
            proxy.requests = 0
            cmd = [sys.executable, "-m", "taskctl", "--backend", url, *args, "--checkpoint", str(ckpt)]
            p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while p.poll() is None:
                try:
                    if json.loads(ckpt.read_text())["done"] >= n // 2:
                        break
                except (OSError, ValueError, KeyError):
                    pass
                time.sleep(0.005)
            p.send_signal(signal.SIGKILL)
            p.wait()
            res, _ = taskctl(url, *args, "--checkpoint", str(ckpt))
            report = json.loads(res.stdout)
        left = sum(p["Count"] for p in client.get_paginator("scan").paginate(TableName=table, Select="COUNT"))
        return {
            "items": n,
            "uninterrupted_requests": uninterrupted,
            "killed_and_resumed_requests": proxy.requests,
            "done_before_kill": report["earlier"],
            "left": left,
        }
    finally:
        proxy.sock.close()
        for t in (ref, table):
            client.delete_table(TableName=t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--resume-items", type=int, default=100_000)
    ap.add_argument("--endpoint", help="an already running DynamoDB-compatible server (default: start DynamoDB Local)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--aws", help="the AWS CLI to run (default: the one beside this Python, else on PATH)")
    args = ap.parse_args()
    global AWS
    AWS = args.aws or (None if Path(sys.executable).with_name("aws").exists() else shutil.which("aws"))

    import boto3

    handle = None
    endpoint = args.endpoint
    if endpoint is None:
        handle = start_dynamodb(prefer="dynamodb-local")
        endpoint = handle.endpoint_url
    port = endpoint.rsplit(":", 1)[1]
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    report: dict[str, Any] = {"server": handle.kind if handle else endpoint, "items": args.items}
    tables = [f"bench-bulk-{uuid.uuid4().hex[:6]}", f"bench-bulk-{uuid.uuid4().hex[:6]}"]
    try:
        items = mix(args.items)
        failures = sum(1 for v in items.values() if b'"FAILURE"' in v)
        old_ok = sum(1 for v in items.values() if b'"SUCCESS"' in v and OLD.encode() in v)
        t0 = time.monotonic()
        for t in tables:
            create(client, t)
            seed(client, t, items)
        report["seed_seconds"] = time.monotonic() - t0
        url = f"dynamodb://@localhost:{port}/{tables[0]}"

        res, secs = taskctl(url, "-o", "jsonl", "result", "list", "--state", "FAILURE")
        assert len(res.stdout.splitlines()) == failures
        n, aws_secs = aws_scan(endpoint, tables[0])
        assert n == failures, (n, failures)
        report["list"] = {"taskctl_items_s": args.items / secs, "aws_items_s": args.items / aws_secs}

        res, secs = taskctl(url, "-o", "json", "result", "forget", "--state", "SUCCESS", "--older-than", "7d", "--yes")
        assert json.loads(res.stdout)["count"] == old_ok
        n, b_secs = boto3_forget(client, tables[1])
        assert n == old_ok
        report["forget"] = {"taskctl_items_s": args.items / secs, "boto3_items_s": args.items / b_secs}
        report["resume"] = resume_run(client, endpoint, args.resume_items)
    finally:
        for t in tables:
            try:
                client.delete_table(TableName=t)
            except Exception:
                pass
        if handle is not None:
            handle.stop()
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0


def markdown(r: dict[str, Any]) -> str:
    li, fo, re_ = r["list"], r["forget"], r["resume"]
    lr = li["taskctl_items_s"] / li["aws_items_s"]
    fr = fo["taskctl_items_s"] / fo["boto3_items_s"]
    extra = re_["killed_and_resumed_requests"] / re_["uninterrupted_requests"] - 1

    def secs(rate: float) -> str:
        return f"{r['items'] / rate:.1f} s"

    return "\n".join(
        [
            f"{r['items']:,} items on {r['server']} (10% FAILURE, 45% SUCCESS a month old, 45% SUCCESS today; "
            f"seeding two tables took {r['seed_seconds']:.0f} s); items/s is items in the table per second of the "
            "whole command, seconds in brackets.",
            "",
            "| job | taskctl items/s | today's way items/s | ratio | goal |",
            "| --- | ---: | ---: | ---: | --- |",
            f"| list --state FAILURE vs aws dynamodb scan --filter-expression | {li['taskctl_items_s']:,.0f} "
            f"({secs(li['taskctl_items_s'])}) | {li['aws_items_s']:,.0f} ({secs(li['aws_items_s'])}) | {lr:.1f}x | "
            f">= 3x: {'met' if lr >= 3 else 'not met'} |",
            f"| forget --state SUCCESS --older-than 7d vs boto3 scan + batch_write_item | {fo['taskctl_items_s']:,.0f} "
            f"({secs(fo['taskctl_items_s'])}) | {fo['boto3_items_s']:,.0f} ({secs(fo['boto3_items_s'])}) | {fr:.1f}x | "
            f">= 2x: {'met' if fr >= 2 else 'not met'} |",
            "",
            f"Killed and resumed forget of {re_['items']:,} items (killed after {re_['done_before_kill']:,} were done): "
            f"{re_['killed_and_resumed_requests']:,} requests against {re_['uninterrupted_requests']:,} uninterrupted "
            f"({extra:+.1%}; goal <= +5%: {'met' if extra <= 0.05 else 'not met'}); {re_['left']} items left.",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
