# mypy: disable-error-code="untyped-decorator, no-untyped-call"
"""A small Celery app for the local stack and the demo: real tasks producing real results, failures and trees.

Configured lazily from taskctl's own settings for the environment named by ``TASKCTL_ENV`` (default ``local``),
so the worker started by ``taskctl local up --worker`` and a client in another process share one broker and
one result backend. ``result_extended`` is on, so ``task requeue --from-results`` can rebuild messages.

    celery -A taskctl.demo_app worker --pool solo        # what `taskctl local up --worker` runs

Dev-only: the kombu filesystem:// fix below is applied by an explicit call, made by the worker process when it
starts (Celery's ``worker_init``) and by the demo's own process, never as a side effect of importing this module.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

from celery import Celery, Task, chord, group
from celery.signals import worker_init

__all__ = ["add", "app", "chord", "fail", "flaky", "group", "mul", "progress", "slow", "spawn", "xsum"]

app = Celery("taskctl.demo_app")
log = logging.getLogger(__name__)


def patch_filesystem_transport() -> None:
    """Close a race in kombu's filesystem:// transport (5.7): write message files atomically, read them safely.

    kombu creates ``<ts>_<uuid>.<queue>.msg`` and then writes into it; a consumer polling meanwhile moves the
    still-empty file away, fails to decode it, and the worker dies on the JSONDecodeError. Here a producer
    writes a hidden temporary name and renames it (consumers never match it), and a consumer that still meets
    an incomplete file from an unpatched producer waits for the writer's lock, re-reads, and, should the file
    stay unreadable, keeps it under ``processed_folder`` instead of crashing.
    """
    from kombu.transport import filesystem as fs
    from kombu.utils.encoding import bytes_to_str, str_to_bytes
    from kombu.utils.json import dumps, loads

    if getattr(fs.Channel, "_taskctl_patched", False):
        return

    def _put(self: Any, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        tmp = os.path.join(self.data_folder_out, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(str_to_bytes(dumps(payload)))
        os.replace(tmp, os.path.join(self.data_folder_out, name))

    def _get(self: Any, queue: str) -> Any:
        wanted = f"{queue}.msg"
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.partition(".")[2] != wanted:
                continue
            held = os.path.join(self.processed_folder, filename)
            os.makedirs(self.processed_folder, exist_ok=True)
            try:
                shutil.move(os.path.join(self.data_folder_in, filename), held)
            except OSError:
                continue  # another consumer took it
            payload = None
            for _ in range(40):
                with open(held, "rb") as f:
                    fs.lock(f, fs.LOCK_SH)  # an unpatched writer holds LOCK_EX while it writes
                    try:
                        raw = f.read()
                    finally:
                        fs.unlock(f)
                try:
                    payload = loads(bytes_to_str(raw))
                    break
                except ValueError:
                    time.sleep(0.05)
            if payload is None:
                log.error("kept unreadable message file %s", held)
                continue
            if not self.store_processed:
                os.remove(held)
            return payload
        raise Empty()

    channel: Any = fs.Channel
    channel._put = _put
    channel._get = _get
    channel._taskctl_patched = True


@worker_init.connect
def _patch_in_the_worker(**_: Any) -> None:
    """The worker of `local up --worker` (and the demo's) consumes filesystem:// messages: patch there only.

    Importing this module patches nothing: a client that imports it to send tasks keeps kombu as it is.
    """
    patch_filesystem_transport()


def _conf() -> dict[str, Any]:
    from taskctl import config

    s = config.resolve(env_name=os.environ.get("TASKCTL_ENV") or "local")
    return {
        "broker_url": s.broker,
        "result_backend": s.backend,
        "broker_transport_options": dict(s.transport_options),
        "result_backend_transport_options": dict(s.result_transport_options),
        "result_extended": True,
        "task_track_started": True,
        "broker_connection_retry_on_startup": True,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "task_default_queue": "celery",
    }


app.add_defaults(_conf)


@app.task(name="demo.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="demo.mul")
def mul(x: int, y: int) -> int:
    return x * y


@app.task(name="demo.xsum")
def xsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task(name="demo.fail")
def fail(x: Any = None) -> None:
    raise ValueError(f"demo failure (got {x!r})")


@app.task(name="demo.slow")
def slow(seconds: float = 2.0) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="demo.progress", bind=True)
def progress(self: Task, steps: int = 5, delay: float = 0.2) -> int:
    """Reports the custom PROGRESS state while it runs."""
    for i in range(steps):
        self.update_state(state="PROGRESS", meta={"current": i, "total": steps})
        time.sleep(delay)
    return steps


@app.task(name="demo.spawn")
def spawn(n: int = 3, queue: str | None = None) -> list[str]:
    """Starts N child tasks (on QUEUE if given): they appear in this result's children (a tree to walk)."""
    return [add.apply_async((i, i), queue=queue).id for i in range(n)]


@app.task(name="demo.flaky")
def flaky(key: str) -> str:
    """Fails the first time it runs for KEY and succeeds afterwards: what a requeue is for."""
    from taskctl import config

    marker = config.state_dir() / "local" / "flaky" / key
    if not marker.exists():
        Path(marker).parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        raise RuntimeError(f"transient failure for {key} (run it again)")
    return f"{key}: ok on retry"
