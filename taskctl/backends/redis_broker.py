"""Redis as a first-class broker: kombu's layout read and written directly, never a message lost to a kill.

kombu's consumer pops a message (BRPOP) and records it in ``unacked`` in a second step; a kill between the two
loses it. Here a message never leaves Redis until it is safe: :class:`RedisConsumer` moves up to a few hundred
messages at a time, in one server-side script, from the queue's lists into an in-flight list of its own
(``taskctl.inflight.<queue>.<token>``, with a lease key refreshed while it runs); ``ack_upto`` trims what the
caller made durable; on close the rest goes back to the consuming end. A list whose owner died (lease expired,
or its process gone on this host) is put back at the consuming end of its queue by the next consumer of that
queue and by ``queue restore``.

Also: ``peek`` by LRANGE in the order workers receive (nothing popped), ``iter_queues`` from kombu's bindings
(no management API), ``held``/``restore_held`` over kombu's ``unacked`` hash, restored as kombu does (RPUSH at the
consuming end, marked redelivered) but in one script that first checks the entry is still there, so a restore
racing a worker's own restore or ack neither loses nor doubles it. Publishing stays kombu's (LPUSH, synchronous:
published is stored). Needs Redis 6.2 or later (RPOP with a count, BLMOVE). Key layout: taskctl.backends.redis_layout.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from taskctl.backends.base import Delivery, HeldMessage
from taskctl.backends.kombu_broker import KombuBroker
from taskctl.backends.kombu_consume import close_channel
from taskctl.backends.redis_layout import (
    ACK,
    ENVELOPE,
    FETCH,
    RECOVER,
    RESTORE,
    SEP,
    Layout,
    loads,
    lookup,
    message_priority,
    parse_member,
    payload_to_raw,
    redelivered_payload,
    to_raw,
)
from taskctl.errors import NotFoundError, OperationError, UnavailableError, UsageError
from taskctl.formats.message import RawMessage

if TYPE_CHECKING:
    from taskctl.models import BrokerQueue

#: an in-flight list's lease: refreshed every LEASE_REFRESH s by a thread while its consumer is open
LEASE_MS = 30_000
LEASE_REFRESH = 5.0
#: messages moved into the in-flight list per script call
FETCH_MAX = 500
#: the longest single wait on the server for a message (BLMOVE), so deadlines and Ctrl-C are kept
WAIT_MAX = 0.5


def client_name(purpose: str) -> str:
    """CLIENT SETNAME allows no spaces: 'taskctl-drain-celery' (operators find taskctl's connections by it)."""
    return "taskctl-" + "".join(c if c.isalnum() or c in "._:-" else "-" for c in purpose)[:100]


def _owner_gone(lease: bytes | None) -> bool:
    """A lease 'TIME HOST PID' whose process is gone on this host (a killed drain): no need to wait it out."""
    if lease is None:
        return True
    parts = lease.decode("ascii", "replace").split()
    if len(parts) != 3 or parts[1] != socket.gethostname():
        return False
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError, OverflowError):
        return False
    return False


def _lease_since(lease: bytes | None) -> float | None:
    try:
        return float(lease.split()[0]) if lease else None
    except (ValueError, IndexError):
        return None


def watched_pool(connection_class: Any, kwargs: dict[str, Any]) -> Any:
    """A redis-py pool that notes when a connection had to be made again.

    redis-py reconnects without a word when it finds a pooled connection closed by the server between two
    commands; a consumer must not carry on as if nothing happened when its connection was killed (exit 5)."""
    import redis

    class WatchedPool(redis.ConnectionPool):
        def __init__(self) -> None:
            super().__init__(connection_class=connection_class, **kwargs)
            self.dropped = False
            self._seen: set[int] = set()

        def make_connection(self) -> Any:
            conn = super().make_connection()
            conn.register_connect_callback(self._on_connect)  # type: ignore[no-untyped-call]
            return conn

        def _on_connect(self, conn: Any) -> None:
            if id(conn) in self._seen:
                self.dropped = True
            self._seen.add(id(conn))

    return WatchedPool()


def check_connection(r: Any, what: str) -> None:
    """UnavailableError when R's connection was dropped by the server (and silently made again) since it opened."""
    if getattr(r.connection_pool, "dropped", False):
        raise UnavailableError(
            f"{what}: the Redis server closed taskctl's connection",
            hint="messages not yet safe went back to the queue; run the command again to continue",
        )


class RedisBroker(KombuBroker):
    """kombu's Redis transport, with atomic moves for every take and the bindings and unacked hash as data."""

    #: queues are listed from kombu's bindings
    lists_queues = True
    #: kombu's unacked hash can be read and put back
    holds_unacked = True

    def __init__(self, url: str, transport_options: dict[str, Any] | None = None) -> None:
        super().__init__(url, transport_options)
        self.scheme = "redis"  # rediss://, sentinel://
        self.acks, self.missing_is_empty, self.returns_in_place = True, True, False
        try:
            self.layout = Layout.from_options(self.transport_options)
        except (TypeError, ValueError) as exc:
            raise UsageError(
                f"bad Redis transport option: {exc}",
                hint="priority_steps is a list of integers, visibility_timeout a number of seconds",
            ) from None
        self.visibility_timeout = self.layout.visibility_timeout

    @classmethod
    def from_url(cls, url: str, *, transport_options: dict[str, Any] | None = None) -> RedisBroker:
        return cls(url, transport_options)

    # -- connections --------------------------------------------------------------------------------------------

    @contextmanager
    def client(self, purpose: str) -> Iterator[Any]:
        """A redis-py client on a connection of its own named after PURPOSE, with kombu's connection settings
        (URL, TLS, timeouts) and no silent retry: a dropped connection is an error, never a replayed command."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        with self.connection(purpose) as conn:
            ch = conn.channel()
            pool: Any = None
            try:
                with self.op(f"connect for {purpose}"):
                    base = ch.pool
                    if type(base) in (redis.ConnectionPool, redis.BlockingConnectionPool):
                        kwargs = dict(base.connection_kwargs)
                        kwargs.update(
                            client_name=client_name(purpose),
                            retry=Retry(NoBackoff(), 0),
                            retry_on_timeout=False,
                            retry_on_error=[],
                        )
                        pool = watched_pool(base.connection_class, kwargs)
                        client = redis.Redis(connection_pool=pool)
                    else:  # sentinel: its own pool finds the master
                        client = redis.Redis(connection_pool=base)
                    client.ping()
                yield client
            finally:
                if pool is not None:
                    try:
                        pool.disconnect()
                    except Exception:
                        pass
                close_channel(ch)

    # -- looking ------------------------------------------------------------------------------------------------

    def peek(self, queue: str, limit: int) -> list[Delivery]:
        """Up to LIMIT messages by LRANGE, in the order workers receive them: nothing popped or moved."""
        out: list[Delivery] = []
        with self.client(f"peek {queue}") as r, self.op(f"peek {queue!r}"):
            for key in self.layout.queue_keys(queue):
                if len(out) >= limit:
                    break
                items = r.lrange(key, -(limit - len(out)), -1)
                for item in reversed(items):
                    out.append(Delivery(to_raw(item)[0], None))
        return out

    def _bindings(self, r: Any) -> dict[str, list[tuple[str, str, str]]]:
        """exchange -> its binding rows (routing key, pattern, queue); a key of another type is skipped."""
        head = len(self.layout.binding_key(""))
        table: dict[str, list[tuple[str, str, str]]] = {}
        for key in r.scan_iter(match=self.layout.binding_match, count=500):
            name = key.decode("utf-8", "replace")[head:]
            try:
                members = r.smembers(key)
            except Exception as exc:
                if type(exc).__name__ == "ResponseError":  # WRONGTYPE: not kombu's
                    continue
                raise
            table[name] = [row for m in members if (row := parse_member(m)) is not None]
        return table

    def iter_queues(self) -> Iterator[BrokerQueue]:
        """Every queue bound in kombu's bindings: ready (all priority lists), unacked and bound exchanges."""
        from taskctl.models import BrokerQueue

        with self.client("list queues") as r, self.op("list queues"):
            table = self._bindings(r)
            exchanges: dict[str, set[str]] = {}
            for exchange, rows in table.items():
                for _rk, _pattern, q in rows:
                    if q:
                        exchanges.setdefault(q, set()).add(exchange)
            unacked: dict[str, int] = {}
            for item in self._unacked(r, None, table):
                for q in item.queues:
                    unacked[q] = unacked.get(q, 0) + 1
            names = sorted(set(exchanges) | set(unacked))
            vhost = self.vhost.strip("/") or "0"
            for i in range(0, len(names), 200):
                chunk = names[i : i + 200]
                pipe = r.pipeline(transaction=False)
                for q in chunk:
                    for key in self.layout.queue_keys(q):
                        pipe.llen(key)
                sizes = pipe.execute(raise_on_error=False)
                n = len(self.layout.steps)
                for j, q in enumerate(chunk):
                    ready = sum(s for s in sizes[j * n : (j + 1) * n] if isinstance(s, int))
                    held = unacked.get(q, 0)
                    yield BrokerQueue(
                        queue=q,
                        vhost=vhost,
                        messages=ready + held,
                        ready=ready,
                        unacked=held,
                        consumers=None,
                        idle_since=None,
                        idle_seconds=None,
                        type="redis",
                        durable=True,
                        auto_delete=False,
                        exclusive=False,
                        expires=None,
                        exchanges=tuple(sorted(exchanges.get(q, ()))),
                    )

    # -- unacked: kombu's hash and taskctl's in-flight lists -----------------------------------------------------

    def held(self, queue: str | None = None) -> Iterator[HeldMessage]:
        """What workers hold without an ack (kombu's unacked hash), then taskctl's in-flight lists; QUEUE: only its."""
        with self.client("unacked") as r, self.op("read unacked messages"):
            table = self._bindings(r)
            yield from self._unacked(r, queue, table)
            yield from self._inflight(r, queue)

    def _unacked(
        self, r: Any, queue: str | None, table: dict[str, list[tuple[str, str, str]]]
    ) -> Iterator[HeldMessage]:
        lay = self.layout
        now = time.time()
        batch: list[tuple[bytes, bytes]] = []

        def flush() -> Iterator[HeldMessage]:
            pipe = r.pipeline(transaction=False)
            for tag, _ in batch:
                pipe.zscore(lay.key(lay.unacked_index), tag)
            scores = pipe.execute(raise_on_error=False)
            for (tag, value), score in zip(batch, scores, strict=True):
                item = self._held_item(tag, value, score if isinstance(score, float) else None, now, table)
                if queue is None or queue in item.queues:
                    yield item
            batch.clear()

        for tag, value in r.hscan_iter(lay.key(lay.unacked), count=500):
            batch.append((tag, value))
            if len(batch) >= 500:
                yield from flush()
        if batch:
            yield from flush()

    def _held_item(
        self, tag: bytes, value: bytes, since: float | None, now: float, table: dict[str, list[tuple[str, str, str]]]
    ) -> HeldMessage:
        tag_s = tag.decode("utf-8", "replace")
        overdue = since is not None and now - since > self.visibility_timeout
        entry = loads(value)
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], dict)):
            return HeldMessage("unacked", tag_s, (), None, since, overdue, problem="unreadable entry", stored=value)
        payload, ex, rk = entry
        ex, rk = str(ex or ""), str(rk or "")
        raw, problem = payload_to_raw(payload)
        queues = tuple(lookup(ex, rk, table.get(ex, [])))
        if not queues:
            problem = problem or f"nothing bound to exchange {ex!r} with routing key {rk!r}"
        return HeldMessage("unacked", tag_s, queues, raw, since, overdue, ex, rk, 1, problem, value)

    def _inflight(self, r: Any, queue: str | None) -> Iterator[HeldMessage]:
        lay = self.layout
        for key_b in sorted(r.smembers(lay.inflight_set)):
            key = key_b.decode("utf-8", "replace")
            parsed = lay.parse_inflight(key)
            if parsed is None or (queue is not None and parsed[0] != queue):
                continue
            q, token = parsed
            pipe = r.pipeline(transaction=False)
            pipe.llen(key).lindex(key, -1).get(lay.lease_key(q, token))
            n, first, lease = pipe.execute()
            raw = to_raw(first)[0] if first is not None else None
            yield HeldMessage(
                "inflight",
                key,
                (q,),
                raw,
                _lease_since(lease),
                _owner_gone(lease),
                "",
                q,
                int(n or 0),
                stored=lease or b"",
            )

    def restore_held(self, items: Iterable[HeldMessage]) -> Iterator[tuple[HeldMessage, str]]:
        """Put each item back on its queue(s) at the consuming end as kombu's restore does, in one step that checks
        it is still there, on one connection: (item, restored | gone (acked or restored meanwhile) | no queue bound
        | unreadable | in use)."""
        with self.client("restore") as r:
            for item in items:
                with self.op(f"restore {item.tag!r}"):
                    action = self._restore(r, item)
                yield item, action

    def _restore(self, r: Any, item: HeldMessage) -> str:
        lay = self.layout
        if item.kind == "inflight":
            parsed = lay.parse_inflight(item.tag)
            if parsed is None:
                return "unreadable"
            return self._recover(r, *parsed, force=False)
        entry = loads(item.stored)
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], dict)):
            return "unreadable"
        if not item.queues:
            return "no queue bound"
        payload = entry[0]
        pri = message_priority(payload)
        keys = [lay.key(lay.unacked), lay.key(lay.unacked_index), *(lay.queue_key(q, pri) for q in item.queues)]
        done = r.eval(RESTORE, len(keys), *keys, item.tag, item.stored, redelivered_payload(payload))
        return "restored" if done == 1 else "gone"

    def _recover(self, r: Any, queue: str, token: str, *, force: bool) -> str:
        """Put in-flight list (QUEUE, TOKEN) back at the consuming end; unless FORCE only when its owner is gone."""
        lay = self.layout
        lease_key = lay.lease_key(queue, token)
        if not force and not _owner_gone(r.get(lease_key)):
            return "in use"
        keys = [lay.inflight_key(queue, token), lay.inflight_set, lease_key]
        steps = ",".join(str(s) for s in lay.steps)
        # the owner is gone: its lease may still run for a while, so the script is told not to wait for it
        n = r.eval(RECOVER, len(keys), *keys, lay.prefix + queue, SEP, steps, "force")
        return "in use" if n == -1 else "restored"

    def recover_orphans(self, r: Any, queue: str) -> int:
        """Put back the in-flight lists of QUEUE whose owner is gone; how many lists."""
        n = 0
        for key_b in r.smembers(self.layout.inflight_set):
            parsed = self.layout.parse_inflight(key_b.decode("utf-8", "replace"))
            if parsed is not None and parsed[0] == queue and self._recover(r, *parsed, force=False) == "restored":
                n += 1
        return n

    # -- taking -------------------------------------------------------------------------------------------------

    @contextmanager
    def consume(  # type: ignore[override]
        self, queue: str, *, prefetch: int = 1000, purpose: str = "drain"
    ) -> Iterator[RedisConsumer]:
        """Atomic moves into an in-flight list of this run; orphaned lists of QUEUE go back first."""
        with self.client(f"{purpose} {queue}") as r:
            with self.op(f"recover in-flight messages of {queue!r}"):
                self.recover_orphans(r, queue)
            consumer = RedisConsumer(self, r, queue, prefetch)
            try:
                yield consumer
            finally:
                consumer.close()

    @contextmanager
    def publisher(self, *, window: int = 1000, purpose: str = "publish") -> Iterator[RedisPublisher]:  # type: ignore[override]
        """LPUSH as kombu publishes, pipelined: ``flush`` returns once Redis stored every message (its confirm)."""
        with self.client(purpose) as r:
            pub = RedisPublisher(self, r, window)
            try:
                yield pub
            finally:
                pub.close()

    @contextmanager
    def getter(self, queue: str, purpose: str = "get") -> Iterator[RedisGetter]:  # type: ignore[override]
        """One message at a time (never waits), through the same in-flight list as consume."""
        with self.consume(queue, prefetch=1_000_000, purpose=purpose) as consumer:
            yield RedisGetter(consumer)


class RedisConsumer:
    """Deliveries moved atomically into this run's in-flight list; ``ack_upto`` trims it, close puts the rest back."""

    def __init__(self, broker: RedisBroker, r: Any, queue: str, prefetch: int) -> None:
        self.broker, self.r, self.queue, self.prefetch = broker, r, queue, prefetch
        lay = broker.layout
        self.token = uuid.uuid4().hex[:16]
        self.inflight = lay.inflight_key(queue, self.token)
        self.lease = lay.lease_key(queue, self.token)
        self.lease_value = f"{time.time():.3f} {socket.gethostname()} {os.getpid()}"
        self._keys = [self.inflight, lay.inflight_set, self.lease, *lay.queue_keys(queue)]
        self._base = lay.queue_key(queue)
        self.pending: deque[Delivery] = deque()
        #: (sequence, stored bytes) of every message moved in and not acked, oldest first (the list's right end)
        self._unacked: deque[tuple[int, bytes]] = deque()
        self._seq = 0
        with broker.op(f"consume {queue!r}"):
            self._fetch_script = r.register_script(FETCH)
            self._ack_script = r.register_script(ACK)
            pipe = r.pipeline(transaction=True)
            pipe.set(self.lease, self.lease_value, px=LEASE_MS).sadd(lay.inflight_set, self.inflight)
            pipe.execute()
        self._stop = threading.Event()
        self._keeper = threading.Thread(target=self._keep_lease, name=f"lease {self.inflight}", daemon=True)
        self._keeper.start()

    def _keep_lease(self) -> None:
        """The lease lasts while this process does (a drain blocked on a slow pipe keeps its messages); a killed
        process stops refreshing it, and on this host its list is put back at once (its pid is gone)."""
        while not self._stop.wait(LEASE_REFRESH):
            try:
                self.r.set(self.lease, self.lease_value, px=LEASE_MS)
            except Exception:
                pass  # the consuming thread sees a broken connection itself

    def _take(self, items: list[bytes]) -> Delivery:
        for item in items:
            self._seq += 1
            self._unacked.append((self._seq, item))
            self.pending.append(Delivery(to_raw(item)[0], self._seq))
        return self.pending.popleft()

    def next(self, timeout: float) -> Delivery | None:
        """The next message, or None after TIMEOUT s with none; each is in the in-flight list before it is seen."""
        if self.pending:
            return self.pending.popleft()
        deadline = time.monotonic() + timeout
        with self.broker.op(f"consume {self.queue!r}"):
            check_connection(self.r, f"consume {self.queue!r}")
            while True:
                room = min(self.prefetch - len(self._unacked), FETCH_MAX)
                if room > 0:
                    items = self._fetch_script(keys=self._keys, args=[room, LEASE_MS, self.lease_value])
                    check_connection(self.r, f"consume {self.queue!r}")
                    if items:
                        return self._take(items)
                left = deadline - time.monotonic()
                if left <= 0.01:
                    return None
                if room <= 0:
                    time.sleep(left)
                    return None
                # wait on the first list (where Celery's default priority lands); others are seen on the next fetch
                item = self.r.blmove(self._base, self.inflight, min(left, WAIT_MAX), "RIGHT", "LEFT")
                if item is not None:
                    return self._take([item])

    def ack_upto(self, delivery: Delivery) -> int:
        """Remove DELIVERY and every message moved in before it from the in-flight list; how many."""
        unacked = self._unacked
        held = len(unacked)
        n = 0
        while n < held and unacked[n][0] <= delivery.tag:  # type: ignore[operator]
            n += 1
        if n:
            with self.broker.op(f"ack on {self.queue!r}"):
                # a connection dropped before the ack: ack nothing (one dropped during it is seen by the next fetch)
                check_connection(self.r, f"ack on {self.queue!r}")
                left = self._ack_script(keys=[self.inflight, self.lease], args=[n, held, self.lease_value, LEASE_MS])
            if left == -1:
                raise OperationError(
                    f"ack on {self.queue!r}: this run's in-flight messages were put back by another run "
                    "(the lease ran out while this one stalled)",
                    hint="the messages it holds are back in the queue too (duplicates in the output); run it again",
                )
            for _ in range(n):
                unacked.popleft()
        return n

    def ack_one(self, delivery: Delivery) -> None:
        """Remove DELIVERY alone (an identical copy nearer the consuming end is the same message)."""
        for i, (seq, item) in enumerate(self._unacked):
            if seq == delivery.tag:
                del self._unacked[i]
                with self.broker.op(f"ack on {self.queue!r}"):
                    self.r.lrem(self.inflight, -1, item)
                return

    def close(self) -> None:
        """Everything not acked goes back to the consuming end of the queue, in order; then the lease ends.

        After a dropped connection the client connects again for this; if Redis cannot be reached the list
        stays, and the next run (or ``queue restore``) puts it back once this process is gone."""
        self._stop.set()
        self._keeper.join(timeout=2.0)
        lay = self.broker.layout
        keys = [self.inflight, lay.inflight_set, self.lease]
        steps = ",".join(str(s) for s in lay.steps)
        for _attempt in range(2):
            try:
                self.r.eval(RECOVER, len(keys), *keys, lay.prefix + self.queue, SEP, steps, "force")
                return
            except Exception:
                continue


class RedisGetter:
    """``get`` never waits: None when the queue is empty now."""

    def __init__(self, consumer: RedisConsumer) -> None:
        self.consumer = consumer

    def get(self) -> Delivery | None:
        return self.consumer.next(0.0)

    def ack_upto(self, delivery: Delivery) -> int:
        return self.consumer.ack_upto(delivery)


class RedisPublisher:
    """kombu's publish (the same JSON envelope, LPUSH into the priority list) in pipelines of up to WINDOW messages.

    A message is confirmed once the pipeline that carries it has run: Redis stored it (kombu's own publish is
    one synchronous LPUSH per message). An exchange routes as kombu routes one it has not seen declared: direct,
    to the queues bound with the routing key; nothing bound is an error, never a silent drop."""

    def __init__(self, broker: RedisBroker, r: Any, window: int) -> None:
        self.broker, self.r, self.window = broker, r, max(1, window)
        self.sent = 0
        self._confirmed = 0
        self._pipe = r.pipeline(transaction=False)
        self._queued = 0
        self._routes: dict[tuple[str, str], list[str]] = {}

    @property
    def confirmed(self) -> int:
        return self._confirmed

    def _route(self, exchange: str, routing_key: str) -> list[str]:
        key = (exchange, routing_key)
        queues = self._routes.get(key)
        if queues is None:
            if not exchange:
                queues = [routing_key]
            else:
                with self.broker.op(f"exchange {exchange!r}"):
                    members = self.r.smembers(self.broker.layout.binding_key(exchange))
                queues = lookup(exchange, routing_key, [row for m in members if (row := parse_member(m)) is not None])
            if not queues:
                raise NotFoundError(
                    f"publish failed: unroutable: nothing bound to exchange {exchange!r} routing key {routing_key!r}",
                    hint="the source messages were not acked and stay where they were",
                )
            self._routes[key] = queues
        return queues

    def check_destination(self, exchange: str, routing_key: str) -> None:
        self._route(exchange, routing_key)

    def publish(self, raw: RawMessage, exchange: str, routing_key: str) -> None:
        props = {k: v for k, v in raw.properties.items() if k not in ENVELOPE}
        props.setdefault("priority", 0)
        props["delivery_info"] = {"exchange": exchange, "routing_key": routing_key}
        props["body_encoding"] = "base64"
        props["delivery_tag"] = str(uuid.uuid4())
        envelope = {
            "body": base64.b64encode(raw.body).decode("ascii"),
            "content-encoding": raw.content_encoding,
            "content-type": raw.content_type,
            "headers": dict(raw.headers or {}),
            "properties": props,
        }
        data = json.dumps(envelope, default=str)
        pri = message_priority(envelope)
        for q in self._route(exchange, routing_key):
            self._pipe.lpush(self.broker.layout.queue_key(q, pri), data)
        self.sent += 1
        self._queued += 1
        if self._queued >= self.window:
            self.flush()

    def flush(self, timeout: float = 60.0) -> None:
        """Run the pipeline: every message published so far is stored (or an error, and none counts as confirmed)."""
        if self._queued:
            with self.broker.op("publish"):
                self._pipe.execute()
            self._queued = 0
        self._confirmed = self.sent

    def close(self) -> None:
        self._pipe.reset()
