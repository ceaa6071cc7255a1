"""A real Celery worker for the task tests: a small app, started as `celery -A tctl_app worker -P solo`.

Stacks (broker + result backend) the worker runs on:
- "amqp": RabbitMQ on 127.0.0.1 + Redis results (dead-lettering is RabbitMQ's own, so only here);
- "filesystem": kombu's filesystem:// transport + Celery's file:// results: no server at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import REDIS_URL, port_open, service_missing

APP_SOURCE = """
import os
import pathlib

from celery import Celery
from celery.exceptions import Reject
from kombu import Exchange, Queue

app = Celery("tctl_app", broker=os.environ["TCTL_BROKER"], backend=os.environ["TCTL_BACKEND"])
fs = os.environ.get("TCTL_FS")
queue = os.environ["TCTL_QUEUE"]
dlq = os.environ.get("TCTL_DLQ")
args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq} if dlq else None
app.conf.update(
    result_extended=True,
    task_default_queue=queue,
    task_queues=[Queue(queue, Exchange(queue), routing_key=queue, queue_arguments=args)],
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    broker_transport_options=(
        {"data_folder_in": fs + "/q", "data_folder_out": fs + "/q", "control_folder": fs + "/ctl"} if fs else {}
    ),
)


@app.task(name="tctl.touch")
def touch(path):
    pathlib.Path(path).write_text("ran")
    return "touched"


@app.task(name="tctl.add")
def add(x, y):
    return x + y


@app.task(name="tctl.fail_once")
def fail_once(marker):
    p = pathlib.Path(marker)
    if not p.exists():
        p.write_text("1")
        raise ValueError("first run fails")
    return "second run"


@app.task(name="tctl.reject_once", acks_late=True)
def reject_once(marker):
    p = pathlib.Path(marker)
    if not p.exists():
        p.write_text("1")
        raise Reject("dead-letter me", requeue=False)
    return "requeued run"
"""


@dataclass
class Stack:
    """A broker, a result backend and one worker consuming QUEUE (dead-lettering to DLQ on RabbitMQ)."""

    kind: str
    broker: str
    backend: str
    queue: str
    dlq: str | None
    worker_name: str
    root: Path
    transport_options: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    _client: Any = None

    @property
    def cli(self) -> list[str]:
        """Global options for taskctl pointing at this stack."""
        return ["--broker", self.broker, "--backend", self.backend]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(TCTL_BROKER=self.broker, TCTL_BACKEND=self.backend, TCTL_QUEUE=self.queue)
        if self.dlq:
            env["TCTL_DLQ"] = self.dlq
        if self.kind == "filesystem":
            env["TCTL_FS"] = str(self.root / "fs")
        env["PYTHONPATH"] = str(self.root)
        return env

    def client(self) -> Any:
        """A Celery client app on the same broker and backend (what an application would use)."""
        if self._client is None:
            from celery import Celery
            from kombu import Exchange, Queue

            app = Celery("tctl_client", broker=self.broker, backend=self.backend)
            args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.dlq} if self.dlq else None
            queue = Queue(self.queue, Exchange(self.queue), routing_key=self.queue, queue_arguments=args)
            app.conf.update(
                result_extended=True,
                broker_transport_options=self.transport_options,
                task_queues=[queue],
                task_default_queue=self.queue,
            )
            self._client = app
        return self._client

    def send(self, name: str, args: list[Any], task_id: str | None = None, **opts: Any) -> str:
        task_id = task_id or str(uuid.uuid4())
        self.client().send_task(name, args=args, task_id=task_id, queue=self.queue, **opts)
        return task_id

    def meta(self, task_id: str) -> dict[str, Any]:
        return dict(self.client().backend.get_task_meta(task_id))

    def wait_state(self, task_id: str, states: set[str], timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        meta = self.meta(task_id)
        while meta.get("status") not in states and time.monotonic() < deadline:
            time.sleep(0.1)
            meta = self.meta(task_id)
        return meta

    def start(self) -> None:
        self.log = self.root / f"worker-{self.kind}.log"
        argv = [sys.executable, "-m", "celery", "-A", "tctl_app", "worker", "-P", "solo", "-Q", self.queue]
        argv += ["-n", self.worker_name, "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=self.root, env=self.env(), stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited at start-up:\n{self.log.read_text()[-3000:]}")
            if " ready." in self.log.read_text():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready within 60s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log_text(self) -> str:
        return self.log.read_text() if self.log else ""


def _declare_amqp_queues(broker: str, queue: str, dlq: str) -> None:
    from kombu import Connection

    with Connection(broker) as conn:
        ch = conn.channel()
        ch.queue_declare(queue=dlq, durable=True, auto_delete=False)
        ch.queue_declare(
            queue=queue,
            durable=True,
            auto_delete=False,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq},
        )
        ch.close()


def _delete_amqp_queues(broker: str, *queues: str) -> None:
    from kombu import Connection

    with Connection(broker) as conn:
        for q in queues:
            ch = conn.channel()
            try:
                ch.queue_delete(queue=q)
            except Exception:
                pass
            try:
                ch.close()
            except Exception:
                pass


def make_stack(kind: str, root: Path) -> Iterator[Stack]:
    """Start a worker on KIND ("amqp" or "filesystem"); yields the running stack and stops it after."""
    tag = uuid.uuid4().hex[:8]
    root.mkdir(parents=True, exist_ok=True)
    (root / "tctl_app.py").write_text(APP_SOURCE)
    if kind == "amqp":
        if not port_open("127.0.0.1", 5672):
            service_missing("RabbitMQ on 127.0.0.1:5672")
        if not port_open("127.0.0.1", 6379):
            service_missing("Redis on 127.0.0.1:6379")
        stack = Stack(
            kind,
            broker="amqp://guest:guest@127.0.0.1:5672//",
            backend=REDIS_URL,
            queue=f"tctl-work-{tag}",
            dlq=f"tctl-dlq-{tag}",
            worker_name=f"tctl-{tag}@amqp",
            root=root,
        )
        assert stack.dlq is not None
        _declare_amqp_queues(stack.broker, stack.queue, stack.dlq)
    else:
        fs = root / "fs"
        for sub in ("q", "ctl", "results"):
            (fs / sub).mkdir(parents=True, exist_ok=True)
        stack = Stack(
            kind,
            broker="filesystem://",
            backend=f"file://{fs / 'results'}",
            queue=f"tctl-work-{tag}",
            dlq=None,
            worker_name=f"tctl-{tag}@fs",
            root=root,
            transport_options={
                "data_folder_in": str(fs / "q"),
                "data_folder_out": str(fs / "q"),
                "control_folder": str(fs / "ctl"),
            },
        )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        if kind == "amqp":
            assert stack.dlq is not None
            _delete_amqp_queues(stack.broker, stack.queue, stack.dlq)


def write_config(stack: Stack, directory: Path) -> Path:
    """A taskctl.toml in DIRECTORY naming the stack's transport options (filesystem:// needs its folders)."""
    lines = ["[default]", f'broker = "{stack.broker}"', f'backend = "{stack.backend}"']
    if stack.transport_options:
        lines.append("[default.transport_options]")
        lines += [f'{k} = "{v}"' for k, v in stack.transport_options.items()]
    path = directory / "taskctl.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(name="stack_module", scope="module", params=["amqp", "filesystem"])
def stack_module_fixture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from make_stack(request.param, tmp_path_factory.mktemp(f"stack-{request.param}"))


@pytest.fixture(name="stack")
def stack_fixture(stack_module: Stack, clean_env: Path) -> Stack:
    """The module's worker stack, with taskctl configured for it (taskctl.toml in the test's directory)."""
    write_config(stack_module, clean_env)
    return stack_module
