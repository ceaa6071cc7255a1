"""A real Celery worker stores results in a table made by `taskctl table create --ttl` on DynamoDB Local."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

pytestmark = pytest.mark.celery


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_celery_stores_results_with_ttl_in_a_taskctl_table(run: Any, dynamodb_endpoint: str, unique_name: str) -> None:
    celery = pytest.importorskip("celery")
    import boto3
    from celery.contrib.testing.worker import start_worker

    port = dynamodb_endpoint.rsplit(":", 1)[1]
    backend = f"dynamodb://@127.0.0.1:{port}/{unique_name}?ttl_seconds=600"
    r = run("--backend", backend, "table", "create", "--ttl", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert (r.json["created"], r.json["ttl"]) == (True, {"status": "ENABLED", "attribute": "ttl"})

    app = celery.Celery("taskctl_table_test", broker="memory://", backend=backend)
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"], worker_hijack_root_logger=False
    )

    @app.task(name="taskctl_table_test.add")
    def add(x: int, y: int) -> int:
        return x + y

    ddb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1")
    logs = _Collect()
    watched = [logging.getLogger(n) for n in ("", "celery.backends.dynamodb")]
    levels = [lg.level for lg in watched]
    watched[0].addHandler(logs)  # the backend's logger propagates to the root
    for lg in watched:
        lg.setLevel(logging.DEBUG)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, loglevel="INFO"):
            res = add.delay(2, 3)
            assert res.get(timeout=30) == 5
            started = time.time()
        item = ddb.get_item(
            TableName=unique_name, Key={"id": {"S": f"b'celery-task-meta-{res.id}'"}}, ConsistentRead=True
        )
        assert "Item" in item, "no item under Celery's key"
        stored = item["Item"]
        assert set(stored) == {"id", "result", "timestamp", "ttl"}
        assert abs(int(stored["ttl"]["N"]) - (started + 600)) < 60
        assert b'"status": "SUCCESS"' in stored["result"]["B"]
        table_errors = [
            rec.getMessage()
            for rec in logs.records
            if rec.levelno >= logging.ERROR
            or ("dynamodb" in rec.name and rec.levelno >= logging.WARNING and "local-only" not in rec.getMessage())
        ]
        messages = [rec.getMessage() for rec in logs.records if rec.name == "celery.backends.dynamodb"]
        assert any(m.startswith("DynamoDB Time to Live is already enabled on table") for m in messages), messages
        assert table_errors == []
        r = run("--backend", backend, "table", "describe", "-o", "json")
        assert (r.json["celery_compatible"], r.json["problems"]) == (True, [])
    finally:
        watched[0].removeHandler(logs)
        for lg, level in zip(watched, levels, strict=True):
            lg.setLevel(level)
        ddb.delete_table(TableName=unique_name)
