"""`taskctl rpc ...` against real Celery on RabbitMQ: a client sends tasks with backend rpc:// and exits; a solo
worker runs them; the results wait in the client's reply queue, where `rpc drain` shows and removes them."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskctl import backends

KombuBroker = backends.load(backends.BROKER)

APP = """
from celery import Celery
app = Celery("rpcapp", broker="{url}", backend="rpc://")
app.conf.task_default_queue = "{queue}"
app.conf.worker_hijack_root_logger = False

@app.task
def add(x, y):
    return x + y

@app.task
def boom():
    raise ValueError("boom")
"""

CLIENT = """
import rpcapp
ids = [rpcapp.add.delay(i, i).id for i in range(3)] + [rpcapp.boom.delay().id]
print(rpcapp.app.thread_oid)
print(" ".join(ids))
"""


@pytest.fixture
def celery_app(rabbitmq_url: str, unique_name: str, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    d = tmp_path / "app"
    d.mkdir()
    (d / "rpcapp.py").write_text(APP.format(url=rabbitmq_url, queue=unique_name))
    (d / "client.py").write_text(CLIENT)
    yield d, unique_name
    b = KombuBroker(rabbitmq_url)
    try:
        b.delete_queue(unique_name)
    except Exception:
        pass


@pytest.mark.celery
def test_rpc_drain_shows_results_of_an_exited_client(celery_app: tuple[Path, str], rabbitmq_url: str, run: Any) -> None:
    d, queue = celery_app
    client = subprocess.run([sys.executable, "client.py"], cwd=d, capture_output=True, text=True, timeout=60)
    assert client.returncode == 0, client.stderr
    oid, ids_line = client.stdout.split("\n")[:2]
    ids = ids_line.split()
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "rpcapp",
            "worker",
            "--pool=solo",
            "-Q",
            queue,
            "-n",
            f"{queue}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "warning",
        ],
        cwd=d,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    b = KombuBroker(rabbitmq_url)
    try:
        t = time.monotonic() + 60
        while time.monotonic() < t:
            try:
                if b.stats(oid).messages >= 4:
                    break
            except Exception:
                pass
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    try:
        r = run("rpc", "drain", oid, "--peek", "-o", "json", "--broker", rabbitmq_url)
        assert r.exit_code == 0, r.stderr
        states = {x["task_id"]: x["state"] for x in r.json}
        assert states == {ids[0]: "SUCCESS", ids[1]: "SUCCESS", ids[2]: "SUCCESS", ids[3]: "FAILURE"}
        boom = next(x for x in r.json if x["task_id"] == ids[3])
        assert boom["result"]["exc_type"] == "ValueError" and boom["removed"] is False
        assert b.stats(oid).messages == 4  # --peek left them
        r = run("rpc", "drain", oid, "--yes", "--broker", rabbitmq_url)
        assert r.exit_code == 0, r.stderr
        assert "ValueError: boom" in r.stdout and r.stdout.count("SUCCESS") == 3
        assert b.stats(oid).messages == 0  # removed, and the queue still exists (never consumed)
        r = run("rpc", "list", "--broker", rabbitmq_url, "-o", "json")
        if r.exit_code != 5:  # management API present
            assert oid in [q["queue"] for q in r.json]
            mine = next(q for q in r.json if q["queue"] == oid)
            assert mine["auto_delete"] is True and mine["expires"] == 86400.0
    finally:
        try:
            b.delete_queue(oid)
        except Exception:
            pass


def test_rpc_drain_missing_queue_exit_3_and_usage(rabbitmq_url: str, run: Any) -> None:
    r = run("rpc", "drain", "00000000-0000-0000-0000-000000000000", "--yes", "--broker", rabbitmq_url)
    assert r.exit_code == 3 and "does not exist" in r.stderr
    r = run("rpc", "drain", "--broker", rabbitmq_url)
    assert r.exit_code == 2


@pytest.fixture
def vhost_url(rabbitmq_url: str, unique_name: str) -> Iterator[str]:
    """A vhost of its own: `rpc drain --all` must not touch other reply queues on this broker."""
    import base64
    import urllib.error
    import urllib.request

    from conftest import service_missing

    auth = "Basic " + base64.b64encode(b"guest:guest").decode()

    def call(method: str, path: str, body: bytes | None = None) -> None:
        req = urllib.request.Request("http://127.0.0.1:15672" + path, data=body, method=method)
        req.add_header("Authorization", auth)
        req.add_header("content-type", "application/json")
        urllib.request.urlopen(req, timeout=10).close()

    try:
        call("PUT", f"/api/vhosts/{unique_name}")
    except (urllib.error.URLError, OSError):
        service_missing("RabbitMQ management API on 127.0.0.1:15672")
    call("PUT", f"/api/permissions/{unique_name}/guest", b'{"configure":".*","write":".*","read":".*"}')
    yield f"amqp://guest:guest@127.0.0.1:5672/{unique_name}"
    call("DELETE", f"/api/vhosts/{unique_name}")


def test_rpc_drain_all_idle_deletes_abandoned_queues(vhost_url: str, run: Any, tmp_path: Path) -> None:
    """A reply queue as Celery 5.7 declares it (durable, auto-delete, x-expires), one result in it."""
    import json
    import uuid

    from taskctl.formats.message import RawMessage

    b = KombuBroker(vhost_url)
    oid = str(uuid.uuid4())
    b.declare_queue(oid, durable=True, auto_delete=True, arguments={"x-expires": 600000})
    b.declare_queue("celery")  # not a reply queue: left alone
    body = {"status": "SUCCESS", "result": 8, "traceback": None, "children": [], "task_id": "t-all"}
    msg = RawMessage(json.dumps(body).encode(), "application/json", "utf-8", {}, {"correlation_id": "t-all"})
    with b.publisher() as pub:
        pub.publish(msg, "", oid)
        pub.flush()
    out = tmp_path / "rpc.jsonl"
    r = run(
        "rpc", "drain", "--yes", "--all", "--idle-for", "0", "--file", str(out), "--broker", vhost_url, "-o", "json"
    )
    assert r.exit_code == 0, r.stderr
    assert [(x["source"], x["count"]) for x in r.json] == [(oid, 1)]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["task_id"], x["state"]) for x in lines] == [("t-all", "SUCCESS")]
    assert run("queue", "stats", oid, "--broker", vhost_url).exit_code == 3  # emptied and deleted
    assert run("queue", "stats", "celery", "--broker", vhost_url).exit_code == 0
