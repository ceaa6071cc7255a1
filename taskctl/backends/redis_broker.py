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

import os
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from taskctl.backends.base import Delivery, HeldMessage
from taskctl.backends.kombu_broker import KombuBroker
from taskctl.backends.kombu_consume import close_channel
from taskctl.backends.redis_consume import RedisConsumer, RedisGetter, RedisPublisher
from taskctl.backends.redis_layout import (
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
from taskctl.errors import UsageError

if TYPE_CHECKING:
    from taskctl.models import BrokerQueue


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
