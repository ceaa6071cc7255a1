"""Resumable broker work on loopback RabbitMQ: duplicates after SIGKILL, without and with ``--checkpoint``, and what
the checkpoint costs a drain.

- kills: for `queue drain --file` and `queue move`, a queue of N messages, taskctl (a subprocess) SIGKILLed at a
  different point each round, then run again to the end (with the same checkpoint file where there is one); the
  duplicates are counted by task id in the drain file / the destination. Nothing may be lost.
- throughput: `queue drain --file` of M messages in-process, with and without `--checkpoint`, in alternated pairs
  (the median of each side).

Usage: python bench/resume_bench.py [--rounds N] [--messages N] [--throughput M] [--pairs N] [--only kills|throughput]
       [--broker URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taskctl import backends  # noqa: E402
from taskctl.formats.message import build_task_message  # noqa: E402

CMD = [sys.executable, "-m", "taskctl"]


def fill(b: Any, q: str, n: int) -> None:
    with b.publisher() as pub:
        for i in range(n):
            pub.publish(build_task_message("app.add", [i, i], {}, task_id=f"k-{i:07d}", queue=q), "", q)
        pub.flush()


def ids_in(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line)["task_id"])
        except ValueError:
            continue
    return out


def kill_when(cmd: list[str], cond: Callable[[], bool], jitter: float) -> None:
    """SIGKILL once COND holds plus JITTER seconds: the moment falls anywhere in a batch's cycle (consume, publish
    or write, commit, checkpoint, ack), not just where COND is first seen."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not cond() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(jitter)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()


def kill_round(b: Any, url: str, tmp: Path, kind: str, checkpoint: bool, n: int, kill_at: int, jitter: float) -> int:
    """One SIGKILL and a rerun; the duplicates left."""
    tag = uuid.uuid4().hex[:8]
    src, dst = f"resume-bench-{tag}", f"resume-bench-{tag}-dst"
    b.declare_queue(src)
    b.declare_queue(dst)
    try:
        fill(b, src, n)
        extra = ["--checkpoint", str(tmp / f"{tag}.ckpt")] if checkpoint else []
        out = tmp / f"{tag}.jsonl"
        if kind == "move":
            cmd = [*CMD, "queue", "move", "--yes", src, dst, *extra, "--idle", "1", "--broker", url]
            kill_when(cmd, lambda: b.stats(dst).messages >= kill_at, jitter)
            subprocess.run(cmd, check=True, capture_output=True)
            got = tmp / f"{tag}-dst.jsonl"
            drain = [*CMD, "queue", "drain", "--yes", dst, "--file", str(got), "--idle", "1", "--broker", url]
            subprocess.run(drain, check=True, capture_output=True)
            ids = ids_in(got)
        else:
            cmd = [*CMD, "queue", "drain", "--yes", src, "--file", str(out), *extra, "--idle", "1", "--broker", url]
            kill_when(cmd, lambda: out.exists() and out.stat().st_size > kill_at * 600, jitter)
            subprocess.run(cmd, check=True, capture_output=True)
            ids = ids_in(out)
        c = Counter(ids)
        if len(c) != n:
            raise SystemExit(f"{kind}: lost {n - len(c)} messages")
        return sum(c.values()) - len(c)
    finally:
        b.delete_queue(src)
        b.delete_queue(dst)


def drain_rate(b: Any, url: str, tmp: Path, checkpoint: bool, m: int) -> float:
    """Messages a second of an in-process `queue drain --file` of M messages (start-up excluded; --limit M ends
    it without waiting for --idle)."""
    from taskctl import queues
    from taskctl.config import Settings

    tag = uuid.uuid4().hex[:8]
    q = f"resume-bench-{tag}"
    b.declare_queue(q)
    try:
        fill(b, q, m)
        out = tmp / f"{tag}.jsonl"
        ckpt = str(tmp / f"{tag}.ckpt") if checkpoint else None
        t = time.perf_counter()
        s = queues.drain(Settings(broker=url), q, file=str(out), limit=m, task=None, idle=5, checkpoint=ckpt)
        dt = time.perf_counter() - t
        if getattr(s, "count", 0) != m:
            raise SystemExit(f"drain took {getattr(s, 'count', 0)} of {m}")
        return m / dt
    finally:
        b.delete_queue(q)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--throughput", type=int, default=50_000)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--only", choices=["kills", "throughput"], default=None)
    ap.add_argument("--broker", default=os.environ.get("TASKCTL_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    b = backends.load(backends.BROKER)(a.broker)
    report: dict[str, Any] = {"messages": a.messages, "rounds": a.rounds}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind in ("drain", "move") if a.only != "throughput" else ():
            for checkpoint in (False, True):
                rng = random.Random(7)  # the same kill moments with and without a checkpoint
                step = a.messages // (a.rounds + 2)
                dups = [
                    kill_round(b, a.broker, tmp, kind, checkpoint, a.messages, 1_000 + i * step, rng.uniform(0, 0.2))
                    for i in range(a.rounds)
                ]
                report[f"{kind} duplicates {'with' if checkpoint else 'without'} checkpoint"] = dups
                print(kind, "with" if checkpoint else "without", "checkpoint: duplicates", dups, file=sys.stderr)
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(
            a.pairs if a.only != "kills" else 0
        ):  # alternated, so load from elsewhere on the machine falls on both alike
            for checkpoint in (False, True):
                rates[checkpoint].append(drain_rate(b, a.broker, tmp, checkpoint, a.throughput))
        for checkpoint, r in rates.items():
            if not r:
                continue
            report[f"drain msg/s {'with' if checkpoint else 'without'} checkpoint (median)"] = round(
                sorted(r)[len(r) // 2]
            )
            report[f"drain msg/s {'with' if checkpoint else 'without'} checkpoint (all)"] = [round(x) for x in r]
    if a.json:
        print(json.dumps(report, indent=2))
        return
    for k, v in report.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
