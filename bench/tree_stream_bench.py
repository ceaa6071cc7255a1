"""Peak memory of `taskctl result tree` streaming a very large tree (issue: 1,000,000 nodes in a few hundred MB).

A tree of N result items (default 1,000,000; tree_bench's shape: fan-out sized for depth 6, every fourth node's
children recorded as a group) is written to Redis in Celery's layout (``celery-task-meta-<id>``, JSON meta), in a
database of its own, then ``taskctl result tree ROOT -o FORMAT > /dev/null`` runs as a fresh process per output
format and its peak RSS (VmHWM, read by a wrapper) and time are reported. The keys are deleted afterwards.
Redis rather than DynamoDB Local: the walk and the streaming are the store-independent part, and seeding a
million items into DynamoDB Local takes longer than the measurement.

Usage: python bench/tree_stream_bench.py [--nodes N] [--redis redis://127.0.0.1:6379/9] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from tree_bench import build_tree  # noqa: E402

#: runs taskctl's CLI in this process and prints its peak RSS on stderr (VmHWM survives no exec here)
WRAPPER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    t0 = time.monotonic()
    from taskctl.cli import main
    sys.argv = ["taskctl", *{argv!r}]
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    sys.stderr.write(f"BENCH {{hwm / 1024:.1f}} {{time.monotonic() - t0:.2f}} {{code}}\\n")
    """
)


def seed(url: str, metas: dict[str, dict[str, Any]]) -> float:
    import redis

    r = redis.Redis.from_url(url)
    t0 = time.monotonic()
    pipe = r.pipeline(transaction=False)
    for i, (tid, m) in enumerate(metas.items(), 1):
        pipe.set(f"celery-task-meta-{tid}", json.dumps(m))
        if i % 5000 == 0:
            pipe.execute()
    pipe.execute()
    return time.monotonic() - t0


def clean(url: str, ids: list[str]) -> None:
    import redis

    r = redis.Redis.from_url(url)
    for i in range(0, len(ids), 5000):
        r.delete(*[f"celery-task-meta-{t}" for t in ids[i : i + 5000]])


def run_tree(url: str, root: str, fmt: str) -> dict[str, Any]:
    argv = ["--backend", url, "result", "tree", root, "-o", fmt]
    code = WRAPPER.format(root=str(ROOT), argv=argv)
    with open("/dev/null", "w") as devnull:
        p = subprocess.run([sys.executable, "-c", code], stdout=devnull, stderr=subprocess.PIPE, text=True)
    line = next(x for x in p.stderr.splitlines() if x.startswith("BENCH "))
    _, mib, secs, rc = line.split()
    return {"format": fmt, "peak_rss_mib": float(mib), "seconds": float(secs), "exit": int(rc)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1_000_000)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root, metas, depth = build_tree(args.nodes)
    ids = list(metas)
    seed_secs = seed(args.redis, metas)
    del metas
    try:
        runs = [run_tree(args.redis, root, fmt) for fmt in ("jsonl", "plain")]
    finally:
        clean(args.redis, ids)
    report = {"nodes": args.nodes, "depth": depth, "seed_seconds": seed_secs, "runs": runs}
    if args.json:
        print(json.dumps(report))
        return
    print(f"`result tree` streamed, {args.nodes:,} nodes (depth {depth}) on Redis; seeding took {seed_secs:.0f} s\n")
    print("| output | peak RSS | seconds | per node | exit |\n| --- | ---: | ---: | ---: | ---: |")
    for r in runs:
        per = r["peak_rss_mib"] * 1024 * 1024 / args.nodes
        print(f"| -o {r['format']} | {r['peak_rss_mib']:.0f} MiB | {r['seconds']:.1f} | {per:.0f} B | {r['exit']} |")
    ok = all(r["peak_rss_mib"] < 500 and r["exit"] == 0 for r in runs)
    print(f"\nGoal (1,000,000 nodes in a few hundred MB at most): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
