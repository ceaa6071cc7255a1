"""`make demo` (``python -m taskctl.demo``): taskctl's main job on an embedded stack, as a short tutorial.

Brings a local stack up with a real Celery worker, runs real workflows through it (a chain with a failure, a
group, a chord, a tree of spawned tasks, a task revoked before it runs), shows the taskctl commands an operator
uses on them, and brings the stack down again, also on error or Ctrl-C. Each command is printed before its
output, as a user would type it.

The demo's stack is its own: a state folder and a config file in a temporary folder (XDG_STATE_HOME and
XDG_CONFIG_HOME point there), a free port, no CELERY_*/TASKCTL_* variables from the shell. A stack the user
started with `taskctl local up`, their config file and its [env.local] are never read, stopped or written.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskctl import config, local
from taskctl.localserver import find_dynamodb_local, free_port

#: the demo's failures are the point; the worker must be quick
RESULT_TIMEOUT = 60.0


class DemoError(Exception):
    pass


class Tutorial:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = dict(os.environ)
        # the demo talks to its own stack only, never to a broker or backend exported in the shell
        for key in list(self.env):
            if key.startswith(("CELERY_", "TASKCTL_")):
                del self.env[key]
        self.env.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        self.env["COLUMNS"] = self.env.get("COLUMNS", "120")
        ddl = find_dynamodb_local()  # found from here (the checkout): the demo's commands run in ROOT
        if ddl is not None:
            self.env["TASKCTL_DYNAMODB_LOCAL_DIR"] = str(ddl)
        self.started = time.monotonic()

    def isolate(self) -> Path:
        """Point this process and every command it runs at the demo's own state folder and config file."""
        cfg_home, state_home = self.root / "config", self.root / "state"
        self.env.update(XDG_CONFIG_HOME=str(cfg_home), XDG_STATE_HOME=str(state_home))
        cfg = config.user_config_path(self.env)
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.touch()
        self.env["TASKCTL_CONFIG"] = str(cfg)
        for key in list(os.environ):
            if key.startswith(("CELERY_", "TASKCTL_")):
                del os.environ[key]
        os.environ.update(XDG_CONFIG_HOME=str(cfg_home), XDG_STATE_HOME=str(state_home), TASKCTL_CONFIG=str(cfg))
        return cfg

    def section(self, title: str) -> None:
        print(f"\n== {title}", flush=True)

    def say(self, text: str) -> None:
        print(f"# {text}", flush=True)

    def taskctl(self, *args: str, expect: tuple[int, ...] = (0,)) -> int:
        """Run taskctl as the user would, printing the command line and then its output."""
        print(f"\n$ taskctl {shlex.join(args)}", flush=True)
        rc = subprocess.run(
            [sys.executable, "-m", "taskctl", *args], env=self.env, cwd=self.root, stdin=subprocess.DEVNULL, check=False
        ).returncode
        if rc not in expect:
            raise DemoError(f"'taskctl {shlex.join(args)}' exited {rc}, expected {' or '.join(map(str, expect))}")
        return rc


def wait_for(what: str, check: Callable[[], bool], timeout: float = RESULT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DemoError(f"gave up waiting for {what} after {timeout:.0f}s")
        time.sleep(0.2)


def workflows(t: Tutorial) -> dict[str, Any]:
    """Send real work through the real worker; return the ids the tour looks at."""
    from taskctl import demo_app as d

    ids: dict[str, Any] = {}
    t.say("a chain whose second step fails: add(2, 2) | fail() | mul(10); mul never runs, Celery marks it failed")
    c = (d.add.s(2, 2) | d.fail.s() | d.mul.s(10)).apply_async()
    c.get(timeout=RESULT_TIMEOUT, propagate=False)
    ids["chain_last"], ids["chain_failed"], ids["chain_root"] = c.id, c.parent.id, c.parent.parent.id
    print(f"  chain: add -> {c.parent.parent.state}, fail -> {c.parent.state}, mul -> {c.state}")

    t.say("a group of five additions, in parallel as far as the solo worker goes")
    grp = d.group(d.add.s(i, i) for i in range(5)).apply_async()
    print(f"  group: {grp.get(timeout=RESULT_TIMEOUT)}")

    t.say("a chord: four additions, then xsum over their results (DynamoDB counts the header with UpdateItem)")
    ch = d.chord((d.add.s(i, i) for i in range(4)), d.xsum.s()).apply_async()
    print(f"  chord: xsum = {ch.get(timeout=RESULT_TIMEOUT)}")
    ids["chord"] = ch.id

    t.say("a task that starts three child tasks itself: a tree to walk")
    sp = d.spawn.delay(3)
    children = sp.get(timeout=RESULT_TIMEOUT)
    for child in children:
        d.app.AsyncResult(child).get(timeout=RESULT_TIMEOUT)
    print(f"  spawn: {sp.id} started {len(children)} children")
    ids["spawn"] = sp.id

    t.say("a task reporting progress (custom state PROGRESS) while it runs")
    pr = d.progress.delay(3, 0.1)
    print(f"  progress: {pr.get(timeout=RESULT_TIMEOUT)} steps")

    t.say("a flaky task: fails the first time (we requeue it below)")
    fl = d.flaky.delay(f"demo-{uuid.uuid4().hex[:6]}")
    fl.get(timeout=RESULT_TIMEOUT, propagate=False)
    print(f"  flaky: {fl.state}")
    ids["flaky"] = fl.id
    return ids


def revoke_before_run(t: Tutorial) -> str:
    from taskctl import demo_app as d

    t.say("a task due in 5 seconds, revoked before it runs: the worker skips it and stores REVOKED")
    victim = d.add.apply_async((40, 2), countdown=5)
    t.taskctl("--env", "local", "task", "revoke", victim.id, "--yes")
    wait_for("the revoked task's REVOKED state", lambda: victim.state == "REVOKED")
    print(f"  {victim.id}: {victim.state}", flush=True)
    return str(victim.id)


def park_messages(n: int) -> None:
    """Publish tasks to a queue no worker consumes, so there is something to peek at and purge."""
    from taskctl import demo_app as d

    for i in range(n):
        d.add.apply_async((i, 100), queue="parked")


def tour(t: Tutorial, ids: dict[str, Any]) -> None:
    t.section("3. The main job, with taskctl")
    t.say("provision a result table with Celery's schema and TTL on (idempotent: safe to re-run)")
    t.taskctl("--env", "local", "table", "create", "demo_results", "--ttl")
    t.taskctl("--env", "local", "table", "create", "demo_results", "--ttl", "-o", "json")
    t.say("the table the worker writes to: Celery-compatible, TTL on, real items")
    t.taskctl("--env", "local", "table", "describe")
    t.say("the failed step of the chain: state, exception, traceback, and what it was called with")
    t.taskctl("--env", "local", "result", "show", ids["chain_failed"])
    t.say("everything Celery recorded below the chain's first task, and below the spawning task")
    t.taskctl("--env", "local", "result", "tree", ids["chain_root"])
    t.taskctl("--env", "local", "result", "tree", ids["spawn"])
    t.say("failures stored in the last hour, as a script would read them")
    t.taskctl("--env", "local", "result", "list", "--state", "FAILURE", "--newer-than", "1h")

    t.say("three tasks waiting in a queue no worker consumes: look without taking them")
    park_messages(3)
    t.taskctl("--env", "local", "queue", "peek", "parked", "-n", "3")
    t.say("hand one of them to the worker's queue, then remove the rest (destructive, so --yes)")
    t.taskctl("--env", "local", "task", "requeue", "--from", "parked", "--to", "celery", "--limit", "1", "--yes")
    t.taskctl("--env", "local", "queue", "purge", "parked", "--yes")

    t.say("requeue the flaky task from its stored failure (same task id): the worker runs it again")
    t.taskctl("--env", "local", "task", "requeue", "--from-results", ids["flaky"], "--yes")
    from taskctl import demo_app as d

    wait_for("the requeued task to succeed", lambda: d.app.AsyncResult(ids["flaky"]).state == "SUCCESS")
    t.taskctl("--env", "local", "result", "show", ids["flaky"])

    t.say("rpc drain: Celery's rpc:// backend keeps results in AMQP reply queues; the local stack's")
    t.say("filesystem:// broker has none, so there is nothing to drain here. On RabbitMQ:")
    t.say("  taskctl --broker amqp://... rpc drain --all --idle-for 1h --file rpc-results.jsonl")

    t.say("and the check an operator runs first when something looks wrong")
    t.taskctl("--env", "local", "doctor")


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="taskctl-demo-"))
    t = Tutorial(root)
    print("taskctl demo: an embedded DynamoDB-compatible server, a filesystem:// broker and a real Celery worker")
    print(f"(its own stack in {root}: a stack you started with 'taskctl local up' is left alone)")
    rc = 0
    try:
        t.isolate()
        from taskctl import demo_app

        demo_app.patch_filesystem_transport()  # this process publishes to the demo worker's filesystem:// queue
        t.section("1. Start the local stack")
        t.taskctl("local", "up", "--worker", "--port", str(free_port()))
        os.environ["TASKCTL_ENV"] = "local"
        t.section("2. Real workflows through the real worker")
        ids = workflows(t)
        ids["revoked"] = revoke_before_run(t)
        tour(t, ids)
    except Exception as exc:
        print(f"\ndemo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        rc = 130
    finally:
        t.section("4. Stop the stack (no process is left behind)")
        try:
            t.taskctl("local", "down", "--purge", "--yes")
        except Exception as exc:
            print(f"local down failed ({exc}); killing what the state file names", file=sys.stderr)
            local.kill_leftovers()
            rc = rc or 1
        shutil.rmtree(root, ignore_errors=True)
    print(f"\ndemo finished in {time.monotonic() - t.started:.0f}s" + ("" if rc == 0 else f" (exit {rc})"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
