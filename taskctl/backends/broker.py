"""Queues over kombu: one adapter for every kombu transport, RabbitMQ (``amqp://``) first.

Connection strings are kombu's: ``amqp://USER:PASSWORD@HOST:5672/VHOST`` (``//`` is vhost ``/``),
``redis://[:PASSWORD@]HOST:6379/DB``, ``filesystem://`` (folders from the ``data_folder_in``/``data_folder_out``
transport options), ``memory://`` (one process only: tests). Transport options come from the config file's
``transport_options`` table.

What it does, and how (measured in notes/rabbitmq-operations.md):

- ``stats``: a passive declare; it never declares or changes a queue it only looks at.
- ``peek``: ``basic_get`` without ack on its own channel, then closes the channel so the messages return in
  their order (never ``basic.consume``: that deletes an auto-delete RPC reply queue when cancelled).
- ``consume``: manual-ack consumer with a prefetch window; ``ack_upto`` acks everything up to a delivery with
  one ``basic.ack(multiple)`` on AMQP (each tag on kombu's virtual transports, which ignore ``multiple``).
  On plain-TCP AMQP the consuming connection reads the socket 64 KiB at a time (py-amqp alone makes three
  ``recv`` calls per frame), see ``_buffer_reads``.
- ``publisher``: a second connection (publishing on the consuming connection re-enters its callbacks) with
  publisher confirms in a window and ``mandatory`` so an unroutable message is an error, not a silent ack.

Capabilities (per transport, set from the URL): ``acks``, ``counts_consumers``, ``missing_is_empty``,
``has_management``.

Errors raised: UnavailableError (connection refused, timeout, wrong credentials, connection closed by the
broker; exit 5), NotFoundError (queue or exchange missing; exit 3), ConflictError (exclusive or refused by the
queue's arguments; exit 4), OperationError (anything else the broker refused; exit 1). URLs are masked.
"""

from __future__ import annotations

import logging
import re
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskctl.errors import ConflictError, NotFoundError, OperationError, TaskctlError, UnavailableError
from taskctl.formats.message import RawMessage
from taskctl.urls import mask, mask_text, parse

if TYPE_CHECKING:
    from taskctl.config import Settings

CONNECT_TIMEOUT = 5.0
#: AMQP basic properties py-amqp accepts besides content type/encoding and headers
AMQP_PROPERTIES = (
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)
#: keys kombu's virtual transports keep in ``properties`` that are envelope, not message
_VIRTUAL_ENVELOPE = ("body_encoding", "delivery_tag", "delivery_info")


@dataclass(frozen=True)
class QueueCounts:
    """What a passive declare tells: ready messages and consumers (None where the transport cannot tell)."""

    queue: str
    messages: int
    consumers: int | None
    #: False only where the transport cannot tell a missing queue from an empty one (Redis, filesystem)
    certain: bool = True


@dataclass
class Delivery:
    """A received message and the tag that acks it."""

    raw: RawMessage
    tag: Any


def _translate(exc: BaseException, what: str, url: str) -> TaskctlError:
    """One TaskctlError for any kombu/py-amqp/redis/socket exception; secrets masked."""
    if isinstance(exc, TaskctlError):
        return exc
    text = mask_text(str(exc) or exc.__class__.__name__, url)
    code = getattr(exc, "reply_code", None) or getattr(exc, "code", None)
    name = type(exc).__name__
    where = mask(url)
    if code == 404 or "NOT_FOUND" in text:
        return NotFoundError(f"{what}: {_reply_text(text)}")
    if code == 403 or name in ("AccessRefused", "AuthenticationError") or "ACCESS_REFUSED" in text:
        return UnavailableError(
            f"{what}: access refused by {where}: {_reply_text(text)}",
            hint="check the user and password in the broker URL, and the user's permissions on the vhost",
        )
    if code == 530 or "NOT_ALLOWED" in text:
        return UnavailableError(f"{what}: {where} refused the vhost: {_reply_text(text)}", hint="check the vhost")
    if code == 320 or name == "ConnectionForced" or "CONNECTION_FORCED" in text:
        return UnavailableError(
            f"{what}: the broker closed the connection: {_reply_text(text)}",
            hint="unacked messages went back to the queue; run the command again to continue",
        )
    if code in (405, 406) or name in ("ResourceLocked", "PreconditionFailed"):
        return ConflictError(f"{what}: refused by the broker: {_reply_text(text)}")
    if code == 312 or "NO_ROUTE" in text:
        return NotFoundError(f"{what}: unroutable: {_reply_text(text)}", hint="no queue is bound to that route")
    if isinstance(exc, OSError | EOFError) or name in (
        "ConnectionError",
        "RecoverableConnectionError",
        "OperationalError",
        "TimeoutError",
        "timeout",
        "BusyLoadingError",
    ):
        reason = text
        if isinstance(exc, ConnectionRefusedError):
            reason = "connection refused"
        elif isinstance(exc, socket.timeout | TimeoutError):
            reason = "timed out"
        return UnavailableError(
            f"{what}: cannot reach {where}: {reason}",
            hint="is the broker running? check --broker / TASKCTL_BROKER_URL",
        )
    return OperationError(f"{what}: {name}: {text}")


_REPLY = re.compile(r"^.*?\((\d{3})\) ")


def _reply_text(text: str) -> str:
    """py-amqp's "Queue.declare: (404) NOT_FOUND - no queue 'x'" as "NOT_FOUND - no queue 'x'"."""
    return _REPLY.sub("", text, count=1)


class KombuBroker:
    """Every broker operation taskctl needs, over one kombu connection per role."""

    #: a message stays in the queue until acked, so a killed client loses nothing (False: filesystem://)
    acks: bool
    #: passive declare reports consumers (AMQP)
    counts_consumers: bool
    #: an empty queue does not exist (Redis keys, filesystem files): "missing" cannot be told from "empty"
    missing_is_empty: bool
    #: RabbitMQ's HTTP management API can list queues
    has_management: bool

    def __init__(self, url: str, transport_options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.transport_options = dict(transport_options or {})
        scheme = url.split("://", 1)[0].lower() if "://" in url else url
        self.scheme = {"pyamqp": "amqp", "amqps": "amqp", "rediss": "redis"}.get(scheme, scheme)
        self.is_amqp = self.scheme == "amqp"
        self.acks = self.scheme not in ("filesystem",)
        self.counts_consumers = self.is_amqp
        self.missing_is_empty = self.scheme in ("redis", "filesystem", "sqs")
        self.has_management = self.is_amqp

    @classmethod
    def from_settings(cls, url: str, settings: Settings) -> KombuBroker:
        return cls(url, settings.transport_options)

    @property
    def masked_url(self) -> str:
        return mask(self.url)

    @property
    def vhost(self) -> str:
        p = parse(self.url)
        return p.path or "/"

    # -- connections --------------------------------------------------------------------------------------------

    @contextmanager
    def connection(self, purpose: str) -> Iterator[Any]:
        """An open kombu Connection named after PURPOSE (visible in RabbitMQ's connection list)."""
        from kombu import Connection  # type: ignore[attr-defined]

        # py-amqp logs harmless "Received method ... during closing channel" lines when a channel closes
        # with deliveries in flight (peek, drain); the user sees errors through taskctl, not the library log
        logging.getLogger("amqp").setLevel(logging.ERROR)
        opts = dict(self.transport_options)
        if self.is_amqp:
            props = dict(opts.get("client_properties") or {})
            props.setdefault("connection_name", f"taskctl {purpose}")
            opts["client_properties"] = props
            opts.setdefault("confirm_publish", False)
        elif self.scheme == "redis":
            opts.setdefault("socket_connect_timeout", CONNECT_TIMEOUT)
            opts.setdefault("socket_timeout", 30)
        conn: Any = Connection(  # type: ignore[no-untyped-call]
            self.url, connect_timeout=CONNECT_TIMEOUT, transport_options=opts, heartbeat=0
        )
        try:
            try:
                conn.connect()
            except Exception as exc:
                raise _translate(exc, f"cannot connect to the broker for {purpose}", self.url) from None
            yield conn
        finally:
            try:
                conn.release()
            except Exception:
                pass

    def _channel(self, conn: Any) -> Any:
        ch = conn.channel()
        if self.is_amqp:
            # keep bodies as the bytes that were published (py-amqp decodes them to str otherwise)
            ch.auto_decode = False
        return ch

    @contextmanager
    def _op(self, what: str) -> Iterator[None]:
        try:
            yield
        except TaskctlError:
            raise
        except Exception as exc:
            raise _translate(exc, what, self.url) from None

    # -- looking ------------------------------------------------------------------------------------------------

    def stats(self, queue: str, conn: Any | None = None) -> QueueCounts:
        """Ready messages and consumers by passive declare. NotFoundError when the queue does not exist."""
        if conn is None:
            with self.connection(f"stats {queue}") as c:
                return self.stats(queue, c)
        ch = self._channel(conn)
        try:
            with self._op(f"queue {queue!r}"):
                try:
                    ok = ch.queue_declare(queue=queue, passive=True)
                except Exception as exc:
                    err = _translate(exc, f"queue {queue!r}", self.url)
                    if isinstance(err, NotFoundError):
                        if self.missing_is_empty:
                            return QueueCounts(queue, 0, None, certain=False)
                        raise NotFoundError(
                            f"queue {queue!r} does not exist on {self.masked_url}",
                            hint="list queues with 'taskctl queue list' (needs the management API)",
                        ) from None
                    raise err from None
            _name, count, consumers = ok
            return QueueCounts(
                queue,
                int(count),
                int(consumers) if self.counts_consumers else None,
                certain=not (self.missing_is_empty and int(count) == 0),
            )
        finally:
            _close(ch)

    def exchange_exists(self, exchange: str, conn: Any) -> bool:
        if not exchange or not self.is_amqp:
            return True
        ch = self._channel(conn)
        try:
            ch.exchange_declare(exchange=exchange, type="direct", passive=True)
            return True
        except Exception as exc:
            err = _translate(exc, f"exchange {exchange!r}", self.url)
            if isinstance(err, NotFoundError):
                return False
            raise err from None
        finally:
            _close(ch)

    def peek(self, queue: str, limit: int) -> list[Delivery]:
        """Up to LIMIT messages by ``basic_get``, all given back by closing the channel (order kept)."""
        with self.connection(f"peek {queue}") as conn:
            self.stats(queue, conn)
            ch = self._channel(conn)
            out: list[Delivery] = []
            if self.scheme == "redis":
                try:
                    return self._redis_peek(ch, queue, limit)
                finally:
                    _close(ch)
            try:
                with self._op(f"peek {queue!r}"):
                    while len(out) < limit:
                        m = ch.basic_get(queue=queue, no_ack=False)
                        if m is None:
                            break
                        out.append(self._delivery(m))
            finally:
                # no ack: closing the channel returns every message to its place (classic and quorum)
                _close(ch)
            return out

    @contextmanager
    def getter(self, queue: str, purpose: str = "get") -> Iterator[Getter]:
        """``basic_get`` one message at a time (RPC reply queues: never consume them); unacked ones return."""
        with self.connection(f"{purpose} {queue}") as conn:
            self.stats(queue, conn)
            ch = self._channel(conn)
            try:
                yield Getter(self, ch, queue)
            finally:
                _close(ch)

    def _redis_peek(self, ch: Any, queue: str, limit: int) -> list[Delivery]:
        """LRANGE from the consuming end: a Redis peek that moves nothing (basic_get would reorder on return)."""
        import json

        from kombu.transport.virtual.base import Message

        out: list[Delivery] = []
        with self._op(f"peek {queue!r}"), ch.conn_or_acquire() as client:
            for pri in ch.priority_steps:
                if len(out) >= limit:
                    break
                items = client.lrange(ch._q_for_pri(queue, pri), -(limit - len(out)), -1)
                for item in reversed(items):
                    out.append(self._delivery(Message(json.loads(item), channel=ch)))  # type: ignore[no-untyped-call]
        return out

    # -- changing -----------------------------------------------------------------------------------------------

    def purge(self, queue: str) -> int:
        """Remove the ready messages; returns how many. Unacked (held by consumers) ones stay."""
        with self.connection(f"purge {queue}") as conn:
            counts = self.stats(queue, conn)
            if not counts.certain and counts.messages == 0:
                return 0
            ch = self._channel(conn)
            try:
                with self._op(f"purge {queue!r}"):
                    n = ch.queue_purge(queue=queue)
                return int(n or 0)
            finally:
                _close(ch)

    def delete_queue(self, queue: str, *, if_empty: bool = False) -> None:
        with self.connection(f"delete {queue}") as conn:
            ch = self._channel(conn)
            try:
                with self._op(f"delete queue {queue!r}"):
                    ch.queue_delete(queue=queue, if_empty=if_empty)
            finally:
                _close(ch)

    def declare_queue(self, queue: str, **kwargs: Any) -> None:
        """Declare a queue (tests, benchmarks and demos; operations never declare what they look at)."""
        with self.connection(f"declare {queue}") as conn:
            ch = self._channel(conn)
            try:
                with self._op(f"declare queue {queue!r}"):
                    kwargs.setdefault("durable", True)
                    kwargs.setdefault("auto_delete", False)
                    ch.queue_declare(queue=queue, **kwargs)
            finally:
                _close(ch)

    @contextmanager
    def consume(self, queue: str, *, prefetch: int = 1000, purpose: str = "drain") -> Iterator[Consumer]:
        """A manual-ack consumer; unacked deliveries return to the queue when it closes (or the process dies)."""
        with self.connection(f"{purpose} {queue}") as conn:
            self.stats(queue, conn)
            consumer = Consumer(self, conn, queue, prefetch)
            try:
                yield consumer
            finally:
                consumer.close()

    @contextmanager
    def publisher(self, *, window: int = 1000, purpose: str = "publish") -> Iterator[Publisher]:
        """Publishing with confirms on a connection of its own."""
        with self.connection(purpose) as conn:
            pub = Publisher(self, conn, window)
            try:
                yield pub
            finally:
                pub.close()

    # -- conversions --------------------------------------------------------------------------------------------

    def _delivery(self, m: Any) -> Delivery:
        if self.is_amqp:
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
        props = {k: v for k, v in (m.properties or {}).items() if k not in _VIRTUAL_ENVELOPE}
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


def _close(ch: Any) -> None:
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


class Getter:
    """``basic_get`` on one channel; ``ack_upto`` removes messages, anything not acked returns on close."""

    def __init__(self, broker: KombuBroker, channel: Any, queue: str) -> None:
        self.broker, self.channel, self.queue = broker, channel, queue
        self._unacked: deque[Any] = deque()

    def get(self) -> Delivery | None:
        with self.broker._op(f"get from {self.queue!r}"):
            m = self.channel.basic_get(queue=self.queue, no_ack=False)
        if m is None:
            return None
        d = self.broker._delivery(m)
        self._unacked.append(d.tag)
        return d

    def ack_upto(self, delivery: Delivery) -> int:
        """Ack DELIVERY and every message got before it."""
        return _ack_upto(self.broker, self.channel, self._unacked, delivery, self.queue)


def _ack_upto(broker: KombuBroker, channel: Any, unacked: deque[Any], delivery: Delivery, queue: str) -> int:
    n = 0
    with broker._op(f"ack on {queue!r}"):
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


#: bytes asked of the socket per read on a consuming connection
RECV_BUFFER = 64 * 1024


class _Reader:
    """State of a buffered consuming socket: the deadline of the current wait (None: the socket's own timeout)."""

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        self.deadline: float | None = None


def _buffer_reads(conn: Any) -> _Reader | None:
    """Have py-amqp read a consuming connection RECV_BUFFER bytes at a time; None where that cannot be done.

    py-amqp's TCP transport reads exactly the bytes it needs with one ``recv`` each: three system calls per
    frame, nine per message. This swaps its ``_quick_recv`` (py-amqp 5.x, plain TCP only) for a function that
    serves those reads from one large ``recv``. Only whole reads py-amqp asked for are returned, so its own
    buffering and error handling are unchanged; the connection is the consumer's own and every later read goes
    through the buffer. While :attr:`_Reader.deadline` is set, a read that has to wait raises
    ``socket.timeout`` at the deadline (as py-amqp's ``drain_events(timeout)`` would).
    """
    try:
        from amqp.transport import TCPTransport

        transport = conn.connection.transport
    except Exception:
        return None
    if type(transport) is not TCPTransport or transport._read_buffer or getattr(transport, "sock", None) is None:
        return None
    sock: socket.socket = transport.sock
    if transport._quick_recv != sock.recv:
        return None
    recv = sock.recv
    reader = _Reader()
    monotonic = time.monotonic
    buf = b""
    pos = 0

    def quick_recv(n: int) -> bytes:
        nonlocal buf, pos
        if pos >= len(buf):
            deadline = reader.deadline
            chunk: bytes
            if deadline is None:
                chunk = recv(RECV_BUFFER)
            else:
                left = deadline - monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
                prev = sock.gettimeout()
                sock.settimeout(left)
                try:
                    chunk = recv(RECV_BUFFER)
                finally:
                    sock.settimeout(prev)
            if not chunk:
                return chunk  # closed: py-amqp raises
            buf, pos = chunk, 0
        end = pos + n
        data = buf if pos == 0 and end >= len(buf) else buf[pos:end]
        pos += len(data)
        return data

    transport._quick_recv = quick_recv
    return reader


class Consumer:
    """Deliveries in order, acked in batches with :meth:`ack_upto` after the caller made them durable."""

    def __init__(self, broker: KombuBroker, conn: Any, queue: str, prefetch: int) -> None:
        self.broker, self.conn, self.queue = broker, conn, queue
        self.prefetch = prefetch
        self.pending: deque[Delivery] = deque()
        self._unacked: deque[Any] = deque()  # tags delivered and not yet acked, in order
        self.channel = broker._channel(conn)
        self.tag = f"taskctl-{uuid.uuid4().hex[:12]}"
        self._reader = _buffer_reads(conn) if broker.is_amqp else None
        #: with the reader, py-amqp's own drain_events (kombu's adds two calls a message)
        self._amqp_drain: Callable[[float | None], Any] = (
            conn.connection.drain_events if self._reader is not None else conn.drain_events
        )
        with broker._op(f"consume {queue!r}"):
            self.channel.basic_qos(0, prefetch, False)
            self.channel.basic_consume(queue=queue, no_ack=False, callback=self._on_message, consumer_tag=self.tag)

    def _on_message(self, m: Any) -> None:
        d = self.broker._delivery(m)
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
            raise _translate(exc, f"consume {self.queue!r}", self.broker.url) from None
        return pending.popleft()

    def ack_upto(self, delivery: Delivery) -> int:
        """Ack DELIVERY and every delivery before it (one basic.ack(multiple) on AMQP); returns how many."""
        return _ack_upto(self.broker, self.channel, self._unacked, delivery, self.queue)

    def close(self) -> None:
        """Stop; everything delivered and not acked goes back to the queue (in place on RabbitMQ)."""
        _close(self.channel)


class Publisher:
    """Publish raw messages with publisher confirms, at most WINDOW unconfirmed; ``flush`` waits for all."""

    def __init__(self, broker: KombuBroker, conn: Any, window: int) -> None:
        self.broker, self.conn, self.window = broker, conn, window
        self.channel = broker._channel(conn)
        self.sent = 0
        #: every tag up to here is confirmed; tags confirmed singly beyond it wait in _acked_above
        self._confirmed_upto = 0
        self._acked_above: set[int] = set()
        self._failures: list[str] = []
        self._checked: set[tuple[str, str]] = set()
        if broker.is_amqp:
            ev = self.channel.events
            ev["basic_ack"].add(self._on_ack)
            ev["basic_nack"].add(self._on_nack)
            ev["basic_return"].add(self._on_return)
            with broker._op("enable publisher confirms"):
                self.channel.confirm_select()

    @property
    def outstanding(self) -> int:
        """Messages published and not yet confirmed."""
        return self.sent - self._confirmed_upto - len(self._acked_above)

    # py-amqp callbacks; RabbitMQ confirms in order, mostly with multiple=True
    def _on_ack(self, tag: int, multiple: bool) -> None:
        if multiple:
            if tag > self._confirmed_upto:
                self._confirmed_upto = tag
                if self._acked_above:
                    self._acked_above = {t for t in self._acked_above if t > tag}
        elif tag == self._confirmed_upto + 1:
            self._confirmed_upto = tag
        elif tag > self._confirmed_upto:
            self._acked_above.add(tag)
        while self._acked_above and self._confirmed_upto + 1 in self._acked_above:
            self._confirmed_upto += 1
            self._acked_above.discard(self._confirmed_upto)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._failures.append(f"the broker refused (nack) message {tag}")
        self._on_ack(tag, multiple)

    def _on_return(self, exc: Any, exchange: str, routing_key: str, message: Any) -> None:
        self._failures.append(f"unroutable: nothing bound to exchange {exchange!r} routing key {routing_key!r}")

    def check_destination(self, exchange: str, routing_key: str) -> None:
        """NotFoundError unless the queue (default exchange) or the exchange exists; checked once per target."""
        key = (exchange, routing_key)
        if key in self._checked:
            return
        if exchange == "":
            if not self.broker.missing_is_empty:
                self.broker.stats(routing_key, self.conn)
        elif not self.broker.exchange_exists(exchange, self.conn):
            raise NotFoundError(f"exchange {exchange!r} does not exist on {self.broker.masked_url}")
        self._checked.add(key)

    def publish(self, raw: RawMessage, exchange: str, routing_key: str) -> None:
        """Publish RAW as is (body bytes, headers and properties) to EXCHANGE/ROUTING_KEY."""
        with self.broker._op(f"publish to {exchange or routing_key!r}"):
            if self.broker.is_amqp:
                import amqp

                props = {k: v for k, v in raw.properties.items() if k in AMQP_PROPERTIES and v is not None}
                if raw.content_type is not None:
                    props["content_type"] = raw.content_type
                if raw.content_encoding is not None:
                    props["content_encoding"] = raw.content_encoding
                props["application_headers"] = dict(raw.headers or {})
                msg = amqp.Message(raw.body, **props)
                while self.outstanding >= self.window:
                    self._wait(30.0)
                self.channel.basic_publish(msg, exchange=exchange, routing_key=routing_key, mandatory=True)
                self.sent += 1
            else:
                props = {k: v for k, v in raw.properties.items() if k not in _VIRTUAL_ENVELOPE}
                priority = props.get("priority") or 0
                msg = self.channel.prepare_message(
                    raw.body, priority, raw.content_type, raw.content_encoding, dict(raw.headers or {}), props
                )
                self.channel.basic_publish(msg, exchange, routing_key)
                # virtual transports store synchronously: published is confirmed
                self.sent += 1
                self._confirmed_upto = self.sent
        self._raise_failures()

    def _wait(self, timeout: float) -> None:
        try:
            self.conn.drain_events(timeout=timeout)
        except TimeoutError:
            raise OperationError(f"no publisher confirm from the broker within {timeout:g}s") from None

    def flush(self, timeout: float = 60.0) -> None:
        """Return once the broker confirmed every message published so far; raises if any was refused."""
        deadline = time.monotonic() + timeout
        with self.broker._op("wait for publisher confirms"):
            while self.outstanding > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise OperationError(f"{self.outstanding} messages not confirmed by the broker in {timeout:g}s")
                self._wait(left)
        self._raise_failures()

    def _raise_failures(self) -> None:
        if self._failures:
            first = self._failures[0]
            n = len(self._failures)
            raise NotFoundError(
                f"publish failed: {first}" + (f" (and {n - 1} more)" if n > 1 else ""),
                hint="the source messages were not acked and stay where they were",
            )

    def close(self) -> None:
        _close(self.channel)
