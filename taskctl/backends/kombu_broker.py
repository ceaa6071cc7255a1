"""Queues over kombu: one adapter for every kombu transport, RabbitMQ (``amqp://``) first.

Connection strings are kombu's: ``amqp://USER:PASSWORD@HOST:5672/VHOST`` (``//`` is vhost ``/``),
``redis://[:PASSWORD@]HOST:6379/DB``, ``filesystem://`` (folders from the ``data_folder_in``/``data_folder_out``
transport options), ``memory://`` (one process only: tests). ``from_url(url, *, transport_options=None)``.

What it does, and how (measured in notes/rabbitmq-operations.md):

- ``stats``: a passive declare; it never declares or changes a queue it only looks at.
- ``peek``: ``basic_get`` without ack on its own channel, then closes the channel so the messages return in
  their order (never ``basic.consume``: that deletes an auto-delete RPC reply queue when cancelled).
- ``consume``/``getter``: taskctl.backends.kombu_consume; ``publisher``: taskctl.backends.kombu_publish.

Capabilities (per transport, set from the URL): ``acks``, ``counts_consumers``, ``missing_is_empty``,
``has_management``, ``peek_moves_to_tail``, ``returns_in_place``.

Errors raised (taskctl.backends.kombu_errors): UnavailableError (connection refused, timeout, wrong credentials,
connection closed by the broker; exit 5), NotFoundError (queue or exchange missing; exit 3), ConflictError
(exclusive or refused by the queue's arguments; exit 4), OperationError (anything else; exit 1). URLs are masked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from taskctl.backends.base import Delivery, QueueCounts
from taskctl.backends.kombu_consume import Consumer, Getter, close_channel, to_delivery
from taskctl.backends.kombu_errors import translate
from taskctl.backends.kombu_publish import Publisher
from taskctl.errors import NotFoundError, TaskctlError
from taskctl.urls import mask, parse

if TYPE_CHECKING:
    from taskctl.models import BrokerQueue

CONNECT_TIMEOUT = 5.0


class _QuietClose(logging.Filter):
    """Drops py-amqp's "Received method ... during closing channel" warning while a taskctl connection is open.

    A channel closed with deliveries in flight (peek, drain) logs it for every message in flight; the messages
    return to the queue, which is what taskctl wants. Every other py-amqp record passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "during closing channel" not in str(record.msg)


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
    #: a peeked message goes back to the tail, not its place (filesystem://)
    peek_moves_to_tail: bool
    #: unacked deliveries return to their place when the channel closes (AMQP; classic and quorum queues)
    returns_in_place: bool
    #: the broker lists its own queues (subclasses for Redis and SQS); RabbitMQ: the management API
    lists_queues: bool = False
    #: unacked messages can be read and put back (RedisBroker)
    holds_unacked: bool = False
    #: the largest message body the transport accepts, in bytes (subclasses: SQS 262,144); None where it is a
    #: server setting (RabbitMQ's max_message_size, read by the operation) or there is no practical one
    max_message_bytes: int | None = None
    #: a peek counts toward a delivery limit read by ``delivery_limit`` (SQS); quorum queues: management API
    peek_counts_deliveries: bool = False
    #: ``dead_letter_sources`` names the queues feeding a dead-letter queue (SQS); here x-death says it
    knows_dead_letter_sources: bool = False

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
        self.peek_moves_to_tail = self.scheme == "filesystem"
        self.returns_in_place = self.is_amqp

    @classmethod
    def from_url(cls, url: str, *, transport_options: dict[str, Any] | None = None) -> KombuBroker:
        return cls(url, transport_options)

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
        quiet = _QuietClose()
        amqp_log = logging.getLogger("amqp")
        amqp_log.addFilter(quiet)
        clean = False
        try:
            try:
                conn.connect()
            except Exception as exc:
                raise translate(exc, f"cannot connect to the broker for {purpose}", self.url) from None
            yield conn
            clean = True
        finally:
            try:
                if clean:
                    conn.release()
                else:
                    # an error or Ctrl-C: drop the socket without waiting for the broker's close-ok (it may be
                    # the broker that is not answering); unacked messages return to their queues either way
                    conn.collect(socket_timeout=1.0)
            except Exception:
                pass
            finally:
                amqp_log.removeFilter(quiet)

    def channel(self, conn: Any) -> Any:
        ch = conn.channel()
        if self.is_amqp:
            # keep bodies as the bytes that were published (py-amqp decodes them to str otherwise)
            ch.auto_decode = False
        return ch

    @contextmanager
    def op(self, what: str) -> Iterator[None]:
        """Translate any SDK exception raised inside into a TaskctlError about WHAT."""
        try:
            yield
        except TaskctlError:
            raise
        except Exception as exc:
            raise translate(exc, what, self.url) from None

    # -- looking ------------------------------------------------------------------------------------------------

    def stats(self, queue: str, conn: Any | None = None) -> QueueCounts:
        """Ready messages and consumers by passive declare. NotFoundError when the queue does not exist."""
        if conn is None:
            with self.connection(f"stats {queue}") as c:
                return self.stats(queue, c)
        ch = self.channel(conn)
        try:
            with self.op(f"queue {queue!r}"):
                try:
                    ok = ch.queue_declare(queue=queue, passive=True)
                except Exception as exc:
                    err = translate(exc, f"queue {queue!r}", self.url)
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
            close_channel(ch)

    def exchange_exists(self, exchange: str, conn: Any) -> bool:
        if not exchange or not self.is_amqp:
            return True
        ch = self.channel(conn)
        try:
            ch.exchange_declare(exchange=exchange, type="direct", passive=True)
            return True
        except Exception as exc:
            err = translate(exc, f"exchange {exchange!r}", self.url)
            if isinstance(err, NotFoundError):
                return False
            raise err from None
        finally:
            close_channel(ch)

    def peek(self, queue: str, limit: int) -> list[Delivery]:
        """Up to LIMIT messages by ``basic_get``, all given back by closing the channel (order kept)."""
        with self.connection(f"peek {queue}") as conn:
            self.stats(queue, conn)
            ch = self.channel(conn)
            out: list[Delivery] = []
            try:
                with self.op(f"peek {queue!r}"):
                    while len(out) < limit:
                        m = ch.basic_get(queue=queue, no_ack=False)
                        if m is None:
                            break
                        out.append(to_delivery(m, self.is_amqp))
            finally:
                # no ack: closing the channel returns every message to its place (classic and quorum)
                close_channel(ch)
            return out

    @contextmanager
    def getter(self, queue: str, purpose: str = "get") -> Iterator[Getter]:
        """``basic_get`` one message at a time (RPC reply queues: never consume them); unacked ones return."""
        with self.connection(f"{purpose} {queue}") as conn:
            self.stats(queue, conn)
            ch = self.channel(conn)
            try:
                yield Getter(self, ch, queue)
            finally:
                close_channel(ch)

    def iter_queues(self) -> Iterator[BrokerQueue]:
        """Only adapters with ``lists_queues`` list queues; RabbitMQ's list is the management API's."""
        raise NotImplementedError(f"{self.scheme}:// cannot list its queues")

    def delivery_limit(self, queue: str) -> int | None:
        """Only adapters with ``peek_counts_deliveries`` read a limit; RabbitMQ's is the management API's."""
        return None

    def dead_letter_sources(self, queue: str) -> list[str]:
        """Only adapters with ``knows_dead_letter_sources``; on RabbitMQ each message's x-death names it."""
        return []

    # -- changing -----------------------------------------------------------------------------------------------

    def purge(self, queue: str) -> int:
        """Remove the ready messages; returns how many. Unacked (held by consumers) ones stay."""
        with self.connection(f"purge {queue}") as conn:
            counts = self.stats(queue, conn)
            if not counts.certain and counts.messages == 0:
                return 0
            ch = self.channel(conn)
            try:
                with self.op(f"purge {queue!r}"):
                    n = ch.queue_purge(queue=queue)
                return int(n or 0)
            finally:
                close_channel(ch)

    def delete_queue(self, queue: str, *, if_empty: bool = False) -> None:
        with self.connection(f"delete {queue}") as conn:
            ch = self.channel(conn)
            try:
                with self.op(f"delete queue {queue!r}"):
                    ch.queue_delete(queue=queue, if_empty=if_empty)
            finally:
                close_channel(ch)

    def declare_queue(self, queue: str, **kwargs: Any) -> None:
        """Declare a queue (tests, benchmarks and demos; operations never declare what they look at)."""
        with self.connection(f"declare {queue}") as conn:
            ch = self.channel(conn)
            try:
                with self.op(f"declare queue {queue!r}"):
                    kwargs.setdefault("durable", True)
                    kwargs.setdefault("auto_delete", False)
                    ch.queue_declare(queue=queue, **kwargs)
            finally:
                close_channel(ch)

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
