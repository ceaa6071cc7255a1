"""`taskctl worker list` against `celery inspect ping` on the same three workers (RabbitMQ or Redis), one run.

Three workers (prefork -c 2, prefork -c 2, solo) on a control exchange of their own, so other workers on the
broker do not answer. Both commands run as subprocesses with the default 1 s timeout, start-up included:
Celery waits its whole timeout; taskctl ends when every worker bound to the control exchange has answered.

In-process as well (interpreter start-up excluded): taskctl's list_workers (stats, active_queues and report
rounds) against ``app.control.inspect(timeout=1).ping()``.

Both subprocesses run with compiled bytecode, as an installed package has it (pip compiles on install): a
source checkout under PYTHONDONTWRITEBYTECODE=1 would otherwise recompile every taskctl module at each start
while Celery's come compiled from site-packages. The bytecode goes to a temporary PYTHONPYCACHEPREFIX, filled by
one untimed run of each command. ``--env-as-is`` measures with the caller's environment unchanged.

Usage: python bench/worker_bench.py [--broker URL] [--runs N] [--env-as-is] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

APP = """
import os
from celery import Celery
app = Celery("wb_app", broker=os.environ["WB_BROKER"])
app.conf.update(control_exchange=os.environ["WB_CONTROL"], broker_connection_retry_on_startup=True)
"""


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} exited {proc.returncode}: {proc.stderr[-500:]}")
    return elapsed, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--env-as-is", action="store_true", help="no bytecode cache set up, no warm-up run")
    args = ap.parse_args()
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "wb_app.py").write_text(APP)
        (root / "taskctl.toml").write_text(f'[default]\ncontrol_exchange = "wb{tag}"\n')
        env = dict(os.environ, WB_BROKER=args.broker, WB_CONTROL=f"wb{tag}")
        env["PYTHONPATH"] = os.pathsep.join([str(root), str(ROOT), env.get("PYTHONPATH", "")])
        if not args.env_as_is:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        pools = [["-P", "prefork", "-c", "2"], ["-P", "prefork", "-c", "2"], ["-P", "solo"]]
        procs = []
        for i, pool in enumerate(pools):
            log = open(root / f"w{i}.log", "wb")  # noqa: SIM115 (kept open for the worker's lifetime)
            argv = [sys.executable, "-m", "celery", "-A", "wb_app", "worker", *pool, "-n", f"wb{i}-{tag}@bench"]
            argv += ["-Q", f"wb-{tag}", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info"]
            procs.append(subprocess.Popen(argv, cwd=root, env=env, stdout=log, stderr=log))
        try:
            deadline = time.monotonic() + 90
            while not all(" ready." in (root / f"w{i}.log").read_text() for i in range(3)):
                if time.monotonic() > deadline:
                    raise RuntimeError("workers not ready")
                time.sleep(0.2)
            taskctl = [sys.executable, "-m", "taskctl", "--broker", args.broker, "--config", str(root / "taskctl.toml")]
            celery = [sys.executable, "-m", "celery", "-A", "wb_app", "inspect", "ping", "--timeout", "1"]
            if not args.env_as_is:  # fills the bytecode cache for both; not timed
                _timed([*taskctl, "worker", "list", "-o", "json"], root, env)
                _timed(celery, root, env)
            t_list, t_ping = [], []
            for _ in range(args.runs):
                elapsed, out = _timed([*taskctl, "worker", "list", "-o", "json"], root, env)
                assert len(json.loads(out)) == 3, out
                t_list.append(elapsed)
                elapsed, out = _timed(celery, root, env)
                assert out.count("pong") == 3, out
                t_ping.append(elapsed)
            # in-process, start-up excluded: the rounds themselves
            sys.path[:0] = [str(root), str(ROOT)]
            os.environ.update(WB_BROKER=args.broker, WB_CONTROL=f"wb{tag}")
            from wb_app import app  # type: ignore[import-not-found]

            from taskctl import workers
            from taskctl.config import resolve

            settings = resolve({"broker": args.broker}, config=str(root / "taskctl.toml"))
            i_list, i_ping = [], []
            for _ in range(args.runs):
                t0 = time.monotonic()
                assert len(workers.list_workers(settings, timeout=1.0)) == 3
                i_list.append(time.monotonic() - t0)
                t0 = time.monotonic()
                assert len(app.control.inspect(timeout=1.0).ping() or {}) == 3
                i_ping.append(time.monotonic() - t0)
            result = {
                "broker": args.broker.split("://")[0],
                "workers": 3,
                "runs": args.runs,
                "bytecode": "as is" if args.env_as_is else "compiled, one warm-up run each",
                "load_average": round(os.getloadavg()[0], 2),
                "taskctl_worker_list_s": round(statistics.median(t_list), 3),
                "celery_inspect_ping_s": round(statistics.median(t_ping), 3),
                "speedup": round(statistics.median(t_ping) / statistics.median(t_list), 2),
                "in_process_worker_list_s": round(statistics.median(i_list), 3),
                "in_process_inspect_ping_s": round(statistics.median(i_ping), 3),
                "in_process_speedup": round(statistics.median(i_ping) / statistics.median(i_list), 2),
            }
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:24} {v}")


if __name__ == "__main__":
    main()
