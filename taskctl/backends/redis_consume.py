"""Taking from and publishing to Redis for the transfer engine: RedisConsumer, RedisGetter, RedisPublisher.

A message never leaves Redis until it is safe: see taskctl.backends.redis_broker for the in-flight lists."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from taskctl.backends.base import Delivery
from taskctl.backends.redis_layout import (
    ACK,
    ENVELOPE,
    FETCH,
    RECOVER,
    SEP,
    lookup,
    message_priority,
    parse_member,
    to_raw,
)
from taskctl.errors import NotFoundError, OperationError, UnavailableError
from taskctl.formats.message import RawMessage

if TYPE_CHECKING:
    from taskctl.backends.redis_broker import RedisBroker


#: an in-flight list's lease: refreshed every LEASE_REFRESH s by a thread while its consumer is open
LEASE_MS = 30_000
LEASE_REFRESH = 5.0
#: messages moved into the in-flight list per script call
FETCH_MAX = 500
#: the longest single wait on the server for a message (BLMOVE), so deadlines and Ctrl-C are kept
WAIT_MAX = 0.5


def check_connection(r: Any, what: str) -> None:
    """UnavailableError when R's connection was dropped by the server (and silently made again) since it opened."""
    if getattr(r.connection_pool, "dropped", False):
        raise UnavailableError(
            f"{what}: the Redis server closed taskctl's connection",
            hint="messages not yet safe went back to the queue; run the command again to continue",
        )


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
