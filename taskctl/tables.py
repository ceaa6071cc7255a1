"""Provisioning and inspection of the DynamoDB tables Celery's DynamoDB result backend uses.

Celery's table (celery/backends/dynamodb.py): hash key ``id`` of type S, no range key; items carry ``result``
(B), ``timestamp`` (N) and, when ``ttl_seconds`` is set, ``ttl`` (N) for DynamoDB's Time to Live. Celery only
creates PROVISIONED tables and polls every second until ACTIVE; here waits poll with a short, growing delay
(boto3's ``table_exists`` waiter sleeps 20 s between checks).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from taskctl import events
from taskctl.backends import table_admin, table_defaults
from taskctl.errors import ConflictError, NotFoundError, TaskctlError, UsageError, WaitTimeoutError
from taskctl.models import KeyAttr, TableInfo
from taskctl.units import format_duration, format_size
from taskctl.urls import mask

if TYPE_CHECKING:
    from taskctl.backends.base import TableAdmin, TableDescription, TtlDescription
    from taskctl.config import Settings

#: the key and TTL attribute Celery's DynamoDBBackend uses
CELERY_KEY = "id"
CELERY_KEY_TYPE = "S"
CELERY_TTL_ATTRIBUTE = "ttl"
#: table states in which Celery cannot use a table at all
UNUSABLE_STATUS = {"DELETING", "ARCHIVING", "ARCHIVED", "INACCESSIBLE_ENCRYPTION_CREDENTIALS"}
#: first and longest delay between two status polls, in seconds
POLL_START = 0.1
POLL_MAX = 2.0
#: parallel DescribeTable/DescribeTimeToLive calls in `table list`
LIST_CONCURRENCY = 8

#: replaced in tests to wait without sleeping
sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class Target:
    """Which table, at which backend URL."""

    url: str
    table: str
    read: int
    write: int
    ttl_seconds: int | None


def check_name(table: str | None) -> None:
    """An empty name is a mistake (an unset shell variable), never a request for the default table."""
    if table is not None and not table.strip():
        raise UsageError(
            "the table name must not be empty", hint="name the table (for describe, create and ttl: or leave it out)"
        )


def target(settings: Settings, table: str | None = None) -> Target:
    """TABLE, else the backend URL's table (Celery's default ``celery``). An empty TABLE is a usage error."""
    check_name(table)
    url = settings.backend or "dynamodb://"
    defaults = table_defaults(url)
    if defaults is None:
        table_admin(settings, url)  # raises the registry's usage error naming the scheme
        raise UsageError(f"table commands need a backend with tables (dynamodb://), not {mask(url)}")
    return Target(url, table or defaults.table, defaults.read, defaults.write, defaults.ttl_seconds)


def admin_for(settings: Settings, t: Target) -> TableAdmin:
    return table_admin(settings, t.url)


# -- the model ------------------------------------------------------------------------------------------------


def problems_of(desc: TableDescription, ttl: TtlDescription | None) -> list[str]:
    """Sentences saying why Celery cannot use the table as it is; empty when it can."""
    out = key_schema_problems(desc)
    if desc.status in UNUSABLE_STATUS:
        out.append(f"The table is {desc.status}, so Celery cannot read or write it.")
    if ttl is not None and ttl.active and ttl.attribute and ttl.attribute != CELERY_TTL_ATTRIBUTE:
        out.append(
            f"TTL is {ttl.status.lower()} on attribute {ttl.attribute!r}, not {CELERY_TTL_ATTRIBUTE!r}: Celery with "
            f"ttl_seconds set fails at start-up (DynamoDB refuses its TTL change), and its "
            f"{CELERY_TTL_ATTRIBUTE!r} values never expire items."
        )
    return out


def key_schema_problems(desc: TableDescription) -> list[str]:
    """How the key schema differs from Celery's (hash key ``id`` of type S, no range key)."""
    out: list[str] = []
    hash_key = desc.key("HASH")
    key_type = desc.attribute_types.get(CELERY_KEY)
    if hash_key != CELERY_KEY:
        out.append(f"The hash key is {hash_key!r}, but Celery reads and writes items by a hash key {CELERY_KEY!r}.")
    elif key_type != CELERY_KEY_TYPE:
        out.append(
            f"The hash key {CELERY_KEY!r} has type {key_type}, but Celery stores it as a string "
            f"(type {CELERY_KEY_TYPE})."
        )
    range_key = desc.key("RANGE")
    if range_key is not None:
        out.append(
            f"The table has a range key {range_key!r}; Celery's items have only the hash key {CELERY_KEY!r}, "
            "so its reads and writes fail."
        )
    return out


def table_info(desc: TableDescription, ttl: TtlDescription | None, **kw: Any) -> TableInfo:
    """TableInfo, the model `table` commands return, from the table's and its TTL's descriptions."""
    keys = tuple(KeyAttr(name=k.name, type=desc.attribute_types.get(k.name, "?"), key=k.role) for k in desc.key_schema)
    problems = tuple(problems_of(desc, ttl))
    return TableInfo(
        table=desc.name,
        status=desc.status,
        billing_mode=desc.billing_mode,
        read_capacity=desc.read_capacity,
        write_capacity=desc.write_capacity,
        key_schema=keys,
        celery_compatible=not problems,
        problems=problems,
        item_count=desc.item_count,
        size_bytes=desc.size_bytes,
        ttl_status=ttl.status if ttl is not None else None,
        ttl_attribute=ttl.attribute if ttl is not None else None,
        **kw,
    )


def _info(admin: TableAdmin, table: str, **kw: Any) -> TableInfo:
    return table_info(admin.describe_table(table), admin.describe_ttl(table), **kw)


# -- waiting ----------------------------------------------------------------------------------------------


def wait_until(check: Callable[[], tuple[bool, str]], *, what: str, timeout: float) -> str:
    """Poll CHECK (done, state) with a short growing delay until done; WaitTimeoutError (124) after TIMEOUT."""
    deadline = time.monotonic() + timeout
    delay = POLL_START
    progress = events.progress(f"waiting for {what}", None)
    with progress as bar:
        while True:
            done, state = check()
            if done:
                return state
            bar.update(description=f"waiting for {what} (now {state})")
            if time.monotonic() + delay > deadline:
                raise WaitTimeoutError(
                    f"gave up waiting for {what}: still {state} after {format_duration(timeout)}",
                    hint="check again later with 'taskctl table describe', or pass a longer --timeout",
                )
            sleep(delay)
            delay = min(delay * 1.5, POLL_MAX)


def _wait_active(admin: TableAdmin, table: str, timeout: float) -> None:
    def check() -> tuple[bool, str]:
        status = admin.describe_table(table).status
        if status in UNUSABLE_STATUS:
            raise ConflictError(f"table {table!r} became {status} while waiting for it to become ACTIVE")
        return status == "ACTIVE", status

    wait_until(check, what=f"table {table!r} to become ACTIVE", timeout=timeout)


# -- operations -------------------------------------------------------------------------------------------


#: DynamoDB's largest item: Celery cannot store a result whose item would be larger (ValidationException)
ITEM_LIMIT = 400 * 1024
#: items from this size on are flagged: a result that grows a little more is lost
NEAR_ITEM_LIMIT = 300 * 1024
#: items `table describe` reads to find large ones (a few requests, whatever the table's size)
DEFAULT_SAMPLE = 500


@dataclass(frozen=True)
class ItemSizes:
    """A bounded sample of a table's item sizes."""

    sampled: int
    near_limit: int
    largest_bytes: int | None
    largest_key: str | None

    def warning(self) -> str | None:
        """One line for an operator when sampled items are near the limit, else None."""
        if not self.near_limit:
            return None
        return (
            f"{self.near_limit} of {self.sampled} sampled items are at least {format_size(NEAR_ITEM_LIMIT)} "
            f"(largest {format_size(self.largest_bytes or 0)}, {self.largest_key}): DynamoDB refuses items over "
            f"{format_size(ITEM_LIMIT)}, so Celery cannot store a result that grows past it"
        )


def item_sizes(admin: TableAdmin, table: str, sample: int) -> ItemSizes:
    """Up to SAMPLE items read (a bounded scan), how many are near the item limit, and the largest."""
    n = near = 0
    largest: tuple[int, str] | None = None
    for key, size in admin.sample_item_sizes(table, sample):
        n += 1
        near += size >= NEAR_ITEM_LIMIT
        if largest is None or size > largest[0]:
            largest = (size, key)
    return ItemSizes(n, near, largest[0] if largest else None, largest[1] if largest else None)


def describe(settings: Settings, table: str | None = None, *, sample: int = DEFAULT_SAMPLE) -> TableInfo:
    """The table, its TTL and, with SAMPLE > 0, the sizes of up to SAMPLE of its items (a sample that cannot be
    read is a warning: the description stands without it)."""
    if sample < 0:
        raise UsageError("--sample must be 0 or more")
    t = target(settings, table)
    admin = admin_for(settings, t)
    info = _info(admin, t.table)
    if sample == 0 or info.status != "ACTIVE":
        return info
    try:
        sizes = item_sizes(admin, t.table, sample)
    except TaskctlError as exc:
        events.warn(f"cannot sample item sizes: {exc.message}")
        return info
    if (line := sizes.warning()) is not None:
        events.warn(line)
    return replace(
        info,
        sampled_items=sizes.sampled,
        near_limit_items=sizes.near_limit,
        largest_item_bytes=sizes.largest_bytes,
        largest_item_key=sizes.largest_key,
    )


def list_tables(settings: Settings) -> Iterator[TableInfo]:
    """Every table at the endpoint, described concurrently, in ListTables order."""
    t = target(settings)
    admin = admin_for(settings, t)
    pages = admin.list_tables()
    # the first page now: an unreachable endpoint fails before any output starts
    first = list(itertools.islice(pages, 1))
    names = itertools.chain(first, pages)
    return _describe_all(admin, names)


def _describe_all(admin: TableAdmin, names: Iterator[str]) -> Iterator[TableInfo]:
    from concurrent.futures import ThreadPoolExecutor

    def one(name: str) -> TableInfo | None:
        try:
            return _info(admin, name)
        except NotFoundError:  # deleted between ListTables and DescribeTable
            return None

    with ThreadPoolExecutor(max_workers=LIST_CONCURRENCY) as pool:
        while True:
            batch = [n for _, n in zip(range(LIST_CONCURRENCY * 4), names, strict=False)]
            if not batch:
                return
            for info in pool.map(one, batch):
                if info is not None:
                    yield info


def create(
    settings: Settings,
    table: str | None = None,
    *,
    read: int | None = None,
    write: int | None = None,
    on_demand: bool = False,
    ttl: bool | None = None,
    wait: bool = True,
    timeout: float = 300.0,
    dry_run: bool = False,
) -> TableInfo:
    """Create Celery's table unless it exists (idempotent); optionally switch TTL on for attribute ``ttl``.

    ``ttl=None`` follows the URL the way Celery does at start-up: ``ttl_seconds >= 0`` enables TTL.
    """
    t = target(settings, table)
    if on_demand and (read is not None or write is not None):
        raise UsageError("--on-demand and --read/--write exclude each other", hint="on-demand tables have no capacity")
    read = t.read if read is None else read
    write = t.write if write is None else write
    if read < 1 or write < 1:
        raise UsageError(f"--read and --write must be at least 1 (got {read}/{write})")
    want_ttl = ttl if ttl is not None else (t.ttl_seconds is not None and t.ttl_seconds >= 0)
    admin = admin_for(settings, t)
    if dry_run:
        return _plan_create(admin, t.table, read, write, on_demand, want_ttl)
    created = admin.create_table(t.table, read=read, write=write, on_demand=on_demand)
    desc = admin.describe_table(t.table)
    if not created:
        _check_existing(desc, t.table, read, write, on_demand)
    if desc.status != "ACTIVE" and (wait or want_ttl):
        # TTL can only be changed on an ACTIVE table, so --ttl waits even with --no-wait
        _wait_active(admin, t.table, timeout)
    if want_ttl:
        _apply_ttl(admin, t.table, enable=True, attribute=CELERY_TTL_ATTRIBUTE)
    return _info(admin, t.table, created=created)


def _check_existing(desc: TableDescription, table: str, read: int, write: int, on_demand: bool) -> None:
    diff = key_schema_problems(desc)
    if diff:
        raise ConflictError(
            f"table {table!r} exists with a key schema Celery cannot use: {' '.join(diff)}",
            hint="use another table name, or delete this one if nothing needs it ('taskctl table delete')",
            code="schema",
        )
    if desc.status in UNUSABLE_STATUS:
        raise ConflictError(
            f"table {table!r} exists but is {desc.status}", hint="wait until it is gone, then create it"
        )
    if on_demand and not desc.on_demand:
        events.warn(f"table {table!r} already exists with PROVISIONED capacity; left unchanged")
    elif not on_demand and desc.on_demand:
        events.warn(f"table {table!r} already exists as on-demand (PAY_PER_REQUEST); left unchanged")
    elif not on_demand:
        have = (desc.read_capacity, desc.write_capacity)
        if have != (read, write):
            events.warn(f"table {table!r} already exists with capacity {have[0]}/{have[1]}; left unchanged")


def _plan_create(admin: TableAdmin, table: str, read: int, write: int, on_demand: bool, want_ttl: bool) -> TableInfo:
    try:
        desc = admin.describe_table(table)
    except NotFoundError:
        return TableInfo(
            table=table,
            status="MISSING",
            billing_mode="PAY_PER_REQUEST" if on_demand else "PROVISIONED",
            read_capacity=None if on_demand else read,
            write_capacity=None if on_demand else write,
            key_schema=(KeyAttr(name=CELERY_KEY, type=CELERY_KEY_TYPE, key="HASH"),),
            celery_compatible=True,
            problems=(),
            item_count=None,
            size_bytes=None,
            ttl_status="ENABLED" if want_ttl else "DISABLED",
            ttl_attribute=CELERY_TTL_ATTRIBUTE if want_ttl else None,
            created=True,
            dry_run=True,
        )
    _check_existing(desc, table, read, write, on_demand)
    ttl = admin.describe_ttl(table)
    if want_ttl:
        plan_ttl(table, ttl, enable=True, attribute=CELERY_TTL_ATTRIBUTE)  # raises when it would be refused
    return table_info(desc, ttl, created=False, dry_run=True)


# -- TTL ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TTLPlan:
    """What `table ttl` does in a given state: nothing (with why), or one UpdateTimeToLive call."""

    update: bool
    enabled: bool
    attribute: str
    reason: str


def plan_ttl(table: str, ttl: TtlDescription, *, enable: bool, attribute: str) -> TTLPlan:
    """The TTL state machine of Celery's ``_set_table_ttl``, refusing up front what DynamoDB would refuse.

    The wanted state already in force or in progress is no change. TTL active on another attribute is refused
    here rather than sent: DynamoDB refuses it, but moto would silently switch the attribute.
    """
    status, current = ttl.status, ttl.attribute
    if enable:
        if status in ("ENABLED", "ENABLING"):
            if current == attribute:
                return TTLPlan(False, True, attribute, f"TTL is already {status.lower()} on {attribute!r}")
            raise ConflictError(
                f"cannot enable TTL on {attribute!r} for table {table!r}: TimeToLive is active on a different "
                f"AttributeName: current AttributeName is {current!r} ({status})",
                hint=f"disable it first ('taskctl table ttl {table} --disable'), wait until DISABLED "
                "(up to an hour on AWS), then enable it again",
                code="ttl-refused",
            )
        # DISABLED: enable. DISABLING: DynamoDB most likely refuses ("modified multiple times"); its reason is shown
        return TTLPlan(True, True, attribute, f"TTL is {status.lower()}")
    if status in ("DISABLED", "DISABLING"):
        return TTLPlan(False, False, current or attribute, f"TTL is already {status.lower()}")
    # ENABLED: disable the attribute in force. ENABLING: DynamoDB most likely refuses; its reason is shown
    return TTLPlan(True, False, current or attribute, f"TTL is {status.lower()}")


def _apply_ttl(admin: TableAdmin, table: str, *, enable: bool, attribute: str) -> bool:
    plan = plan_ttl(table, admin.describe_ttl(table), enable=enable, attribute=attribute)
    if not plan.update:
        events.note(plan.reason)
        return False
    return admin.update_ttl(table, enabled=plan.enabled, attribute=plan.attribute)


def set_ttl(
    settings: Settings,
    table: str | None = None,
    *,
    enable: bool | None = None,
    attribute: str = CELERY_TTL_ATTRIBUTE,
    wait: bool = False,
    timeout: float = 3600.0,
    dry_run: bool = False,
) -> TableInfo:
    """Show (enable=None), enable or disable TTL; ``changed`` says whether an update was sent."""
    t = target(settings, table)
    if not attribute.strip():
        raise UsageError("--attribute must not be empty")
    admin = admin_for(settings, t)
    desc = admin.describe_table(t.table)  # NotFoundError (exit 3) before any TTL call
    if enable is None:
        return table_info(desc, admin.describe_ttl(t.table), changed=False)
    if dry_run:
        ttl = admin.describe_ttl(t.table)
        plan = plan_ttl(t.table, ttl, enable=enable, attribute=attribute)
        return table_info(desc, ttl, changed=plan.update, dry_run=True)
    changed = _apply_ttl(admin, t.table, enable=enable, attribute=attribute)
    if wait:
        goal = "ENABLED" if enable else "DISABLED"

        def check() -> tuple[bool, str]:
            status = admin.describe_ttl(t.table).status
            return status == goal, status

        wait_until(check, what=f"TTL on table {t.table!r} to become {goal}", timeout=timeout)
    return _info(admin, t.table, changed=changed)


# -- delete -------------------------------------------------------------------------------------------------


def delete(
    settings: Settings,
    table: str,
    *,
    wait: bool = True,
    timeout: float = 300.0,
    dry_run: bool = False,
) -> TableInfo:
    """Delete TABLE (the caller confirms); waits until DynamoDB no longer lists it unless ``wait`` is False."""
    t = target(settings, table)
    admin = admin_for(settings, t)
    before = _info(admin, t.table)
    if dry_run:
        return replace(before, dry_run=True, extra={"deleted": False})
    admin.delete_table(t.table)
    status = "DELETING"
    if wait:

        def check() -> tuple[bool, str]:
            try:
                return False, admin.describe_table(t.table).status
            except NotFoundError:
                return True, "DELETED"

        status = wait_until(check, what=f"table {t.table!r} to be deleted", timeout=timeout)
    return replace(before, status=status, extra={"deleted": True})
