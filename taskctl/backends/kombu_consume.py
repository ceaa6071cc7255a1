"""Receiving over kombu: deliveries as RawMessage, ``basic_get`` (Getter) and manual-ack consuming (Consumer).

Acks: ``ack_upto`` acks a delivery and every one received before it, with one ``basic.ack(multiple)`` on AMQP
(tag by tag on kombu's virtual transports, which ignore ``multiple``). Anything not acked returns to the queue
when the channel closes or the process dies. On plain-TCP AMQP the consuming connection reads its socket in
64 KiB chunks (taskctl.backends.amqp_fastpath).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from taskctl.backends import amqp_fastpath
from taskctl.backends.base import Delivery
from taskctl.backends.kombu_errors import translate
from taskctl.formats.message import RawMessage

if TYPE_CHECKING:
    from taskctl.backends.kombu_broker import KombuBroker

#: keys kombu's virtual transports keep in ``properties`` that are envelope, not message
VIRTUAL_ENVELOPE = ("body_encoding", "delivery_tag", "delivery_info")


def to_delivery(m: Any, is_amqp: bool) -> Delivery:
    """A kombu/py-amqp message as a Delivery (body bytes as received, headers and properties apart)."""
    if is_amqp:
        props = dict(m.properties)
        headers = props.pop("application_headers", None) or {}
        ctype = props.pop("content_type", None)
        cenc = props.pop("content_encoding", None)
        info = m.delivery_info
        body = m.body if isinstance(m.body, bytes) else str(m.body).encode(cenc or "utf-8")
        raw = RawMessage(
            body=bytes(body),
            content_type=ctype,
            content_encoding=cenc,
            headers=dict(headers),
            properties=props,
            exchange=info.get("exchange", "") or "",
            routing_key=info.get("routing_key", "") or "",
            redelivered=bool(info.get("redelivered", False)),
        )
        return Delivery(raw, info["delivery_tag"])
    props = {k: v for k, v in (m.properties or {}).items() if k not in VIRTUAL_ENVELOPE}
    info = m.delivery_info or {}
    raw_env = getattr(m, "_raw", None)  # kombu marks restored messages in the envelope
    body = m.body if isinstance(m.body, bytes) else str(m.body).encode(m.content_encoding or "utf-8")
    raw = RawMessage(
        body=body,
        content_type=m.content_type,
        content_encoding=m.content_encoding,
        headers=dict(m.headers or {}),
        properties=props,
        exchange=info.get("exchange", "") or "",
        routing_key=info.get("routing_key", "") or "",
        redelivered=bool(raw_env.get("redelivered", False)) if isinstance(raw_env, dict) else False,
    )
    return Delivery(raw, m.delivery_tag)


def close_channel(ch: Any) -> None:
    """Close a channel; unacked messages go back (kombu's memory:// only returns them on an explicit recover)."""
    try:
        if not hasattr(ch, "auto_decode") and getattr(ch, "qos", None) is not None:
            ch.basic_recover(requeue=True)
    except Exception:
        pass
    try:
        ch.close()
    except Exception:
        pass


def ack_upto(broker: KombuBroker, channel: Any, unacked: deque[Any], delivery: Delivery, queue: str) -> int:
    """Ack DELIVERY and every tag in UNACKED before it; returns how many were acked."""
    n = 0
    with broker.op(f"ack on {queue!r}"):
        if broker.is_amqp:
            while unacked and unacked[0] != delivery.tag:
                unacked.popleft()
                n += 1
            if unacked:
                unacked.popleft()
                n += 1
            channel.basic_ack(delivery.tag, multiple=True)
        else:
            while unacked:
                tag = unacked.popleft()
                channel.basic_ack(tag)
                n += 1
                if tag == delivery.tag:
                    break
    return n


class Getter:
    """``basic_get`` on one channel; ``ack_upto`` removes messages, anything not acked returns on close."""

    def __init__(self, broker: KombuBroker, channel: Any, queue: str) -> None:
        self.broker, self.channel, self.queue = broker, channel, queue
        self._unacked: deque[Any] = deque()

    def get(self) -> Delivery | None:
        with self.broker.op(f"get from {self.queue!r}"):
            m = self.channel.basic_get(queue=self.queue, no_ack=False)
        if m is None:
            return None
        d = to_delivery(m, self.broker.is_amqp)
        self._unacked.append(d.tag)
        return d

    def ack_upto(self, delivery: Delivery) -> int:
        """Ack DELIVERY and every message got before it."""
        return ack_upto(self.broker, self.channel, self._unacked, delivery, self.queue)


class Consumer:
    """Deliveries in order, acked in batches with :meth:`ack_upto` after the caller made them durable."""

    def __init__(self, broker: KombuBroker, conn: Any, queue: str, prefetch: int) -> None:
        self.broker, self.conn, self.queue = broker, conn, queue
        self.prefetch = prefetch
        self.pending: deque[Delivery] = deque()
        self._unacked: deque[Any] = deque()  # tags delivered and not yet acked, in order
        self.channel = broker.channel(conn)
        self.tag = f"taskctl-{uuid.uuid4().hex[:12]}"
        self._reader: amqp_fastpath.Reader | None = None
        #: with the fast path, py-amqp's own drain_events (kombu's adds two calls a message)
        self._amqp_drain: Callable[[float | None], Any] = conn.drain_events
        if broker.is_amqp:
            inner: Any = getattr(conn, "connection", None)
            self._reader = amqp_fastpath.buffer_reads(inner)
            if self._reader is not None:
                self._amqp_drain = inner.drain_events
        with broker.op(f"consume {queue!r}"):
            self.channel.basic_qos(0, prefetch, False)
            self.channel.basic_consume(queue=queue, no_ack=False, callback=self._on_message, consumer_tag=self.tag)

    def _on_message(self, m: Any) -> None:
        d = to_delivery(m, self.broker.is_amqp)
        self.pending.append(d)
        self._unacked.append(d.tag)

    def next(self, timeout: float) -> Delivery | None:
        """The next delivery, or None after TIMEOUT seconds with none."""
        pending = self.pending
        if pending:
            return pending.popleft()
        deadline = time.monotonic() + timeout
        reader = self._reader
        try:
            if reader is not None:
                # the reader enforces the deadline on the rare reads that reach the socket, so py-amqp does
                # not switch the socket's timeout (two fcntl calls) for every message
                reader.deadline = deadline
                drain = self._amqp_drain
                try:
                    while not pending:
                        drain(None)
                finally:
                    reader.deadline = None
            else:
                while not pending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self.conn.drain_events(timeout=left)
        except TimeoutError:
            return None
        except Exception as exc:
            raise translate(exc, f"consume {self.queue!r}", self.broker.url) from None
        return pending.popleft()

    def ack_upto(self, delivery: Delivery) -> int:
        """Ack DELIVERY and every delivery before it (one basic.ack(multiple) on AMQP); returns how many."""
        return ack_upto(self.broker, self.channel, self._unacked, delivery, self.queue)

    def ack_one(self, delivery: Delivery) -> None:
        """Ack DELIVERY alone: deliveries before it stay unacked (and return to their place on close)."""
        with self.broker.op(f"ack on {self.queue!r}"):
            self.channel.basic_ack(delivery.tag)
        try:
            self._unacked.remove(delivery.tag)
        except ValueError:
            pass

    def close(self) -> None:
        """Stop; everything delivered and not acked goes back to the queue (in place on RabbitMQ)."""
        close_channel(self.channel)
