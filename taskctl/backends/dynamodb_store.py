"""Celery's DynamoDB result backend as a result store: Celery's exact item layout, batched and concurrent.

Connection string: see :mod:`taskctl.backends.dynamodb` (``dynamodb://[KEY:SECRET@]REGION[:PORT]/TABLE?...``).

Items are ``{id: S "b'<key>'", result: B, timestamp: N, ttl: N}`` (celery-formats §3): the ``id`` carries
Python's bytes repr, which this store adds and strips so callers use plain keys. Reads of many keys are
BatchGetItem (100 keys a request), deletes BatchWriteItem (25), both spread over a thread pool;
UnprocessedKeys/UnprocessedItems are retried with exponential backoff until done (never dropped). Listing is a
parallel segmented Scan filtered on the key prefix by DynamoDB.

Capabilities: TTL (``ttl`` is enforced late by DynamoDB, so an item can be read after it expired), scan.
Errors: everything botocore raises goes through ``translate_errors`` (NotFoundError for a missing table,
UnavailableError for an unreachable endpoint or refused credentials, OperationError otherwise).
"""

from __future__ import annotations

import json
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any, ClassVar

from taskctl.backends.base import ScanPage, Shard, StoredItem, ValueHint
from taskctl.backends.dynamodb import make_client, translate_errors
from taskctl.errors import OperationError, TaskctlError
from taskctl.formats.result import dynamodb_id, from_dynamodb_id
from taskctl.urls import mask, parse_dynamodb

if TYPE_CHECKING:
    pass

BATCH_GET = 100
BATCH_WRITE = 25
#: concurrent requests (botocore's connection pool holds 10)
WORKERS = 8
#: parallel scan segments: one per SEGMENT_ITEMS items or SEGMENT_BYTES of table (whichever gives more),
#: between SCAN_SEGMENTS and MAX_SEGMENTS. Small segments cost little (a request per segment at least) and keep
#: each segment's pages cheap for servers whose Scan pages cost time in proportion to the segment (DynamoDB Local)
SCAN_SEGMENTS = 4
MAX_SEGMENTS = 1024
SEGMENT_ITEMS = 2_000
SEGMENT_BYTES = 4 << 20
#: segments scanned at a time (the others wait their turn): a page in flight each
SCAN_WORKERS = 8
#: attempts per call in botocore's adaptive retry mode (client-side rate limiting once throttled)
ADAPTIVE_ATTEMPTS = 10
#: give up on keys DynamoDB keeps returning unprocessed after this long (throttled far beyond capacity)
UNPROCESSED_DEADLINE = 300.0


def _finite(number: str | None) -> float | None:
    """A stored N attribute as a float; None when absent or out of float range (anyone can write ``1E+125``)."""
    if number is None:
        return None
    try:
        value = float(number)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class DynamoDBResultStore:
    supports_ttl: ClassVar[bool] = True
    supports_scan: ClassVar[bool] = True
    supports_pubsub: ClassVar[bool] = False
    batch_get_size: ClassVar[int] = BATCH_GET

    def __init__(
        self,
        url: str,
        client: Any,
        table: str,
        *,
        ttl_seconds: int | None = None,
        consistent_read: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.client = client
        self.table = table
        self.ttl_seconds = ttl_seconds
        self.consistent_read = consistent_read
        self._sleep = sleep
        self._pool: ThreadPoolExecutor | None = None
        self._filters_values: bool | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        transport_options: Mapping[str, Any] | None = None,
    ) -> DynamoDBResultStore:
        """ENDPOINT_URL and REGION override the URL's; PROFILE picks the credentials (transport options: none)."""
        parsed = parse_dynamodb(url)
        client = make_client(
            url,
            endpoint_url=endpoint_url,
            region=region,
            profile=profile,
            retry_mode="adaptive",
            max_attempts=ADAPTIVE_ATTEMPTS,
        )
        return cls(url, client, parsed.table, ttl_seconds=parsed.ttl_seconds)

    def describe(self) -> str:
        return f"table {self.table!r} at {mask(self.url)}"

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="taskctl-ddb")
        return self._pool

    def _map(self, fn: Callable[[list[str]], Any], chunks: list[list[str]]) -> list[Any]:
        if len(chunks) <= 1:
            return [fn(c) for c in chunks]
        return list(self._executor().map(fn, chunks))

    def _backoff(self, attempt: int) -> None:
        self._sleep(min(2.0, 0.05 * (2**attempt)) * (0.5 + random.random() / 2))

    # -- reads ------------------------------------------------------------------------------------------------
    def _item(self, raw: dict[str, Any]) -> StoredItem:
        value: bytes | None = None
        res = raw.get("result")
        if res is not None:
            if "B" in res:
                value = bytes(res["B"])
            elif "S" in res:
                value = str(res["S"]).encode("utf-8")
        ts = raw.get("timestamp", {}).get("N")
        ttl = raw.get("ttl", {}).get("N")
        cc = raw.get("chord_count", {}).get("N")
        return StoredItem(
            key=from_dynamodb_id(str(raw["id"]["S"])),
            value=value,
            timestamp=_finite(ts),
            expires_at=_finite(ttl),
            chord_count=int(c) if (c := _finite(cc)) is not None and abs(c) < 2**53 else None,
        )

    def _get_chunk(self, keys: list[str]) -> list[StoredItem]:
        request: dict[str, Any] = {
            self.table: {"Keys": [{"id": {"S": dynamodb_id(k)}} for k in keys], "ConsistentRead": self.consistent_read}
        }
        found: list[StoredItem] = []
        attempt = 0
        deadline = time.monotonic() + UNPROCESSED_DEADLINE
        while request:
            resp = self._throttled_call(self.client.batch_get_item, "read results", RequestItems=request)
            found.extend(self._item(i) for i in resp.get("Responses", {}).get(self.table, []))
            request = resp.get("UnprocessedKeys") or {}
            if request:
                if time.monotonic() > deadline:
                    left = len(request.get(self.table, {}).get("Keys", []))
                    raise OperationError(
                        f"DynamoDB left {left} keys unprocessed for {UNPROCESSED_DEADLINE:.0f}s ({self.describe()})",
                        hint="the table is throttled: raise its read capacity or retry later",
                    )
                self._backoff(attempt)
                attempt += 1
        return found

    def get_many(self, keys: Sequence[str]) -> dict[str, StoredItem]:
        return {item.key: item for item in self.iter_many(keys)}

    def iter_many(self, keys: Sequence[str]) -> Iterator[StoredItem]:
        """Items as their batches arrive, so a caller decodes one batch while the next is on the wire."""
        unique = list(dict.fromkeys(keys))
        chunks = [unique[i : i + BATCH_GET] for i in range(0, len(unique), BATCH_GET)]
        if len(chunks) <= 1:
            for c in chunks:
                yield from self._get_chunk(c)
            return
        futures = [self._executor().submit(self._get_chunk, c) for c in chunks]
        try:
            for fut in as_completed(futures):
                yield from fut.result()
        finally:
            for fut in futures:
                fut.cancel()

    # -- writes -----------------------------------------------------------------------------------------------
    def _delete_chunk(self, keys: list[str]) -> int:
        request: dict[str, Any] = {
            self.table: [{"DeleteRequest": {"Key": {"id": {"S": dynamodb_id(k)}}}} for k in keys]
        }
        attempt = 0
        deadline = time.monotonic() + UNPROCESSED_DEADLINE
        while request:
            resp = self._throttled_call(self.client.batch_write_item, "delete results", RequestItems=request)
            request = resp.get("UnprocessedItems") or {}
            if request:
                if time.monotonic() > deadline:
                    left = len(request.get(self.table, []))
                    raise OperationError(
                        f"DynamoDB left {left} deletes unprocessed for {UNPROCESSED_DEADLINE:.0f}s ({self.describe()})",
                        hint="the table is throttled: raise its write capacity or retry later",
                    )
                self._backoff(attempt)
                attempt += 1
        return len(keys)

    def delete_many(self, keys: Sequence[str]) -> int:
        unique = list(dict.fromkeys(keys))
        chunks = [unique[i : i + BATCH_WRITE] for i in range(0, len(unique), BATCH_WRITE)]
        return sum(self._map(self._delete_chunk, chunks))

    def put(self, key: str, value: bytes, *, ttl_seconds: int | None = None) -> None:
        """Write an item as Celery does: id, result (B), timestamp, and ttl when the URL configures one."""
        now = time.time()
        item: dict[str, Any] = {
            "id": {"S": dynamodb_id(key)},
            "result": {"B": value},
            "timestamp": {"N": str(now)},
        }
        ttl = ttl_seconds if ttl_seconds is not None else self.ttl_seconds
        if ttl is not None and ttl >= 0:
            item["ttl"] = {"N": str(int(now + ttl))}
        with translate_errors("store a result", url=self.url, table=self.table):
            self.client.put_item(TableName=self.table, Item=item)

    def publish(self, key: str, value: bytes) -> None:
        """No pub/sub (supports_pubsub is False): nothing to wake."""
        return None

    # -- scan -------------------------------------------------------------------------------------------------
    def scan_segments(self) -> int:
        """One segment per 2,000 items or 4 MiB of table (DescribeTable's approximate counts), at least 4 (four
        requests instead of one cost nothing on a small table) and at most 1,024; SCAN_WORKERS run at a time."""
        try:
            with translate_errors("describe the table", url=self.url, table=self.table):
                table = self.client.describe_table(TableName=self.table)["Table"]
            size = int(table.get("TableSizeBytes") or 0)
            items = int(table.get("ItemCount") or 0)
        except TaskctlError:  # no DescribeTable permission: a listing must still work
            return SCAN_SEGMENTS
        except (TypeError, ValueError):
            return SCAN_SEGMENTS
        wanted = max(math.ceil(size / SEGMENT_BYTES), math.ceil(items / SEGMENT_ITEMS))
        return max(SCAN_SEGMENTS, min(MAX_SEGMENTS, wanted))

    def scan(
        self,
        prefixes: Sequence[str] | None = None,
        *,
        shard: Shard | None = None,
        segments: int | None = None,
        values: ValueHint | None = None,
    ) -> Iterator[StoredItem]:
        """Items whose key starts with one of PREFIXES, as a parallel segmented Scan delivers them."""
        for page in self.scan_pages(prefixes, shard=shard, segments=segments, values=values):
            yield from page.items

    def _scan_params(self, prefixes: Sequence[str] | None, values: ValueHint | None = None) -> dict[str, Any]:
        """Scan arguments: a FilterExpression on the key prefixes and, with VALUES, on the ``result`` bytes (a
        value that is not binary, or absent, is always kept: only the caller can judge it)."""
        params: dict[str, Any] = {"TableName": self.table}
        terms: list[str] = []
        names: dict[str, str] = {}
        attr_values: dict[str, Any] = {}
        if prefixes:
            ps = [f":p{i}" for i in range(len(prefixes))]
            terms.append(" OR ".join(f"begins_with(#id, {n})" for n in ps))
            names["#id"] = "id"
            attr_values.update({n: {"S": dynamodb_id(p)[:-1]} for n, p in zip(ps, prefixes, strict=True)})
        if values is not None and (values.contains or values.larger_than is not None):
            names["#r"] = "result"
            attr_values[":binary"] = {"S": "B"}
        if values is not None and values.larger_than is not None:
            attr_values[":size"] = {"N": str(values.larger_than)}
            terms.append("NOT attribute_type(#r, :binary) OR size(#r) > :size")
        if values is not None and values.contains:
            keep = ["NOT attribute_type(#r, :binary)"]
            for i, needle in enumerate(values.contains):
                attr_values[f":v{i}"] = {"B": needle}
                keep.append(f"contains(#r, :v{i})")
            for i, head in enumerate(values.or_starts_with):
                attr_values[f":h{i}"] = {"B": head}
                keep.append(f"begins_with(#r, :h{i})")
            terms.append(" OR ".join(keep))
        if terms:
            params["FilterExpression"] = " AND ".join(f"({t})" for t in terms) if len(terms) > 1 else terms[0]
            params["ExpressionAttributeNames"] = names
            params["ExpressionAttributeValues"] = attr_values
        return params

    def _value_filters_work(self) -> bool:
        """Whether the server evaluates contains, begins_with and size on binary values as DynamoDB does, checked
        once on the table's first item (two requests). Some look-alikes do not (moto compares them base64
        encoded), and a filter that drops what it should keep would lose items: then values are not filtered."""
        if self._filters_values is None:
            self._filters_values = self._probe_value_filters()
        return self._filters_values

    def _probe_value_filters(self) -> bool:
        try:
            first = self._throttled_call(self.client.scan, "scan results", TableName=self.table, Limit=1)
            items = first.get("Items") or []
            value = items[0].get("result", {}).get("B") if items else None
            if not isinstance(value, bytes | bytearray) or len(value) < 10:
                return False  # nothing to check against: filter nothing
            got = self._throttled_call(
                self.client.scan,
                "scan results",
                TableName=self.table,
                Limit=1,  # the same first item is evaluated, and must pass
                FilterExpression="contains(#r, :c) AND begins_with(#r, :b) AND size(#r) = :n",
                ExpressionAttributeNames={"#r": "result"},
                ExpressionAttributeValues={
                    ":c": {"B": bytes(value[1:9])},  # off the 3-byte grid, so base64-encoded matching fails
                    ":b": {"B": bytes(value[:7])},
                    ":n": {"N": str(len(value))},
                },
            )
        except TaskctlError as exc:
            if exc.code in ("not-found", "unavailable"):
                raise  # the scan itself would say the same
            return False  # e.g. a server that does not know size(): filter nothing
        return [i.get("id") for i in got.get("Items") or []] == [items[0].get("id")]

    def _throttled_call(self, fn: Callable[..., Any], action: str, **kw: Any) -> Any:
        """FN(**KW), throttling answered with backoff (botocore's adaptive retries came first) until the deadline."""
        attempt = 0
        deadline = time.monotonic() + UNPROCESSED_DEADLINE
        while True:
            try:
                with translate_errors(action, url=self.url, table=self.table):
                    return fn(**kw)
            except TaskctlError as exc:
                if exc.code != "throttled" or time.monotonic() > deadline:
                    raise
            self._backoff(attempt)
            attempt += 1

    def scan_pages(
        self,
        prefixes: Sequence[str] | None = None,
        *,
        shard: Shard | None = None,
        segments: int | None = None,
        resume: Mapping[int, str | None] | None = None,
        values: ValueHint | None = None,
    ) -> Iterator[ScanPage]:
        """Pages of a parallel Scan of SEGMENTS segments, SCAN_WORKERS at a time (with SHARD I/N, segments
        I*S .. I*S+S-1 of N*S, so that N runs see every item once); a page's cursor is its LastEvaluatedKey as JSON."""
        local = segments or self.scan_segments()
        total = local * (shard.count if shard else 1)
        first = shard.index * local if shard else 0
        if values is not None and not self._value_filters_work():
            values = None
        params = self._scan_params(prefixes, values)
        resume = resume or {}
        todo = [s for s in range(local) if resume.get(s, "") is not None]
        workers = min(SCAN_WORKERS, len(todo))
        out: queue.Queue[Any] = queue.Queue(maxsize=2 * max(1, workers))
        pending = iter(todo)
        pending_lock = threading.Lock()
        stop = threading.Event()
        done = object()

        def offer(x: Any) -> None:
            while True:
                try:
                    out.put(x, timeout=0.2)
                    return
                except queue.Full:
                    if stop.is_set():
                        return

        def scan_segment(segment: int) -> None:
            cursor = resume.get(segment)
            start: dict[str, Any] | None = json.loads(cursor) if cursor else None
            while not stop.is_set():
                kw = dict(params, Segment=first + segment, TotalSegments=total)
                if start:
                    kw["ExclusiveStartKey"] = start
                resp = self._throttled_call(self.client.scan, "scan results", **kw)
                start = resp.get("LastEvaluatedKey")
                items = tuple(self._item(raw) for raw in resp.get("Items", []))
                offer(ScanPage(segment, items, json.dumps(start) if start else None))
                if not start:
                    break

        def worker() -> None:
            try:
                while not stop.is_set():
                    with pending_lock:
                        segment = next(pending, None)
                    if segment is None:
                        break
                    scan_segment(segment)
            except BaseException as exc:  # handed to the consumer, which raises it
                offer(exc)
            finally:
                offer(done)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
        for t in threads:
            t.start()
        finished = 0
        try:
            while finished < len(threads):
                got = out.get()
                if got is done:
                    finished += 1
                elif isinstance(got, BaseException):
                    raise got
                else:
                    yield got
        finally:
            stop.set()
            while True:  # unblock producers waiting on a full queue
                try:
                    out.get_nowait()
                except queue.Empty:
                    break

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
