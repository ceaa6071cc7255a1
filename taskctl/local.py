"""The embedded local stack: a DynamoDB-compatible server and kombu's ``filesystem://`` broker on this machine.

Everything lives in ``$XDG_STATE_HOME/taskctl/local`` (``~/.local/state/taskctl/local``)::

    stack.json          pids, ports and URLs of what runs (the one source of truth for status/down)
    dynamodb.log        the server's output       worker.log   the Celery worker's output
    broker/queue        filesystem:// messages (data_folder_in = data_folder_out)
    broker/processed    processed_folder          broker/control   exchange bindings (fanout, direct)

``up`` writes ``[env.local]`` to the user config file, so ``taskctl --env local ...`` (or ``TASKCTL_ENV=local``)
and Celery apps configured from it reach the stack. The server is AWS's DynamoDB Local when installed (``make
dynamodb-local``), else moto's server; it keeps its tables in memory, so ``down`` drops them. The backend URL
carries the dummy credentials ``local:local`` so that nothing on a fresh machine needs AWS credentials (DynamoDB
Local runs with ``-sharedDb``: any key sees the same tables).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskctl import config, events
from taskctl.errors import ConflictError, MissingExtraError, OperationError, UnavailableError
from taskctl.localserver import pid_alive, port_free, start_dynamodb, stop_pid, stop_process, wait_http
from taskctl.models import LocalProcess, LocalStack
from taskctl.urls import mask

ENV_NAME = "local"
TABLE = "celery"
#: results expire after a day; Celery writes the ``ttl`` attribute when ttl_seconds is set
TTL_SECONDS = 86400
#: dummy credentials: DynamoDB Local wants alphanumeric keys, and a fresh machine has no AWS credentials
CREDENTIALS = "local:local"
DEFAULT_PORT = 8000
DEMO_APP = "taskctl.demo_app"
#: kombu polls virtual transports; 0.1 s keeps the worker and `queue` commands snappy on one machine
POLLING_INTERVAL = 0.1


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"

    @property
    def dynamodb_log(self) -> Path:
        return self.root / "dynamodb.log"

    @property
    def worker_log(self) -> Path:
        return self.root / "worker.log"

    @property
    def queue_dir(self) -> Path:
        return self.root / "broker" / "queue"

    @property
    def processed_dir(self) -> Path:
        return self.root / "broker" / "processed"

    @property
    def control_dir(self) -> Path:
        return self.root / "broker" / "control"


def paths() -> Paths:
    return Paths(config.state_dir() / "local")


def backend_url(port: int) -> str:
    """The Celery backend URL of the stack (IP-literal endpoints need Celery 5.5+)."""
    return f"dynamodb://{CREDENTIALS}@127.0.0.1:{port}/{TABLE}?ttl_seconds={TTL_SECONDS}"


def transport_options(p: Paths) -> dict[str, Any]:
    """kombu filesystem:// options; absolute folders, since kombu reads relative ones from the cwd."""
    return {
        "data_folder_in": str(p.queue_dir),
        "data_folder_out": str(p.queue_dir),
        "processed_folder": str(p.processed_dir),
        "store_processed": False,
        "control_folder": str(p.control_dir),
        "polling_interval": POLLING_INTERVAL,
    }


def env_values(port: int, p: Paths) -> dict[str, Any]:
    return {"backend": backend_url(port), "broker": "filesystem://", "transport_options": transport_options(p)}


def settings_for(port: int, p: Paths) -> config.Settings:
    """Settings addressing the stack, independent of whatever the user's config file says."""
    return config.Settings(
        backend=backend_url(port),
        broker="filesystem://",
        transport_options=transport_options(p),
        env=ENV_NAME,
        sources={"backend": "taskctl local", "broker": "taskctl local"},
    )


# -- processes -------------------------------------------------------------------------------------------


# -- state -----------------------------------------------------------------------------------------------


def load_state(p: Paths) -> dict[str, Any]:
    try:
        data = json.loads(p.state_file.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_state(p: Paths, state: dict[str, Any]) -> None:
    p.root.mkdir(parents=True, exist_ok=True)
    tmp = p.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(p.state_file)


@contextlib.contextmanager
def _locked(p: Paths) -> Iterator[None]:
    """One `local up`/`down` at a time (two concurrent ups would start two servers)."""
    p.root.mkdir(parents=True, exist_ok=True)
    with p.lock_file.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _ddb_marker(kind: str) -> str:
    return "DynamoDBLocal.jar" if kind == "dynamodb-local" else "moto.server"


def _ddb_running(ddb: dict[str, Any] | None) -> bool:
    return bool(ddb) and pid_alive(ddb.get("pid"), ddb.get("marker"))  # type: ignore[union-attr]


def _worker_running(worker: dict[str, Any] | None) -> bool:
    return bool(worker) and pid_alive(worker.get("pid"), worker.get("marker"))  # type: ignore[union-attr]


# -- up --------------------------------------------------------------------------------------------------


def up(
    *, port: int | None = None, worker: bool = False, timeout: float = 90.0, prefer: str | None = None
) -> LocalStack:
    """Start what is not running yet; report what already runs. Rolls back what this call started on failure."""
    p = paths()
    actions: list[str] = []
    started: list[str] = []
    with _locked(p):
        state = load_state(p)
        try:
            ddb = state.get("dynamodb")
            if _ddb_running(ddb):
                assert ddb is not None
                actions.append(f"dynamodb: already running ({ddb['kind']}, pid {ddb['pid']}) at {ddb['endpoint_url']}")
                if port and port != ddb["port"]:
                    events.warn(
                        f"--port {port} ignored: the stack already runs on port {ddb['port']} "
                        "(run 'taskctl local down' first to move it)"
                    )
                wait_http(ddb["endpoint_url"], timeout, None)
            else:
                ddb = _start_dynamodb(p, port, state, timeout, prefer)
                started.append("dynamodb")
                state["dynamodb"] = ddb
                save_state(p, state)  # `down` must find it even if a later step fails
                actions.append(f"dynamodb: started {ddb['kind']} (pid {ddb['pid']}) at {ddb['endpoint_url']}")
            made = [d for d in (p.queue_dir, p.processed_dir, p.control_dir) if not d.is_dir()]
            for d in (p.queue_dir, p.processed_dir, p.control_dir):
                d.mkdir(parents=True, exist_ok=True)
            if made:
                actions.append(f"broker: created filesystem:// folders in {p.root / 'broker'}")
            settings = settings_for(ddb["port"], p)
            actions.append(_ensure_table(settings))
            cfg = config.save_environment(ENV_NAME, env_values(ddb["port"], p))
            state.update(
                {"port": ddb["port"], "backend": backend_url(ddb["port"]), "config_file": str(cfg), "table": TABLE}
            )
            actions.append(f"config: wrote [env.{ENV_NAME}] to {cfg}")
            with contextlib.suppress(Exception):
                in_use = config.config_path()
                if in_use is not None and in_use.resolve() != cfg.resolve():
                    events.warn(f"{in_use} takes precedence over {cfg}: use --config {cfg} with --env {ENV_NAME}")
            if worker:
                w = state.get("worker")
                if _worker_running(w):
                    assert w is not None
                    actions.append(f"worker: already running (pid {w['pid']}, app {w['app']})")
                else:
                    w = _start_worker(p, cfg, timeout)
                    started.append("worker")
                    state["worker"] = w
                    actions.append(f"worker: started Celery worker (pid {w['pid']}, app {w['app']}, solo pool)")
            state["updated"] = dt.datetime.now(dt.UTC).isoformat()
            save_state(p, state)
        except BaseException:
            for key in reversed(started):  # leave no process behind that this call started
                entry = state.pop(key)
                stop_process(entry["pid"], entry["marker"], 10)
            if started:
                save_state(p, state)
            raise
    return status(actions)


def _start_dynamodb(
    p: Paths, port: int | None, state: dict[str, Any], timeout: float, prefer: str | None
) -> dict[str, Any]:
    if port is not None:
        if not port_free(port):
            raise ConflictError(
                f"cannot start the local DynamoDB server: port {port} is in use",
                hint="pass another --port, or leave it out to use a free one",
            )
        chosen = port
    else:
        from taskctl.localserver import free_port

        chosen = (
            next((c for c in (state.get("port"), DEFAULT_PORT) if isinstance(c, int) and port_free(c)), None)
            or free_port()
        )
    p.dynamodb_log.write_bytes(b"")
    handle = start_dynamodb(chosen, prefer=prefer, log_path=str(p.dynamodb_log), detach=True, timeout=timeout)
    return {
        "kind": handle.kind,
        "pid": handle.pid,
        "port": handle.port,
        "endpoint_url": handle.endpoint_url,
        "marker": _ddb_marker(handle.kind),
        "log": str(p.dynamodb_log),
    }


def _ensure_table(settings: config.Settings) -> str:
    """Create the result table with Celery's schema and switch TTL on; idempotent."""
    from taskctl import tables

    info = tables.create(settings, TABLE, ttl=True)
    ttl = f"TTL {info.ttl_status} on '{info.ttl_attribute}'" if info.ttl_status else "TTL unknown"
    verb = "created" if info.created else "exists"
    return f"table: {TABLE} {verb} ({info.status}, {ttl})"


def _start_worker(p: Paths, cfg: Path, timeout: float) -> dict[str, Any]:
    if importlib.util.find_spec("celery") is None:
        raise MissingExtraError("celery", "local", "the local Celery worker")
    hostname = f"local@{socket.gethostname()}"
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        DEMO_APP,
        "worker",
        "--pool",
        "solo",
        "--loglevel",
        "INFO",
        "--hostname",
        hostname,
        # mingle and gossip wait for other workers' replies: none here, so they only slow start-up
        "--without-mingle",
        "--without-gossip",
    ]
    env = dict(os.environ)
    env.update({"TASKCTL_ENV": ENV_NAME, "TASKCTL_CONFIG": str(cfg), "PYTHONUNBUFFERED": "1"})
    # the worker must talk to the stack only: never to a production broker or backend exported in the shell
    for key in list(env):
        if key.startswith("CELERY_"):
            del env[key]
    offset = p.worker_log.stat().st_size if p.worker_log.exists() else 0
    with p.worker_log.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=str(p.root),
            env=env,
            start_new_session=True,
        )
    marker = f"-A {DEMO_APP} worker"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise OperationError(
                f"the Celery worker exited during start-up (exit code {proc.returncode})",
                hint=f"see {p.worker_log}",
            )
        if b" ready." in _read_from(p.worker_log, offset):
            return {"pid": proc.pid, "app": DEMO_APP, "marker": marker, "log": str(p.worker_log), "hostname": hostname}
        time.sleep(0.1)
    stop_pid(proc.pid, 5)
    raise UnavailableError(f"the Celery worker was not ready within {timeout:.0f}s", hint=f"see {p.worker_log}")


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read()
    except OSError:
        return b""


# -- status and down -------------------------------------------------------------------------------------


def status(actions: list[str] | None = None) -> LocalStack:
    """What runs where, from the state file, with every pid checked."""
    p = paths()
    state = load_state(p)
    ddb = state.get("dynamodb")
    w = state.get("worker")
    ddb_proc = (
        LocalProcess(
            component="dynamodb",
            kind=ddb["kind"],
            pid=ddb["pid"],
            alive=_ddb_running(ddb),
            address=ddb["endpoint_url"],
            log=ddb.get("log"),
        )
        if ddb
        else None
    )
    w_proc = (
        LocalProcess(
            component="worker",
            kind="celery",
            pid=w["pid"],
            alive=_worker_running(w),
            address=w.get("hostname"),
            log=w.get("log"),
        )
        if w
        else None
    )
    backend = state.get("backend")
    folders = transport_options(p) if state else {}
    return LocalStack(
        running=bool(ddb_proc and ddb_proc.alive),
        state_dir=str(p.root),
        env=ENV_NAME,
        config_file=state.get("config_file"),
        backend=mask(backend) if backend else None,
        broker="filesystem://" if state else None,
        table=state.get("table"),
        dynamodb=ddb_proc,
        worker=w_proc,
        broker_folders={k: v for k, v in folders.items() if k.endswith("folder") or k.startswith("data_folder")},
        actions=tuple(actions or ()),
    )


def queued_messages(p: Paths) -> int:
    """Messages waiting in the filesystem:// broker folder (what --purge would delete)."""
    try:
        return sum(1 for f in p.queue_dir.iterdir() if f.name.endswith(".msg"))
    except OSError:
        return 0


def purge_summary() -> str:
    """What `down --purge` deletes, for its confirmation prompt."""
    p = paths()
    n = queued_messages(p)
    return f"delete {p.root} ({n} queued message{'s' * (n != 1)}, logs) and [env.{ENV_NAME}]"


def down(*, purge: bool = False, timeout: float = 15.0, dry_run: bool = False) -> LocalStack:
    """Stop the worker, then the server; verify both pids are gone. --purge also removes state and [env.local].

    ``dry_run`` reports what would be stopped and removed ("would ...") and changes nothing.
    """
    p = paths()
    actions: list[str] = []
    if dry_run:
        return status(_planned_down(p, purge))
    with _locked(p):
        state = load_state(p)
        for key, what in (("worker", "Celery worker"), ("dynamodb", "DynamoDB server")):
            entry = state.get(key)
            if not entry:
                continue
            pid, marker = entry.get("pid"), entry.get("marker")
            if pid_alive(pid, marker):
                if not stop_process(pid, marker, timeout):
                    raise OperationError(f"could not stop the {what} (pid {pid})", hint=f"kill {pid}")
                actions.append(f"{key}: stopped {what} (pid {pid})")
            else:
                actions.append(f"{key}: was not running (pid {pid})")
            state.pop(key)
        if not actions:
            actions.append("nothing was running")
        if purge:
            cfg = state.get("config_file")
            if config.remove_environment(ENV_NAME, Path(cfg) if cfg else None):
                actions.append(f"config: removed [env.{ENV_NAME}] from {cfg or config.user_config_path()}")
            state = {}
        state["updated"] = dt.datetime.now(dt.UTC).isoformat()
        save_state(p, state)
    if purge:
        shutil.rmtree(p.root, ignore_errors=True)
        actions.append(f"state: removed {p.root}")
    out = status(actions)
    return out


def _planned_down(p: Paths, purge: bool) -> list[str]:
    state = load_state(p)
    actions: list[str] = []
    for key, what in (("worker", "Celery worker"), ("dynamodb", "DynamoDB server")):
        entry = state.get(key)
        if entry and pid_alive(entry.get("pid"), entry.get("marker")):
            actions.append(f"{key}: would stop {what} (pid {entry.get('pid')})")
    if not actions:
        actions.append("nothing is running")
    if purge:
        cfg = state.get("config_file") or str(config.user_config_path())
        actions.append(f"config: would remove [env.{ENV_NAME}] from {cfg}")
        if p.root.exists():
            n = queued_messages(p)
            actions.append(f"state: would remove {p.root} ({n} queued message{'s' * (n != 1)}, logs)")
    return actions


def kill_leftovers() -> None:
    """Last resort for the demo's finally: stop whatever the state file names, ignoring errors."""
    p = paths()
    state = load_state(p)
    for key in ("worker", "dynamodb"):
        entry = state.get(key) or {}
        with contextlib.suppress(Exception):
            if pid_alive(entry.get("pid"), entry.get("marker")):
                os.kill(int(entry["pid"]), signal.SIGKILL)
