"""Worker replies are untrusted input: odd shapes give empty fields, long text is cut, names are bounded."""

from __future__ import annotations

from taskctl.formats import control as fmt


def test_stats_from_a_celery_5_reply() -> None:
    s = fmt.parse_stats(
        {
            "pid": 42,
            "uptime": 12.5,
            "prefetch_count": 8,
            "total": {"app.add": 3, "app.mul": 2},
            "pool": {"implementation": "celery.concurrency.prefork:TaskPool", "max-concurrency": 4},
            "rusage": {"maxrss": 51200},
        }
    )
    assert (s.pid, s.pool, s.concurrency, s.processed, s.uptime, s.maxrss_kb) == (42, "prefork", 4, 5, 12.5, 51200)


def test_malformed_replies_give_empty_fields_not_errors() -> None:
    for junk in (None, "x", [1], {"pool": "solo", "total": [1], "pid": "12", "rusage": "N/A"}):
        s = fmt.parse_stats(junk)
        assert s.pid is None and s.pool is None and s.processed is None
    assert fmt.parse_tasks({"not": "a list"}) == []
    assert fmt.parse_tasks([1, None, {"name": "no id"}]) == []
    assert fmt.parse_active_queues("q") == []
    assert fmt.celery_version({"ok": "no version here"}) is None
    assert fmt.celery_version({"ok": "software -> celery:5.7.0 (recovery) kombu:5.7.0"}) == "5.7.0"


def test_task_text_is_bounded_and_scheduled_entries_unwrapped() -> None:
    huge = "x" * 100_000
    [t] = fmt.parse_tasks([{"eta": "2030-01-01T00:00:00+00:00", "priority": 6, "request": {"id": "a", "args": huge}}])
    assert len(t.args) == fmt.MAX_TEXT and t.args.endswith("…")
    assert (t.task_id, t.eta, t.priority) == ("a", "2030-01-01T00:00:00+00:00", 6)
    many = [{"id": str(i), "name": "n"} for i in range(fmt.MAX_ITEMS + 5)]
    assert len(fmt.parse_tasks(many)) == fmt.MAX_ITEMS


def test_pidbox_queue_names() -> None:
    assert fmt.worker_of_pidbox_queue("celery@web1.celery.pidbox") == "celery@web1"
    assert fmt.worker_of_pidbox_queue("w@h.other.pidbox", "other") == "w@h"
    assert fmt.worker_of_pidbox_queue("reply.celery.pidbox") is None
    assert fmt.worker_of_pidbox_queue("celery") is None


def test_registered_entries() -> None:
    assert fmt.parse_registered(["app.add", "app.slow [rate_limit=10/m]", 3]) == [
        ("app.add", ""),
        ("app.slow", "rate_limit=10/m"),
        ("3", ""),
    ]
