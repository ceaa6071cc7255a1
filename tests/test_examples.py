"""Every script in examples/ runs as an operator would run it, against real servers, and does what it says.

The local stack (`taskctl local up --worker`: DynamoDB Local or moto, filesystem:// broker, a real Celery
worker) serves most of them; dead-lettering exists only on RabbitMQ, so the dead-letter requeue and the replay
run against RabbitMQ on loopback. The scripts call `taskctl` from PATH (the virtualenv's console script).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
pytestmark = [pytest.mark.celery]

if shutil.which("jq") is None:
    pytest.skip("jq is needed by the example scripts", allow_module_level=True)


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    endpoint: str
    client: Any

    def script(
        self, name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        full = {**self.env, **(env or {})}
        return subprocess.run(
            ["bash", str(EXAMPLES / name), *args],
            env={k: v for k, v in full.items() if v is not None},
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def taskctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "taskctl", *args], env=self.env, cwd=self.home, capture_output=True, text=True
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CELERY_", "TASKCTL_"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        AWS_EC2_METADATA_DISABLED="true",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    up = subprocess.run(
        [sys.executable, "-m", "taskctl", "local", "up", "--worker", "--port", str(free_port()), "-o", "json"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        env["TASKCTL_ENV"] = "local"
        from celery import Celery

        from taskctl import config

        cfg = config.resolve(env_name="local", config=str(home / ".config/taskctl/config.toml"), environ=env)
        client = Celery("examples-client", broker=cfg.broker, backend=cfg.backend)
        client.conf.broker_transport_options = cfg.transport_options
        yield Stack(home, env, info["dynamodb"]["address"], client)
        client.close()
    finally:
        subprocess.run(
            [sys.executable, "-m", "taskctl", "local", "down", "--purge", "--yes"],
            env=env,
            capture_output=True,
            timeout=120,
        )


def park(stack: Stack, queue: str, n: int) -> list[str]:
    return [stack.client.send_task("demo.add", (i, 1), queue=queue).id for i in range(n)]


def ready(stack: Stack, queue: str) -> int:
    r = stack.taskctl("queue", "stats", queue, "-o", "json")
    assert r.returncode == 0, r.stderr
    return int(json.loads(r.stdout)[0]["messages"])


# -- provision-result-table.sh ----------------------------------------------------------------------------


def test_provision_is_idempotent(stack: Stack) -> None:
    first = stack.script("provision-result-table.sh", "examples_results")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "examples_results: created, ACTIVE, TTL ENABLED on ttl\n"
    again = stack.script("provision-result-table.sh", "examples_results")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "examples_results: already there, ACTIVE, TTL ENABLED on ttl\n"


def test_provision_refuses_a_table_celery_cannot_use(stack: Stack) -> None:
    import boto3

    ddb = boto3.client(
        "dynamodb", endpoint_url=stack.endpoint, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip
    ddb.create_table(
        TableName="examples_wrong",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    r = stack.script("provision-result-table.sh", "examples_wrong")
    assert r.returncode == 4
    assert r.stdout == ""
    assert "provision: table exists with an incompatible schema" in r.stderr
    assert "Traceback" not in r.stderr


# -- nightly-cleanup.sh -----------------------------------------------------------------------------------


def test_nightly_cleanup_forgets_only_old_failures(stack: Stack) -> None:
    failed = [stack.client.send_task("demo.fail", (i,)) for i in range(2)]
    ok = stack.client.send_task("demo.add", (1, 1))
    for r in failed:
        r.get(timeout=60, propagate=False)
    assert ok.get(timeout=60) == 2
    # nothing is a week old yet: nothing goes
    r = stack.script("nightly-cleanup.sh", "7")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "nightly-cleanup: no FAILURE results older than 7d\n"
    assert all(stack.client.AsyncResult(f.id).state == "FAILURE" for f in failed)
    # 0 days: every failure so far goes; the success stays
    time.sleep(1)
    r = stack.script("nightly-cleanup.sh", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("nightly-cleanup: forgot ") and r.stdout.endswith(" FAILURE results older than 0d\n")
    assert int(r.stdout.split()[2]) >= 2
    for f in failed:
        shown = stack.taskctl("result", "show", f.id, "-o", "json")
        assert shown.returncode == 3  # forgotten: not found
    shown = stack.taskctl("result", "show", ok.id, "-o", "json")
    assert shown.returncode == 0
    r = stack.script("nightly-cleanup.sh", "x")
    assert r.returncode == 2


# -- incident-response.sh ---------------------------------------------------------------------------------


def test_incident_drain_poisoned_queue_to_file(stack: Stack) -> None:
    ids = park(stack, "poisoned", 4)
    out = stack.home / "poisoned.jsonl"
    r = stack.script("incident-response.sh", "drain", "poisoned", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"drained 4 messages from poisoned to {out} (0 put back)\n"
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["task_id"] for line in lines) == sorted(ids)
    assert ready(stack, "poisoned") == 0


def test_incident_revoke_runaway_tree(stack: Stack) -> None:
    # a root that started three children on a queue no worker consumes: they wait, unfinished
    root = stack.client.send_task("demo.spawn", (3,), {"queue": "runaway"})
    children = root.get(timeout=60)
    assert len(children) == 3
    r = stack.script("incident-response.sh", "revoke-tree", root.id)
    assert r.returncode == 0, r.stderr
    # the root (done) and its three children; the online worker answered
    assert r.stdout == f"revoke sent for 4 tasks in the tree of {root.id}, 1 workers replied\n"
    for child in children:
        shown = stack.taskctl("result", "show", child, "-o", "json")
        data = json.loads(shown.stdout)
        data = data[0] if isinstance(data, list) else data
        assert data["state"] == "REVOKED"


def test_incident_usage_errors_exit_2(stack: Stack) -> None:
    r = stack.script("incident-response.sh", "nonsense")
    assert r.returncode == 2 and "incident-response.sh drain QUEUE FILE" in r.stderr
    r = stack.script("incident-response.sh", "drain", "q-without-file")
    assert r.returncode == 2


@pytest.fixture
def dead_letters(rabbitmq_url: str) -> Iterator[tuple[str, str, list[str]]]:
    """A work queue dead-lettering into WORK.dlq, and three task messages rejected into the DLQ."""
    from kombu import Connection, Exchange, Producer, Queue

    work = f"ex-work-{uuid.uuid4().hex[:8]}"
    dlq = f"{work}.dlq"
    ids = [str(uuid.uuid4()) for _ in range(3)]
    with Connection(rabbitmq_url) as conn:
        ch = conn.channel()
        Queue(dlq, Exchange(""), routing_key=dlq, channel=ch).declare()
        args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
        Queue(work, Exchange(""), routing_key=work, queue_arguments=args, channel=ch).declare()
        producer = Producer(ch)
        for i, task_id in enumerate(ids):
            producer.publish(
                [[i, 1], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}],
                exchange="",
                routing_key=work,
                serializer="json",
                headers={"lang": "py", "task": "demo.add", "id": task_id, "root_id": task_id, "retries": 0},
            )
        for _ in ids:  # a consumer refuses them: RabbitMQ dead-letters each with an x-death header
            msg = None
            for _attempt in range(50):
                msg = ch.basic_get(work, no_ack=False)
                if msg is not None:
                    break
                time.sleep(0.05)
            assert msg is not None
            ch.basic_reject(msg.delivery_tag, requeue=False)
        ch.close()
    yield work, dlq, ids
    with Connection(rabbitmq_url) as conn:
        ch = conn.channel()
        for q in (work, dlq):
            ch.queue_delete(q)
        ch.close()


def test_incident_requeue_dead_letters_and_replay(
    stack: Stack, rabbitmq_url: str, dead_letters: tuple[str, str, list[str]]
) -> None:
    work, dlq, _ids = dead_letters
    env = {"TASKCTL_ENV": None, "TASKCTL_BROKER_URL": rabbitmq_url}
    r = stack.script("incident-response.sh", "requeue", dlq, env=env)  # type: ignore[dict-item]
    assert r.returncode == 0, r.stderr
    assert r.stdout == "requeued 3, skipped 0\n"
    # back on the queue they were dead-lettered from (read from x-death), none left in the DLQ
    from kombu import Connection

    with Connection(rabbitmq_url) as conn:
        ch = conn.channel()
        assert ch.queue_declare(queue=work, passive=True).message_count == 3
        assert ch.queue_declare(queue=dlq, passive=True).message_count == 0
        ch.close()
    # take them out to a file, and replay the file once the fix is deployed
    saved = stack.home / f"{work}.jsonl"
    r = stack.script("incident-response.sh", "drain", work, str(saved), env=env)  # type: ignore[dict-item]
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"drained 3 messages from {work} to {saved} (0 put back)\n"
    r = stack.script("incident-response.sh", "replay", str(saved), env=env)  # type: ignore[dict-item]
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("published 3 messages from ")
    with Connection(rabbitmq_url) as conn:
        ch = conn.channel()
        assert ch.queue_declare(queue=work, passive=True).message_count == 3
        ch.close()


# -- healthcheck.sh ---------------------------------------------------------------------------------------


def test_healthcheck_silent_and_0_when_healthy(stack: Stack) -> None:
    r = stack.script("healthcheck.sh", "celery", "1000")
    assert (r.returncode, r.stdout) == (0, ""), r.stdout + r.stderr


def test_healthcheck_backlog_is_one_line_and_exit_1(stack: Stack) -> None:
    park(stack, "backlog", 3)
    r = stack.script("healthcheck.sh", "backlog", "2")
    assert r.returncode == 1
    assert r.stdout == "unhealthy: queue backlog has 3 ready messages (limit 2)\n"
    stack.taskctl("queue", "purge", "backlog", "--yes")


def test_healthcheck_names_the_failing_check(stack: Stack) -> None:
    env = {"TASKCTL_ENV": None, "TASKCTL_RESULT_BACKEND": f"dynamodb://local:local@127.0.0.1:{free_port()}/celery"}
    r = stack.script("healthcheck.sh", env=env)  # type: ignore[arg-type]
    assert r.returncode == 1
    assert r.stdout.count("\n") == 1
    assert r.stdout.startswith("unhealthy: table: cannot describe table")
    assert "local:local" not in r.stdout


def test_healthcheck_reports_configuration_errors(stack: Stack) -> None:
    r = stack.script("healthcheck.sh", env={"TASKCTL_ENV": "nope"})
    assert r.returncode == 1
    assert r.stdout.startswith("unhealthy: error: unknown environment 'nope'")
    assert r.stdout.count("\n") == 1
