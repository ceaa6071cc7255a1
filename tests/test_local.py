"""`taskctl local up|status|down` end to end: real server, real filesystem:// broker, a real Celery worker.

One stack per module (starting DynamoDB Local and a worker costs seconds); taskctl runs as a subprocess so the
stack really is detached from the command that started it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.celery


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    up: dict[str, Any]

    def taskctl(
        self, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **(extra_env or {})}
        return subprocess.run(
            [sys.executable, "-m", "taskctl", *args],
            env=env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,  # as a script runs it: off a terminal
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @property
    def config(self) -> Path:
        return self.home / ".config/taskctl/config.toml"


def stack_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CELERY_", "TASKCTL_"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        AWS_EC2_METADATA_DISABLED="true",
        COLUMNS="200",
    )
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_running(pid: int) -> bool:
    """True while PID exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


#: a user's config file before `local up`: its comments and other environments must survive up and down
USER_CONFIG = """\
# my settings (comments stay)
[default]
backend = "dynamodb://@us-east-1/celery"  # production

[env.staging]   # staging
broker = 'amqp://guest@staging//'
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("local-stack")
    s = Stack(home, stack_env(home), {})
    s.config.parent.mkdir(parents=True)
    s.config.write_text(USER_CONFIG)
    r = s.taskctl("local", "up", "--worker", "--port", str(free_port()), "-o", "json")
    try:
        assert r.returncode == 0, r.stderr
        s.up = json.loads(r.stdout)
        yield s
    finally:
        s.taskctl("local", "down", "--purge", "--yes")


def test_up_starts_server_broker_worker_and_writes_env(stack: Stack) -> None:
    up = stack.up
    assert up["running"] is True
    assert up["dynamodb"]["alive"] is True and up["worker"]["alive"] is True
    assert proc_running(up["dynamodb"]["pid"]) and proc_running(up["worker"]["pid"])
    assert up["backend"].startswith("dynamodb://local:****@127.0.0.1:")  # dummy secret masked
    assert up["backend"].endswith("/celery?ttl_seconds=86400")
    assert up["broker"] == "filesystem://"
    assert any(a.startswith("table: celery created (ACTIVE, TTL ENABLED on 'ttl')") for a in up["actions"])
    cfg = stack.config.read_text()
    assert "[env.local]" in cfg and 'broker = "filesystem://"' in cfg
    # the user's part of the file is untouched, byte for byte: [env.local] is added after it
    assert cfg.startswith(USER_CONFIG + "\n[env.local]\n")
    for folder in up["broker_folders"].values():
        assert Path(folder).is_dir() and Path(folder).is_absolute()


def test_up_twice_reports_what_already_runs(stack: Stack) -> None:
    r = stack.taskctl("local", "up", "--worker", "-o", "json")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["dynamodb"]["pid"] == stack.up["dynamodb"]["pid"]
    assert again["worker"]["pid"] == stack.up["worker"]["pid"]
    assert any(a.startswith("dynamodb: already running") for a in again["actions"])
    assert any(a.startswith("worker: already running") for a in again["actions"])
    assert any(a.startswith("table: celery exists") for a in again["actions"])


def test_status_plain_is_awk_friendly(stack: Stack) -> None:
    r = stack.taskctl("local", "status")
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(None, 1) for line in r.stdout.splitlines() if line.strip())
    assert fields["running"] == "true"
    assert fields["dynamodb.alive"] == "true" and fields["worker.alive"] == "true"
    assert fields["dynamodb.pid"] == str(stack.up["dynamodb"]["pid"])
    assert "local:local" not in r.stdout


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_env_local_reaches_the_stack(stack: Stack, how: str) -> None:
    if how == "flag":
        r = stack.taskctl("--env", "local", "table", "describe", "-o", "json")
    else:
        # an exported production URL must not win over the selected environment
        r = stack.taskctl(
            "table",
            "describe",
            "-o",
            "json",
            extra_env={"TASKCTL_ENV": "local", "CELERY_RESULT_BACKEND": "dynamodb://@eu-west-1/prod"},
        )
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["table"] == "celery" and info["celery_compatible"] is True
    assert info["ttl"] == {"status": "ENABLED", "attribute": "ttl"}


def test_worker_produces_a_real_result(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from celery import Celery

    from taskctl import config

    for k, v in stack.env.items():
        if k.startswith(("HOME", "XDG_")):
            monkeypatch.setenv(k, v)
    s = config.resolve(env_name="local")
    client = Celery("test-client", broker=s.broker, backend=s.backend)
    client.conf.broker_transport_options = s.transport_options
    try:
        res = client.send_task("demo.add", (20, 22))
        assert res.get(timeout=60) == 42
        failed = client.send_task("demo.fail", (1,))
        failed.get(timeout=60, propagate=False)
        assert failed.state == "FAILURE"
    finally:
        client.close()
    # what Celery stored is visible to taskctl, with the TTL attribute Celery writes
    import boto3

    ddb = boto3.client(
        "dynamodb",
        endpoint_url=stack.up["dynamodb"]["address"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    item = ddb.get_item(TableName="celery", Key={"id": {"S": f"b'celery-task-meta-{res.id}'"}})["Item"]
    assert b'"status": "SUCCESS"' in item["result"]["B"] and int(item["ttl"]["N"]) > 0
    r = stack.taskctl("--env", "local", "result", "show", res.id, "-o", "json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    shown = shown[0] if isinstance(shown, list) else shown
    assert shown["state"] == "SUCCESS" and shown["result"] == 42


def test_demo_leaves_the_users_stack_and_config_alone(stack: Stack) -> None:
    """`make demo` with the user's stack running: it runs its own stack, and the user's keeps running untouched."""
    state_file = stack.home / ".local/state/taskctl/local/stack.json"
    before = (state_file.read_bytes(), stack.config.read_bytes())
    env = {**stack.env, "TASKCTL_ENV": "local", "CELERY_BROKER_URL": "amqp://prod//"}  # exported: must be ignored
    r = subprocess.run(
        [sys.executable, "-m", "taskctl.demo"],
        env=env,
        cwd=stack.home,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "demo finished" in r.stdout
    assert (state_file.read_bytes(), stack.config.read_bytes()) == before
    assert proc_running(stack.up["dynamodb"]["pid"]) and proc_running(stack.up["worker"]["pid"])
    r = stack.taskctl("--env", "local", "table", "describe", "-o", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["table"] == "celery"


def test_importing_the_demo_app_patches_nothing() -> None:
    """kombu's filesystem:// fix is applied by the worker when it starts (worker_init), not by an import."""
    probe = (
        "import taskctl.demo_app\n"
        "from kombu.transport import filesystem as fs\n"
        "from celery.signals import worker_init\n"
        "before = getattr(fs.Channel, '_taskctl_patched', False)\n"
        "worker_init.send(sender=None)\n"
        "print(before, getattr(fs.Channel, '_taskctl_patched', False))\n"
    )
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["False", "True"]


def test_down_leaves_no_process_behind(stack: Stack) -> None:
    pids = [stack.up["dynamodb"]["pid"], stack.up["worker"]["pid"]]
    r = stack.taskctl("local", "down", "-o", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["running"] is False and out["dynamodb"] is None and out["worker"] is None
    assert sorted(out["actions"]) == sorted(
        [f"dynamodb: stopped DynamoDB server (pid {pids[0]})", f"worker: stopped Celery worker (pid {pids[1]})"]
    )
    assert not any(proc_running(p) for p in pids)
    # the environment stays (for the next `up`), but nothing answers: exit 5, one line
    r = stack.taskctl("--env", "local", "table", "describe")
    assert r.returncode == 5 and "Traceback" not in r.stderr
    r = stack.taskctl("local", "down", "-o", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["actions"] == ["nothing was running"]
    state = stack.home / ".local/state/taskctl/local"
    (state / "broker/queue/1_x.celery.msg").write_text("{}")  # a queued message that --purge would delete
    r = stack.taskctl("local", "down", "--purge")  # stdin is not a terminal: refused, nothing deleted
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.startswith(
        f"error: refusing to delete {state} (1 queued message, logs) and [env.local] without --yes"
    )
    r = stack.taskctl("local", "down", "--purge", "--dry-run", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["actions"] == [
        "nothing is running",
        f"config: would remove [env.local] from {stack.config}",
        f"state: would remove {state} (1 queued message, logs)",
    ]
    assert (state / "broker/queue/1_x.celery.msg").exists() and "[env.local]" in stack.config.read_text()
    r = stack.taskctl("local", "down", "--purge", "--yes", "-o", "json")
    assert r.returncode == 0
    assert not state.exists()
    assert stack.config.read_text() == USER_CONFIG  # [env.local] gone, the rest as the user wrote it
    r = stack.taskctl("--env", "local", "table", "describe")
    assert r.returncode == 2 and "unknown environment 'local'" in r.stderr


def test_busy_port_is_a_conflict_and_starts_nothing(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run("local", "up", "--port", str(port))
    assert r.exit_code == 4
    assert f"port {port} is in use" in r.stderr
    r = run("local", "status", "-o", "json")
    assert r.json["running"] is False and r.json["dynamodb"] is None


def test_pid_checks_never_trust_a_reused_pid() -> None:
    from taskctl.local import pid_alive

    assert pid_alive(os.getpid())
    assert not pid_alive(os.getpid(), "DynamoDBLocal.jar")  # alive, but not our server
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
