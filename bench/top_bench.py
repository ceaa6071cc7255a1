"""`taskctl top` on a real terminal (tmux): CPU use idle and busy, and how fast the screen follows.

Two workers started with -E (prefork -c 2, solo) on a control and event exchange of their own. `taskctl top
--interval 1` runs in a detached tmux session of its own (160x50). Measured:

- CPU use of the taskctl process (utime + stime from /proc) per second of wall time, with the workers idle
  (heartbeats only) and with tasks sent at about 50/s;
- key latency: `s` sent to the pane until the screen shows the new sort column (tmux polled every 10 ms);
- event latency: a failing task sent until its exception shows on the screen (bounded by --interval);
- frame time in-process: sorting, filtering and drawing one frame of 2 workers, 20 queues, 30 task names and
  10 failures with rich, to a 160x50 console.

Usage: python bench/top_bench.py [--broker URL] [--seconds N] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

APP = """
import os
from celery import Celery
app = Celery("tb_app", broker=os.environ["TB_BROKER"])
app.conf.update(
    control_exchange=os.environ["TB_CONTROL"],
    event_exchange=os.environ["TB_CONTROL"] + "ev",
    broker_connection_retry_on_startup=True,
)

@app.task(name="tb.add")
def add(x, y):
    return x + y

@app.task(name="tb.fail")
def fail(why):
    raise ValueError(why)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid: int, seconds: float) -> float:
    """CPU seconds used per wall second over SECONDS."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


class Tmux:
    def __init__(self) -> None:
        self.sock = f"taskctl-top-bench-{uuid.uuid4().hex[:12]}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, check=True).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "top")

    def until(self, ok: object, timeout: float = 30) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if ok(self.screen()):  # type: ignore[operator]
                return time.monotonic() - start
            time.sleep(0.01)
        raise RuntimeError(f"screen did not change:\n{self.screen()}")


def frame_ms() -> float:
    """Median time to sort, filter and draw one frame (in-process, rich to a 160x50 console)."""
    from rich.console import Console

    from taskctl import monitor
    from taskctl.models import TopFrame, TopRow
    from taskctl.output.live import top_screen

    rows = [
        TopRow("worker", f"w{i}@host", "", {"state": "up", "active": 1, "processed": 99, "load": 0.5}) for i in range(2)
    ]
    rows += [
        TopRow("queue", f"queue-{i}", "", {"ready": i, "unacked": 0, "consumers": 1, "rate_in": 1.5, "rate_out": 1.5})
        for i in range(20)
    ]
    rows += [
        TopRow(
            "task",
            f"app.tasks.t{i}",
            "",
            {
                "received": 60.0,
                "succeeded": 59.0,
                "failed": 1.0,
                "retried": 0.0,
                "runtime_p50": 0.01,
                "runtime_p95": 0.2,
            },
        )
        for i in range(30)
    ]
    rows += [
        TopRow(
            "failure",
            "app.tasks.t1",
            "",
            {
                "time": "2026-01-01T00:00:00Z",
                "worker": "w1@host",
                "task_id": str(uuid.uuid4()),
                "exception": "ValueError('x')",
            },
        )
        for _ in range(10)
    ]
    console = Console(file=io.StringIO(), width=160, height=50, force_terminal=True)
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        shown = monitor.filter_rows(monitor.sort_rows(rows, "failed"), None)
        frame = TopFrame(rows=tuple(shown), title="taskctl top", sort="failed")
        console.print(top_screen(frame, 50))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tag = uuid.uuid4().hex[:8]
    result: dict[str, object] = {}
    tmux = Tmux()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "tb_app.py").write_text(APP)
        (root / "taskctl.toml").write_text(f'[default]\ncontrol_exchange = "tb{tag}"\nevent_exchange = "tb{tag}ev"\n')
        env = dict(os.environ, TB_BROKER=args.broker, TB_CONTROL=f"tb{tag}")
        env["PYTHONPATH"] = os.pathsep.join([str(root), str(ROOT), env.get("PYTHONPATH", "")])
        queue = f"tb-{tag}"
        pools = [["-P", "prefork", "-c", "2"], ["-P", "solo"]]
        procs = []
        for i, pool in enumerate(pools):
            log = open(root / f"w{i}.log", "wb")  # noqa: SIM115 (kept open for the worker's lifetime)
            argv = [sys.executable, "-m", "celery", "-A", "tb_app", "worker", *pool, "-E", "-n", f"tb{i}-{tag}@bench"]
            argv += ["-Q", queue, "--without-gossip", "--without-mingle", "-l", "info"]
            procs.append(subprocess.Popen(argv, cwd=root, env=env, stdout=log, stderr=log))
        try:
            deadline = time.monotonic() + 90
            while not all(" ready." in (root / f"w{i}.log").read_text() for i in range(len(pools))):
                if time.monotonic() > deadline:
                    raise RuntimeError("workers not ready")
                time.sleep(0.2)
            sys.path[:0] = [str(root), str(ROOT)]
            os.environ.update(TB_BROKER=args.broker, TB_CONTROL=f"tb{tag}")
            from tb_app import add, fail  # type: ignore[import-not-found]

            taskctl = [sys.executable, "-m", "taskctl", "--broker", args.broker, "--config", str(root / "taskctl.toml")]
            cmd = f"cd {shlex.quote(str(root))} && exec env PYTHONPATH={shlex.quote(env['PYTHONPATH'])} "
            cmd += shlex.join([*taskctl, "top", "--interval", "1"])
            tmux("new-session", "-d", "-s", "top", "-x", "160", "-y", "50", "sh", "-c", cmd)
            pid = int(tmux("display", "-p", "-t", "top", "#{pane_pid}").strip())
            tmux.until(lambda s: f"tb1-{tag}@bench" in s and f"tb0-{tag}@bench" in s)
            time.sleep(3)  # start-up over
            result["idle_cpu_percent"] = round(100 * cpu_share(pid, args.seconds), 2)

            stop = threading.Event()

            def send() -> None:
                while not stop.is_set():
                    add.apply_async((1, 2), queue=queue)
                    time.sleep(0.02)

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            try:
                tmux.until(lambda s: any(line.startswith("tb.add ") for line in s.splitlines()))
                result["busy_cpu_percent_50_tasks_s"] = round(100 * cpu_share(pid, args.seconds), 2)
            finally:
                stop.set()
                sender.join()

            from taskctl import monitor

            keys = []
            for i in range(1, 11):
                want = f"sort: {monitor.SORT_KEYS[i % len(monitor.SORT_KEYS)]} "
                tmux("send-keys", "-t", "top", "s")
                keys.append(tmux.until(lambda s, want=want: want in s, timeout=5))
                time.sleep(0.13)  # land at different points of the refresh cycle
            result["key_latency_ms_median"] = round(statistics.median(keys) * 1000, 1)
            result["key_latency_ms_max"] = round(max(keys) * 1000, 1)

            seen = []
            for _ in range(5):
                marker = f"bench-{uuid.uuid4().hex[:6]}"
                t0 = time.monotonic()
                fail.apply_async((marker,), queue=queue)
                tmux.until(lambda s, m=marker: m in s, timeout=10)
                seen.append(time.monotonic() - t0)
                time.sleep(0.37)
            result["failure_to_screen_ms_median"] = round(statistics.median(seen) * 1000, 1)
            result["failure_to_screen_ms_max"] = round(max(seen) * 1000, 1)
            result["frame_ms_median"] = round(frame_ms(), 2)
            tmux("send-keys", "-t", "top", "q")
        finally:
            subprocess.run(["tmux", "-L", tmux.sock, "kill-server"], capture_output=True)
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
            try:
                from kombu import Connection

                with Connection(args.broker) as conn:
                    conn.channel().queue_delete(queue=queue)
            except Exception:
                pass
    if args.json:
        print(json.dumps(result))
    else:
        print("| measure | value |\n| --- | --- |")
        for k, v in result.items():
            print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
