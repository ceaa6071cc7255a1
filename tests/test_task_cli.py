"""`task` commands without a worker: bad input, exit codes, --no-mark, the Redis wake-up, --tree, requeue errors."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

UUID = "5f1c0a38-6f1e-4c55-9c1e-2f4c1d0f5a11"


def fs_config(directory: Path, backend: str | None) -> None:
    """filesystem:// broker (nothing listens) in DIRECTORY; optional result backend."""
    fs = directory / "fs"
    for sub in ("q", "ctl"):
        (fs / sub).mkdir(parents=True, exist_ok=True)
    lines = ["[default]", 'broker = "filesystem://"']
    if backend:
        lines.append(f'backend = "{backend}"')
    lines += [
        "[default.transport_options]",
        f'data_folder_in = "{fs / "q"}"',
        f'data_folder_out = "{fs / "q"}"',
        f'control_folder = "{fs / "ctl"}"',
    ]
    (directory / "taskctl.toml").write_text("\n".join(lines) + "\n")


def file_backend(directory: Path) -> str:
    d = directory / "results"
    d.mkdir(exist_ok=True)
    return f"file://{d}"


def celery_backend(url: str, **conf: Any) -> Any:
    from celery import Celery

    app = Celery("tctl_reader", backend=url)
    app.conf.update(**conf)
    return app.backend


# -- bad input ---------------------------------------------------------------------------------------------


def test_bad_ids_are_exit_2(run) -> None:  # type: ignore[no-untyped-def]
    r = run("task", "revoke", "not-an-id", "--yes")
    assert r.exit_code == 2 and "not a task id: 'not-an-id'" in r.stderr and "--any-id" in r.stderr
    r = run("task", "requeue", "a b", "--from-results", "--yes")
    assert r.exit_code == 2 and "not a task id" in r.stderr
    r = run("task", "revoke", "job-42", "--any-id", "--dry-run", "-o", "json")
    assert r.exit_code == 0 and r.json["revoked"] == ["job-42"]


def test_bad_signal_and_conflicting_sources_are_exit_2(run) -> None:  # type: ignore[no-untyped-def]
    r = run("task", "revoke", UUID, "--terminate", "--signal", "NOPE", "--yes")
    assert r.exit_code == 2 and "unknown signal 'NOPE'" in r.stderr
    r = run("task", "revoke", UUID, "--terminate", "--signal", "9", "--dry-run", "-o", "json")
    assert r.exit_code == 0 and (r.json["terminate"], r.json["signal"]) == (True, "SIGKILL")
    r = run("task", "requeue", UUID, "--from", "dlq", "--from-results", "--yes")
    assert r.exit_code == 2 and "--from and --from-results exclude each other" in r.stderr
    r = run("task", "requeue", "--yes")
    assert r.exit_code == 2 and "--from QUEUE or --from-results" in r.stderr


def test_destructive_commands_need_yes_off_a_terminal(run) -> None:  # type: ignore[no-untyped-def]
    r = run("task", "revoke", UUID)
    assert r.exit_code == 2 and "without --yes" in r.stderr
    r = run("task", "requeue", "--from", "dlq")
    assert r.exit_code == 2 and "without --yes" in r.stderr
    r = run("task", "requeue", UUID, "--from-results")
    assert r.exit_code == 2 and "without --yes" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("task", "revoke", UUID, "--yes"),
        ("task", "revoked"),
        ("task", "requeue", "--from", "some.dlq", "--yes"),
    ],
)
def test_unreachable_broker_is_exit_5_with_masked_url(run, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    r = run(*args, "--broker", "amqp://guest:s3cretpw@127.0.0.1:1//")
    assert r.exit_code == 5, r.stderr
    assert "amqp://guest:****@127.0.0.1:1//" in r.stderr and "s3cretpw" not in r.stderr + r.stdout
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 2


def test_wrong_password_is_exit_5(run, rabbitmq_url: str) -> None:  # type: ignore[no-untyped-def]
    r = run("task", "revoke", UUID, "--yes", "--broker", "amqp://guest:wr0ngpass@127.0.0.1:5672//")
    assert r.exit_code == 5, r.stderr
    assert "wr0ngpass" not in r.stderr and "****" in r.stderr


def test_missing_dead_letter_queue_is_exit_3(run, rabbitmq_url: str) -> None:  # type: ignore[no-untyped-def]
    q = f"tctl-missing-{uuid.uuid4().hex[:8]}"
    r = run("task", "requeue", "--from", q, "--yes", "--broker", rabbitmq_url)
    assert r.exit_code == 3, r.stderr
    assert q in r.stderr


# -- marking without a worker ----------------------------------------------------------------------------------


def test_no_mark_and_mark_with_no_worker_online(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    backend = file_backend(tmp_path)
    fs_config(tmp_path, backend)
    tid = str(uuid.uuid4())
    r = run("task", "revoke", tid, "--no-mark", "--yes", "--reply-timeout", "0.2", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert (r.json["marked"], r.json["backend"], r.json["replies"]) == ([], "skipped", [])
    assert "no worker replied within 0.2s" in r.stderr
    assert celery_backend(backend).get_task_meta(tid)["status"] == "PENDING"

    r = run("task", "revoke", tid, "--yes", "--reply-timeout", "0.2", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["marked"] == [tid] and r.json["backend"] == backend
    meta = celery_backend(backend).get_task_meta(tid)
    assert meta["status"] == "REVOKED"
    assert type(meta["result"]).__name__ == "TaskRevokedError"


def test_never_marks_over_failure(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    backend = file_backend(tmp_path)
    fs_config(tmp_path, backend)
    tid = str(uuid.uuid4())
    celery_backend(backend).mark_as_failure(tid, ValueError("broke"))
    r = run("task", "revoke", tid, "--yes", "--reply-timeout", "0", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["skipped_ready"] == [tid] and r.json["marked"] == []
    assert celery_backend(backend).get_task_meta(tid)["status"] == "FAILURE"


def test_mark_wakes_a_client_waiting_on_redis(run, tmp_path: Path, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    from celery import Celery
    from celery.exceptions import TaskRevokedError

    fs_config(tmp_path, redis_url)
    app = Celery("tctl_waiter", backend=redis_url)
    tid = str(uuid.uuid4())
    outcome: dict[str, Any] = {}

    def wait() -> None:
        t0 = time.monotonic()
        try:
            app.AsyncResult(tid).get(timeout=20)
        except TaskRevokedError:
            outcome["revoked_after"] = time.monotonic() - t0
        except Exception as exc:
            outcome["error"] = repr(exc)

    th = threading.Thread(target=wait, daemon=True)
    th.start()
    time.sleep(1.0)  # the client is subscribed and waiting
    r = run("task", "revoke", tid, "--yes", "--reply-timeout", "0", "-o", "json")
    assert r.exit_code == 0, r.stderr
    th.join(10)
    assert "revoked_after" in outcome, outcome
    assert outcome["revoked_after"] < 10
    app.backend.forget(tid)


def test_tree_revokes_unfinished_tasks_only(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    results = tmp_path / "results"
    results.mkdir()
    fs_config(tmp_path, f"file://{results}")
    root, done, todo = (str(uuid.uuid4()) for _ in range(3))

    def meta(tid: str, status: str, children: list[str]) -> None:
        value = {
            "status": status,
            "result": None,
            "traceback": None,
            "children": [[[c, None], None] for c in children],
            "date_done": None,
            "task_id": tid,
        }
        (results / f"celery-task-meta-{tid}").write_text(json.dumps(value))

    meta(root, "SUCCESS", [done, todo])
    meta(done, "SUCCESS", [])
    meta(todo, "STARTED", [])
    r = run("task", "revoke", root, "--tree", "--yes", "--reply-timeout", "0", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["revoked"] == [root, todo]
    assert r.json["skipped_ready"] == [root] and r.json["skipped_running"] == [todo] and r.json["marked"] == []


# -- requeue from results: what cannot be rebuilt ------------------------------------------------------------


def test_from_results_refuses_what_it_cannot_rebuild(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    backend = file_backend(tmp_path)
    fs_config(tmp_path, backend)
    plain, pickled, missing = (str(uuid.uuid4()) for _ in range(3))
    celery_backend(backend).mark_as_failure(plain, ValueError("x"))  # no request: not extended
    celery_backend(backend, result_serializer="pickle", result_accept_content=["pickle"]).mark_as_failure(
        pickled, ValueError("y")
    )
    r = run("task", "requeue", plain, pickled, missing, "--from-results", "--yes", "-o", "json")
    assert r.exit_code == 1
    rows = {x["task_id"]: x for x in r.json}
    assert all(x["action"] == "skipped" for x in rows.values())
    assert "result_extended=True" in rows[plain]["note"]
    assert "--unsafe-pickle" in rows[pickled]["note"]
    assert rows[missing]["note"] == "no stored result for this id"
    assert "3 not requeued" in r.stderr

    r = run("task", "requeue", missing, "--from-results", "--yes")
    assert r.exit_code == 3


# -- one stored-result reader --------------------------------------------------------------------------------


def test_revoke_and_requeue_read_results_as_result_show_does(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Revoke's marking and requeue --from-results read through results.Reader: the old key spelling of a
    global_keyprefix (Celery <= 5.4) and a serializer other than the configured one are found and kept."""
    import inspect

    from taskctl import tasks

    backend = file_backend(tmp_path)
    fs_config(tmp_path, backend)
    with (tmp_path / "taskctl.toml").open("a") as fh:
        fh.write('[default.result_transport_options]\nglobal_keyprefix = "app:"\n')
    d = Path(backend[7:])
    retrying, failed = str(uuid.uuid4()), str(uuid.uuid4())
    import msgpack

    (d / f"app:_celery-task-meta-{retrying}").write_bytes(
        msgpack.packb({"status": "RETRY", "result": None, "traceback": None, "children": [], "task_id": retrying})
    )
    value = {
        "status": "FAILURE",
        "result": {"exc_type": "ValueError", "exc_message": ["x"], "exc_module": "builtins"},
        "traceback": None,
        "children": [],
        "date_done": None,
        "task_id": failed,
        "name": "app.add",
        "args": [1, 2],
        "kwargs": {},
        "queue": "celery",
    }
    (d / f"app:_celery-task-meta-{failed}").write_bytes(msgpack.packb(value))

    r = run("task", "revoke", retrying, "--yes", "--reply-timeout", "0", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["marked"] == [retrying]
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [f"app:_celery-task-meta-{retrying}", f"app:_celery-task-meta-{failed}"]
    )  # marked in place, under the spelling it was found at, as msgpack
    r = run("result", "show", retrying, "-o", "json")
    assert (r.json[0]["state"], r.json[0]["serializer"]) == ("REVOKED", "msgpack")

    r = run("task", "requeue", failed, "--from-results", "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert [(x["task"], x["action"], x["queue"]) for x in r.json] == [("app.add", "would-requeue", "celery")]
    # no second reader: tasks decodes nothing itself
    assert "decode_payload" not in inspect.getsource(tasks) and not hasattr(tasks, "_load")


def test_tree_revoke_of_a_saved_group_revokes_its_members_not_the_group_id(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    results = tmp_path / "results"
    results.mkdir()
    fs_config(tmp_path, f"file://{results}")
    group, done, todo = (str(uuid.uuid4()) for _ in range(3))
    members = [[[done, None], None], [[todo, None], None]]
    (results / f"celery-taskset-meta-{group}").write_text(json.dumps({"result": [[group, None], members]}))
    value = {"status": "SUCCESS", "result": 1, "traceback": None, "children": [], "date_done": None}
    (results / f"celery-task-meta-{done}").write_text(json.dumps({**value, "task_id": done}))
    r = run("task", "revoke", group, "--tree", "--yes", "--reply-timeout", "0", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["revoked"] == [todo] and r.json["marked"] == [todo]
    assert not (results / f"celery-task-meta-{group}").exists()
