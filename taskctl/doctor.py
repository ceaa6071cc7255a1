"""`taskctl doctor`: is this configuration one Celery can work with, and can taskctl reach all of it?

Each check is one row (pass, warn or fail, with a hint for anything but pass). It reads and never writes,
except with ``write_probe``: then it puts one probe item under a key no task id can have and deletes it
again. A failing check never hides the others: the point is the whole picture in one run. A check that cannot
run because one it depends on failed (no table to read, no broker to ask) is still a row, ``skipped``, whose
detail says which check it waited for.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from taskctl import backends
from taskctl.errors import ExitCode, NotFoundError, TaskctlError, UnavailableError
from taskctl.models import Check, Listing, Outcome
from taskctl.units import format_size
from taskctl.urls import mask, scheme_of

if TYPE_CHECKING:
    from taskctl.backends.base import QueueCounts, TableAdmin, TtlDescription
    from taskctl.config import Settings

PASS, WARN, FAIL, SKIPPED = "pass", "warn", "fail", "skipped"
#: the checks of a result store with tables, before the read/write probes
TABLE_CHECKS = ("table", "table-schema", "table-ttl", "table-items")
#: a probe key no Celery task id can collide with (ids are UUIDs)
PROBE_PREFIX = "celery-task-meta-taskctl-doctor-probe-"
#: what Celery's DynamoDB backend calls, as IAM actions (celery-formats.md §3.5)
CELERY_DYNAMODB_ACTIONS = (
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
    "dynamodb:UpdateItem",
    "dynamodb:DescribeTimeToLive",
)


def _denied(exc: TaskctlError) -> bool:
    return exc.code == "auth" or "access denied" in exc.message.lower()


def _fail_from(name: str, exc: TaskctlError, action: str | None = None) -> Check:
    if action and _denied(exc):
        return Check(
            name,
            FAIL,
            f"missing permission {action}: {exc.message}",
            f"grant {action} on the table to this identity (Celery's backend needs "
            f"{', '.join(CELERY_DYNAMODB_ACTIONS)}; taskctl's result commands also BatchGetItem, BatchWriteItem, Scan)",
        )
    return Check(name, FAIL, exc.message, exc.hint)


def run(settings: Settings, *, queues: tuple[str, ...] = ("celery",), write_probe: bool = False) -> Outcome:
    """Run every check; exit 1 when any fails (the rows are printed either way)."""
    checks = list(_checks(settings, queues, write_probe))
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    skipped = sum(c.status == SKIPPED for c in checks)
    listing = Listing(model=Check, items=checks)
    if failed:
        msg = f"doctor: {failed} of {len(checks)} checks failed" + (f", {skipped} skipped" if skipped else "")
        return Outcome(listing, ExitCode.FAILED, msg)
    msg = f"doctor: all {len(checks)} checks passed" + (f" ({warned} with warnings)" if warned else "")
    return Outcome(listing, ExitCode.OK, msg)


def _checks(settings: Settings, queues: tuple[str, ...], write_probe: bool) -> Iterator[Check]:
    yield _config_check(settings)
    probes = ("read", "write") if write_probe else ("read",)
    url_check = _url_check("backend-url", settings.backend, settings.sources.get("backend"))
    yield url_check
    has_tables = _has_tables(settings.backend)
    if url_check.status == FAIL:
        yield from skipped((*TABLE_CHECKS, *probes) if has_tables else probes, "backend-url")
    elif has_tables:
        yield from _table_checks(settings, write_probe)
    else:
        yield from _probe_checks(settings, write_probe, dynamodb=False)
    broker_check = _url_check("broker-url", settings.broker, settings.sources.get("broker"))
    yield broker_check
    if broker_check.status == FAIL:
        yield from skipped(("broker", *(f"queue:{q}" for q in queues)), "broker-url")
    else:
        yield from _broker_checks(settings, queues)


def skipped(names: tuple[str, ...], after: str, why: str = "failed") -> Iterator[Check]:
    """Rows for checks that cannot run because the check AFTER did not pass."""
    for name in names:
        yield Check(name, SKIPPED, f"not run: the {after} check {why}")


def _has_tables(url: str | None) -> bool:
    """Whether the backend's store has tables to check (asked of the registry; a malformed URL counts too)."""
    try:
        return bool(url) and scheme_of(url or "") in backends.TABLE_ADMINS
    except TaskctlError:
        return False


# -- configuration ----------------------------------------------------------------------------------------


def _config_check(s: Settings) -> Check:
    where = str(s.config_file) if s.config_file else "no config file"
    env = f", environment {s.env!r}" if s.env else ""
    used = sorted({src for src in s.sources.values() if src.startswith("environment ")})
    variables = f"; variables: {', '.join(v.removeprefix('environment ') for v in used)}" if used else ""
    return Check("config", PASS, f"{where}{env}{variables}")


def _url_check(name: str, url: str | None, source: str | None) -> Check:
    what = "result backend" if name.startswith("backend") else "broker"
    if not url:
        return Check(
            name,
            FAIL,
            f"no {what} configured",
            "pass --backend URL, or set TASKCTL_RESULT_BACKEND or CELERY_RESULT_BACKEND, or use --env NAME",
        )
    try:
        scheme_of(url)
        if name.startswith("backend"):
            backends.table_defaults(url)  # a store with tables parses its URL here: a bad one fails now
    except TaskctlError as exc:
        return Check(name, FAIL, exc.message, exc.hint)
    detail = f"{mask(url)} (from {source or 'unknown'})"
    if source == "built-in default":
        return Check(
            name, WARN, detail, "set --broker, TASKCTL_BROKER_URL or CELERY_BROKER_URL to what your workers use"
        )
    return Check(name, PASS, detail)


# -- result backend ---------------------------------------------------------------------------------------


def _table_checks(settings: Settings, write_probe: bool) -> Iterator[Check]:
    from taskctl import tables

    after_table: tuple[str, ...] = ("table-schema", "table-ttl", "table-items", "read")
    if write_probe:
        after_table += ("write",)
    try:
        t = tables.target(settings)
        admin = tables.admin_for(settings, t)
    except TaskctlError as exc:
        yield Check("table", FAIL, exc.message, exc.hint)
        yield from skipped(after_table, "table")
        return
    try:
        desc = admin.describe_table(t.table)
    except NotFoundError as exc:
        yield Check(
            "table",
            FAIL,
            exc.message,
            f"taskctl table create {t.table} --ttl (Celery creates it itself only if allowed dynamodb:CreateTable)",
        )
        yield from skipped(after_table, "table")
        return
    except TaskctlError as exc:
        yield _fail_from("table", exc, "dynamodb:DescribeTable")
        yield from skipped(after_table, "table")
        return
    try:
        ttl: TtlDescription | None = admin.describe_ttl(t.table)
        ttl_error: TaskctlError | None = None
    except TaskctlError as exc:
        ttl, ttl_error = None, exc
    info = tables.table_info(desc, ttl)
    key_problems = tables.key_schema_problems(desc)
    status = info.status
    capacity = "on-demand" if desc.on_demand else f"{info.read_capacity}/{info.write_capacity}"
    yield Check(
        "table",
        PASS if status == "ACTIVE" else (FAIL if status in tables.UNUSABLE_STATUS else WARN),
        f"{t.table!r} is {status} ({info.billing_mode} {capacity}, {info.item_count} items)",
        None if status == "ACTIVE" else "wait until it is ACTIVE: taskctl table describe",
    )
    if key_problems:
        yield Check(
            "table-schema",
            FAIL,
            " ".join(key_problems),
            "point the backend URL at a table with hash key 'id' (S) only, e.g. one made by 'taskctl table create'",
        )
    else:
        yield Check("table-schema", PASS, "hash key 'id' (S), no range key: as Celery's DynamoDB backend needs")
    yield _ttl_check(t.table, t.ttl_seconds, ttl, ttl_error)
    yield _items_check(admin, t.table, status)
    yield from _probe_checks(settings, write_probe, dynamodb=True)


def _items_check(admin: TableAdmin, table: str, status: str) -> Check:
    """A bounded sample of item sizes: results near DynamoDB's 400 KB item limit are one step from being lost
    (Celery cannot store a larger one). Celery never scans, so a denied Scan is a warning, not a failure."""
    from taskctl import tables

    if status != "ACTIVE":
        return Check("table-items", SKIPPED, f"not run: the table is {status}")
    try:
        sizes = tables.item_sizes(admin, table, tables.DEFAULT_SAMPLE)
    except TaskctlError as exc:
        return Check(
            "table-items",
            WARN,
            f"cannot sample item sizes: {exc.message}",
            "allow dynamodb:Scan to check for results near the 400 KB item limit (Celery itself does not need it)",
        )
    if sizes.sampled == 0:
        return Check("table-items", PASS, "no items yet")
    if (line := sizes.warning()) is not None:
        return Check(
            "table-items",
            WARN,
            line,
            "keep large results out of the result backend (store them elsewhere and return a reference), "
            "or use result_compression (Celery 5.7)",
        )
    return Check(
        "table-items",
        PASS,
        f"none of {sizes.sampled} sampled items near the 400 KB item limit "
        f"(largest {format_size(sizes.largest_bytes or 0)})",
    )


def _ttl_check(table: str, ttl_seconds: int | None, ttl: TtlDescription | None, error: TaskctlError | None) -> Check:
    if error is not None:
        if ttl_seconds is None and _denied(error):
            return Check(
                "table-ttl",
                WARN,
                f"cannot read the TTL setting: {error.message}",
                "Celery needs dynamodb:DescribeTimeToLive only with ttl_seconds in the URL",
            )
        return _fail_from("table-ttl", error, "dynamodb:DescribeTimeToLive")
    assert ttl is not None
    status, attr, on = ttl.status, ttl.attribute, ttl.active
    enable_hint = f"taskctl table ttl {table} --enable"
    if on and attr and attr != "ttl":
        return Check(
            "table-ttl",
            FAIL,
            f"TTL is {status} on attribute {attr!r}, not 'ttl': Celery's expiry values are ignored"
            + (", and Celery fails at start-up trying to change it" if ttl_seconds is not None else ""),
            f"taskctl table ttl {table} --disable, wait until DISABLED, then {enable_hint}",
        )
    if ttl_seconds is None:
        if on:
            return Check(
                "table-ttl",
                WARN,
                f"TTL is {status} on 'ttl', but the URL sets no ttl_seconds: Celery writes no 'ttl', results never expire",
                "add ?ttl_seconds=86400 (one day) to the backend URL",
            )
        return Check(
            "table-ttl",
            WARN,
            "TTL is off and the URL sets no ttl_seconds: results are kept forever",
            f"add ?ttl_seconds=86400 to the backend URL and run: {enable_hint}",
        )
    if ttl_seconds < 0:
        if on:
            return Check(
                "table-ttl",
                WARN,
                f"ttl_seconds={ttl_seconds} asks Celery to switch TTL off, but it is {status}: Celery changes it at start",
                f"taskctl table ttl {table} --disable, or drop ttl_seconds from the URL",
            )
        return Check("table-ttl", PASS, f"TTL is {status}, as ttl_seconds={ttl_seconds} asks")
    if on:
        return Check("table-ttl", PASS, f"TTL {status} on 'ttl'; Celery writes ttl = now + {ttl_seconds}s")
    return Check(
        "table-ttl",
        WARN,
        f"TTL is {status} but ttl_seconds={ttl_seconds}: Celery switches it on at start-up (needs UpdateTimeToLive)",
        enable_hint,
    )


def _probe_checks(settings: Settings, write_probe: bool, *, dynamodb: bool) -> Iterator[Check]:
    key = PROBE_PREFIX + uuid.uuid4().hex
    try:
        store = backends.result_store(settings)
    except TaskctlError as exc:
        yield Check("read", FAIL, exc.message, exc.hint)
        if write_probe:
            yield from skipped(("write",), "read", "could not open the result store")
        return
    try:
        yield _timed(
            "read",
            lambda: store.get_many([key]),
            "read a key that does not exist",
            # taskctl reads in batches; Celery's GetItem is a separate IAM action the hint names
            "dynamodb:BatchGetItem" if dynamodb else None,
        )
        if write_probe:
            body = json.dumps(
                {"status": "SUCCESS", "result": None, "traceback": None, "children": [], "task_id": key}
            ).encode()

            def put_delete() -> None:
                store.put(key, body, ttl_seconds=300)
                store.delete_many([key])

            yield _timed(
                "write",
                put_delete,
                f"wrote and deleted the probe item {key!r}",
                "dynamodb:PutItem and dynamodb:BatchWriteItem" if dynamodb else None,
            )
    finally:
        store.close()


def _timed(name: str, fn: Callable[[], object], what: str, action: str | None) -> Check:
    start = time.monotonic()
    try:
        fn()
    except TaskctlError as exc:
        return _fail_from(name, exc, action)
    return Check(name, PASS, f"{what} ({(time.monotonic() - start) * 1000:.0f} ms)")


# -- broker -----------------------------------------------------------------------------------------------


def _broker_checks(settings: Settings, queues: tuple[str, ...]) -> Iterator[Check]:
    names = tuple(f"queue:{q}" for q in queues)
    try:
        broker = backends.open_broker(settings)
    except TaskctlError as exc:
        yield Check("broker", FAIL, exc.message, exc.hint)
        yield from skipped(names, "broker")
        return
    start = time.monotonic()
    connected = False
    for i, (queue, name) in enumerate(zip(queues, names, strict=True)):
        try:
            counts = broker.stats(queue)
        except UnavailableError as exc:
            if connected:
                yield Check(name, FAIL, exc.message, exc.hint)
                yield from skipped(names[i + 1 :], name, "found the broker unavailable")
            else:
                yield Check("broker", FAIL, exc.message, exc.hint)
                yield from skipped(names[i:], "broker")
            return
        except TaskctlError as exc:
            if not connected:
                connected = True
                yield Check("broker", PASS, f"connected to {broker.masked_url}")
            if isinstance(exc, NotFoundError):
                yield Check(name, WARN, exc.message, "it appears when a worker consuming it starts")
            else:
                yield Check(name, FAIL, exc.message, exc.hint)
            continue
        if not connected:
            connected = True
            ms = (time.monotonic() - start) * 1000
            yield Check("broker", PASS, f"connected to {broker.masked_url} ({ms:.0f} ms)")
        yield _queue_check(name, queue, counts, broker.counts_consumers)


def _queue_check(name: str, queue: str, counts: QueueCounts, counts_consumers: bool) -> Check:
    ready, consumers, certain = counts.messages, counts.consumers, counts.certain
    detail = f"{ready} ready" if certain else f"{ready} ready (empty or missing: this transport cannot tell)"
    if counts_consumers and consumers is not None:
        detail += f", {consumers} consumers"
        if consumers == 0:
            return Check(
                name, WARN, detail + ": no worker consumes it", f"start a worker: celery -A APP worker -Q {queue}"
            )
    return Check(name, PASS, detail)
