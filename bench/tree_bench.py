"""Result tree benchmark on DynamoDB Local, one run: taskctl's batched walk and forget against Celery's own API.

A tree of N result items (default 10,000; fan-out 5, depth 6, every fourth node's children recorded as a
group) is written in Celery's exact layout, then:

- walk: ``taskctl.results.tree`` (one BatchGetItem round per level, 100 keys a request, concurrent) against
  Celery's ``AsyncResult(id).children`` traversal (one GetItem per node);
- forget: ``taskctl.results.forget(--tree)`` (walk + BatchWriteItem of 25) against per-node forget as
  firexkit's ``forget_subtree_results`` does it (children traversal, then ``backend.forget(id)`` per node);
- with ``--rss``: peak RSS of a fresh process walking a 100,000-node tree (slow: seeding takes minutes).

Requests are counted with botocore ``before-send`` event hooks on each side's client. Goals (issue 3): the walk
needs at most depth + N/100 requests plus a few, at least 20x fewer than Celery's, and is at least 5x faster.

Usage: python bench/tree_bench.py [--nodes N] [--rss] [--json] [--endpoint URL] [--no-celery]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

from taskctl import config, results  # noqa: E402
from taskctl.backends import dynamodb  # noqa: E402
from taskctl.localserver import start_dynamodb  # noqa: E402

MAX_DEPTH = 6


def build_tree(n: int) -> tuple[str, dict[str, dict[str, Any]], int]:
    """N nodes breadth first; the smallest fan-out that fits N within depth 6. Returns root, metas, depth."""
    fanout = 2
    while sum(fanout**d for d in range(MAX_DEPTH + 1)) < n:
        fanout += 1
    ids = [str(uuid.uuid4()) for _ in range(n)]
    children: dict[int, list[int]] = {i: [] for i in range(n)}
    depth_of = {0: 0}
    nxt = 1
    for parent in range(n):
        for _ in range(fanout):
            if nxt >= n:
                break
            children[parent].append(nxt)
            depth_of[nxt] = depth_of[parent] + 1
            nxt += 1
    metas: dict[str, dict[str, Any]] = {}
    for i, tid in enumerate(ids):
        kids = [ids[c] for c in children[i]]
        if i % 4 == 3 and kids:  # a group (GroupResult tuple) instead of single results
            encoded: list[Any] = [[[str(uuid.uuid4()), None], [[[k, None], None] for k in kids]]]
        else:
            encoded = [[[k, None], None] for k in kids]
        metas[tid] = {
            "status": "SUCCESS",
            "result": i,
            "traceback": None,
            "children": encoded,
            "date_done": "2026-11-22T01:30:54.472084+00:00",
            "name": "bench.node",
            "args": [i],
            "kwargs": {},
            "worker": "bench@host",
            "retries": 0,
            "queue": "celery",
            "task_id": tid,
        }
    return ids[0], metas, max(depth_of.values())


def seed(client: Any, table: str, metas: dict[str, dict[str, Any]]) -> float:
    """Write the items as Celery's DynamoDB backend does (id with the b'' wrapper, result B, timestamp N)."""
    t0 = time.monotonic()
    now = str(time.time())
    items = [
        {
            "PutRequest": {
                "Item": {
                    "id": {"S": f"b'celery-task-meta-{tid}'"},
                    "result": {"B": json.dumps(m).encode()},
                    "timestamp": {"N": now},
                }
            }
        }
        for tid, m in metas.items()
    ]
    chunks = [items[i : i + 25] for i in range(0, len(items), 25)]

    def write(chunk: list[Any]) -> None:
        req = {table: chunk}
        while req:
            req = client.batch_write_item(RequestItems=req).get("UnprocessedItems") or {}

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, chunks))
    secs = time.monotonic() - t0
    # warm-up, untimed and the same for both sides: one full Scan gets the server's JIT going
    kw: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**kw)
        if not page.get("LastEvaluatedKey"):
            break
        kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return secs


class Counter:
    def __init__(self) -> None:
        self.by_op: dict[str, int] = {}

    def __call__(self, **kw: Any) -> None:
        op = kw["event_name"].rsplit(".", 1)[-1]
        self.by_op[op] = self.by_op.get(op, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.by_op.values())


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.monotonic()
    out = fn()
    return out, time.monotonic() - t0


def walked(out: Any) -> Any:
    """The tree is walked when its value or exit code is first asked for (rows stream): ask, inside the timing."""
    out.exit_code  # noqa: B018
    return out


def taskctl_side(url: str, root: str, what: str) -> tuple[Counter, float, Any]:
    counter = Counter()

    def hook(client: Any) -> None:
        client.meta.events.register("before-send.dynamodb", counter)

    dynamodb.CLIENT_HOOKS.append(hook)
    try:
        settings = config.resolve(
            {"backend": url}, environ={k: v for k, v in os.environ.items() if k.startswith("AWS")}
        )
        if what == "walk":
            out, secs = timed(lambda: walked(results.tree(settings, root)))
        else:
            out, secs = timed(lambda: results.forget(settings, [root], tree=True))
    finally:
        dynamodb.CLIENT_HOOKS.remove(hook)
    return counter, secs, out


def celery_app(url: str) -> Any:
    from celery import Celery

    app = Celery("bench", backend=url, set_as_current=False)
    app.conf.result_extended = True
    return app


def celery_walk(app: Any, root: str) -> list[Any]:
    """Celery's own traversal: AsyncResult.children per node (GroupResult members included)."""
    from celery.result import GroupResult

    seen: set[str] = set()
    order: list[Any] = []
    todo = [app.AsyncResult(root)]
    while todo:
        r = todo.pop()
        if isinstance(r, GroupResult):
            todo.extend(r.results)
            continue
        if r.id in seen:
            continue
        seen.add(r.id)
        order.append(r)
        todo.extend(r.children or [])
    return order


def celery_side(url: str, root: str, what: str) -> tuple[Counter, float, int]:
    app = celery_app(url)
    counter = Counter()
    app.backend.client.meta.events.register("before-send.dynamodb", counter)
    if what == "walk":
        nodes, secs = timed(lambda: celery_walk(app, root))
        return counter, secs, len(nodes)

    def forget_all() -> int:
        # firexkit.result.forget_subtree_results: get_all_children(), then forget_single_async_result() each,
        # which calls backend.forget(id) because AsyncResult.forget() would also forget the parents
        nodes = celery_walk(app, root)
        for r in nodes:
            r.backend.forget(r.id)
        return len(nodes)

    n, secs = timed(forget_all)
    return counter, secs, n


#: VmHWM, not ru_maxrss: Linux carries the parent's high-water mark across fork+exec into ru_maxrss
RSS_CODE = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {root!r})
    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    from taskctl import config, results
    import taskctl.backends.dynamodb_store, botocore.session
    base = hwm()
    settings = config.resolve({{"backend": {url!r}}})
    t0 = time.monotonic()
    out = results.tree(settings, {node!r})
    n = sum(out.value.counts.values())
    print(json.dumps({{"nodes": n, "seconds": time.monotonic() - t0, "peak_rss_mib": hwm(), "baseline_rss_mib": base}}))
    """
)


def rss_run(client: Any, url_for: Callable[[str], str], nodes: int) -> dict[str, Any]:
    table = f"bench-rss-{uuid.uuid4().hex[:8]}"
    create(client, table)
    try:
        root, metas, depth = build_tree(nodes)
        seed_secs = seed(client, table, metas)
        del metas
        code = RSS_CODE.format(root=str(ROOT), url=url_for(table), node=root)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        out.update(depth=depth, seed_seconds=seed_secs)
        return out
    finally:
        client.delete_table(TableName=table)


def create(client: Any, table: str) -> None:
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--rss", action="store_true", help="also measure peak RSS walking 100,000 nodes (slow)")
    ap.add_argument("--rss-nodes", type=int, default=100_000)
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--endpoint", help="an already running DynamoDB-compatible server (default: start DynamoDB Local)")
    ap.add_argument("--no-celery", action="store_true", help="skip Celery's side")
    args = ap.parse_args()

    import boto3

    handle = None
    endpoint = args.endpoint
    if endpoint is None:
        handle = start_dynamodb(prefer=None)
        endpoint = handle.endpoint_url
    port = endpoint.rsplit(":", 1)[1]

    def url_for(table: str) -> str:
        return f"dynamodb://testing:testing@localhost:{port}/{table}"

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    report: dict[str, Any] = {"server": handle.kind if handle else endpoint, "nodes": args.nodes}
    try:
        table = f"bench-tree-{uuid.uuid4().hex[:8]}"
        create(client, table)
        root, metas, depth = build_tree(args.nodes)
        groups = sum(1 for m in metas.values() if m["children"] and m["children"][0][1] is not None)
        report.update(depth=depth, groups=groups, seed_seconds=seed(client, table, metas))
        url = url_for(table)
        rounds: dict[str, Any] = {}
        c, secs, out = taskctl_side(url, root, "walk")
        assert sum(out.value.counts.values()) == args.nodes, out.value.counts
        rounds["taskctl_walk"] = {"requests": c.total, "by_op": c.by_op, "seconds": secs, "levels": out.value.levels}
        if not args.no_celery:
            c, secs, n = celery_side(url, root, "walk")
            assert n == args.nodes, n
            rounds["celery_walk"] = {"requests": c.total, "by_op": c.by_op, "seconds": secs}
        c, secs, rep = taskctl_side(url, root, "forget")
        assert len(rep.forgotten) == args.nodes and not rep.missing
        rounds["taskctl_forget"] = {"requests": c.total, "by_op": c.by_op, "seconds": secs}
        if not args.no_celery:
            seed(client, table, metas)
            c, secs, n = celery_side(url, root, "forget")
            assert n == args.nodes
            rounds["celery_forget"] = {"requests": c.total, "by_op": c.by_op, "seconds": secs}
        client.delete_table(TableName=table)
        report["results"] = rounds
        report["walk_budget"] = depth + 1 + math.ceil(args.nodes / 100)
        if args.rss:
            report["rss"] = rss_run(client, url_for, args.rss_nodes)
    finally:
        if handle is not None:
            handle.stop()

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(markdown(report))
    return 0


def markdown(r: dict[str, Any]) -> str:
    res = r["results"]
    lines = [
        f"Tree: {r['nodes']:,} result items, depth {r['depth']}, {r['groups']:,} nodes recording their children as "
        f"a group; server {r['server']}; seeding took {r['seed_seconds']:.1f} s.",
        "",
        "| operation | taskctl requests | taskctl time | Celery requests | Celery time | requests ratio | speed-up |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for op in ("walk", "forget"):
        t = res[f"taskctl_{op}"]
        cel = res.get(f"celery_{op}")
        if cel:
            lines.append(
                f"| {op} | {t['requests']:,} | {t['seconds']:.2f} s | {cel['requests']:,} | {cel['seconds']:.2f} s "
                f"| {cel['requests'] / t['requests']:.0f}x fewer | {cel['seconds'] / t['seconds']:.1f}x faster |"
            )
        else:
            lines.append(f"| {op} | {t['requests']:,} | {t['seconds']:.2f} s | - | - | - | - |")
    walk = res["taskctl_walk"]
    lines += [
        "",
        f"Requests by operation: taskctl walk {walk['by_op']}, forget {res['taskctl_forget']['by_op']}"
        + (
            f"; Celery walk {res['celery_walk']['by_op']}, forget {res['celery_forget']['by_op']}"
            if "celery_walk" in res
            else ""
        )
        + ".",
        "",
        "Goals: walk requests <= depth + N/100 + a few "
        f"({walk['requests']} vs {r['walk_budget']}: {'met' if walk['requests'] <= r['walk_budget'] + 3 else 'NOT met'})",
    ]
    if "celery_walk" in res:
        cw = res["celery_walk"]
        ratio, speed = cw["requests"] / walk["requests"], cw["seconds"] / walk["seconds"]
        lines[-1] += f"; >= 20x fewer requests than Celery ({ratio:.0f}x: {'met' if ratio >= 20 else 'NOT met'})"
        lines[-1] += f"; >= 5x faster ({speed:.1f}x: {'met' if speed >= 5 else 'NOT met'})."
    if "rss" in r:
        rs = r["rss"]
        lines += [
            "",
            f"Memory: walking {rs['nodes']:,} nodes (depth {rs['depth']}) took {rs['seconds']:.1f} s with a peak RSS of "
            f"{rs['peak_rss_mib']:.0f} MiB (the same process after its imports: {rs['baseline_rss_mib']:.0f} MiB).",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
