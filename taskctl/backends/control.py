"""Celery remote control over kombu's pidbox ``Mailbox``, configured as ``celery.app.control.Control`` does.

Connection string: any kombu broker URL (``amqp://``, ``redis://``, ``filesystem://`` with the configured
transport options). The topology and message are kombu's (celery-formats §6.1): requests go to the fanout
exchange ``<namespace>.pidbox``; replies come to an exclusive, auto-delete queue
``<oid>.reply.<namespace>.pidbox``, declared before the request is published so no reply is missed. Replies are
collected as Celery collects them: until ``timeout`` seconds pass with no reply, or one reply per destination.

Capabilities: broadcast everywhere kombu has a fanout exchange (AMQP, Redis, filesystem; not SQS ≤5.6).

Errors raised: UnavailableError (cannot connect, refused, bad credentials; the URL is masked), OperationError
(the broker failed the operation).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from taskctl.backends.kombu_errors import translate
from taskctl.errors import OperationError, TaskctlError
from taskctl.formats import control as fmt
from taskctl.urls import mask

#: transports whose ``Channel.get_table(exchange)`` reads bindings every client shares (not process memory)
_BINDING_TABLES = frozenset({"redis", "rediss", "filesystem"})
#: seconds; Celery's control_queue_ttl / control_queue_expires defaults
REPLY_QUEUE_TTL = 300.0
REPLY_QUEUE_EXPIRES = 10.0
#: seconds; Celery's event_queue_ttl / event_queue_expires defaults
EVENT_QUEUE_TTL = 5.0
EVENT_QUEUE_EXPIRES = 60.0


#: kombu's filesystem:// transport rewrites an exchange's binding table in place, so a reader can meet it
#: half-written (a JSONDecodeError); such a broadcast is tried again this many times in all
TORN_FILE_RETRIES = 5


class _TornFile(Exception):
    """A filesystem:// table file read while another process was writing it."""


def _kombu() -> tuple[Any, Any]:
    """kombu's Connection and Mailbox, imported on first use (``--help`` never loads kombu)."""
    from kombu.connection import Connection
    from kombu.pidbox import Mailbox

    return Connection, Mailbox


def _kombu_entities() -> tuple[Any, Any, Any]:
    """kombu's Exchange, Queue and Consumer, imported on first use."""
    from kombu.entity import Exchange, Queue
    from kombu.messaging import Consumer

    return Exchange, Queue, Consumer


class KombuControl:
    """Remote control of Celery workers through the broker (kombu pidbox, as ``app.control`` does)."""

    #: requests reach workers through a fanout exchange; False where the transport has none
    supports_broadcast = True
    #: bound_workers() reads the pidbox bindings the transport keeps (Redis set, filesystem control folder)
    lists_bound_workers: bool
    #: the broker is RabbitMQ: its management API lists the pidbox bindings instead
    has_management: bool
    #: rounds may run at once on their own connections (not on filesystem://: its tables are rewritten in place)
    concurrent_rounds: bool

    def __init__(
        self,
        url: str,
        *,
        transport_options: Mapping[str, Any] | None = None,
        namespace: str = fmt.DEFAULT_NAMESPACE,
        connect_timeout: float = 5.0,
        event_exchange: str = fmt.EVENT_EXCHANGE,
    ) -> None:
        self.url = url
        self.transport_options = dict(transport_options or {})
        self.namespace = namespace
        self.connect_timeout = connect_timeout
        self.event_exchange = event_exchange
        scheme = url.split("://", 1)[0].lower()
        self.lists_bound_workers = scheme in _BINDING_TABLES
        self.has_management = scheme in ("amqp", "pyamqp", "amqps")
        self.concurrent_rounds = scheme not in ("filesystem", "memory")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        transport_options: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        connect_timeout: float = 5.0,
        event_exchange: str | None = None,
    ) -> KombuControl:
        """``namespace`` is Celery's ``control_exchange`` (default ``celery``), ``event_exchange`` its
        ``event_exchange`` (default ``celeryev``)."""
        return cls(
            url,
            transport_options=transport_options,
            namespace=namespace or fmt.DEFAULT_NAMESPACE,
            connect_timeout=connect_timeout,
            event_exchange=event_exchange or fmt.EVENT_EXCHANGE,
        )

    @contextmanager
    def _mailbox(self, action: str) -> Iterator[Any]:
        """A ``kombu.pidbox.Mailbox`` bound to a fresh connection; kombu errors leave as TaskctlErrors."""
        Connection, Mailbox = _kombu()
        opts = dict(self.transport_options)
        if not self.concurrent_rounds:
            # filesystem:// polls its folders (1 s by default): rounds run one after another here, so poll faster
            opts.setdefault("polling_interval", 0.05)
        if self.url.split("://", 1)[0].lower() in ("amqp", "pyamqp", "amqps"):
            # named, so operators can tell taskctl's connection from a worker's in RabbitMQ's list
            props = dict(opts.get("client_properties") or {})
            props.setdefault("connection_name", f"taskctl {action}")
            opts["client_properties"] = props
        conn = Connection(self.url, transport_options=opts, connect_timeout=self.connect_timeout)
        # celery.app.control.Control.mailbox, with Celery's default queue TTL and expiry
        mailbox = Mailbox(
            self.namespace,
            type="fanout",
            accept=["json"],
            queue_ttl=REPLY_QUEUE_TTL,
            reply_queue_ttl=REPLY_QUEUE_TTL,
            queue_expires=REPLY_QUEUE_EXPIRES,
            reply_queue_expires=REPLY_QUEUE_EXPIRES,
        )
        try:
            try:
                conn.ensure_connection(max_retries=1, timeout=self.connect_timeout)
                yield mailbox(conn)
            except TaskctlError:
                raise
            except ValueError as exc:
                if type(exc).__name__ == "JSONDecodeError" and self.url.lower().startswith("filesystem:"):
                    raise _TornFile from None
                raise translate(exc, f"cannot {action}", self.url) from None
            except Exception as exc:
                raise translate(exc, f"cannot {action}", self.url) from None
        finally:
            try:
                conn.release()
            except Exception:  # closing a broken connection must not hide the real error
                pass

    def broadcast(
        self,
        command: str,
        arguments: Mapping[str, Any],
        *,
        reply: bool,
        timeout: float,
        destination: Sequence[str] | None = None,
        action: str = "broadcast to workers",
        limit: int | Callable[[], int | None] | None = None,
    ) -> list[fmt.Reply]:
        """Send ``command`` to every worker (or ``destination``); with ``reply``, the parsed replies.

        Collection stops after ``limit`` replies (default: one per destination), else when ``timeout`` seconds
        pass without a reply: with the expected worker count, a round ends as soon as all have answered. A
        callable ``limit`` is asked once the connection is open, so a caller can look the count up meanwhile.
        """
        for _ in range(TORN_FILE_RETRIES):
            try:
                return self._broadcast(command, arguments, reply, timeout, destination, action, limit)
            except _TornFile:
                time.sleep(0.05)
        raise OperationError(
            f"cannot {action}: {mask(self.url)} kept a binding file half-written",
            hint="kombu's filesystem:// transport writes its tables in place; run the command again",
        )

    def _broadcast(
        self,
        command: str,
        arguments: Mapping[str, Any],
        reply: bool,
        timeout: float,
        destination: Sequence[str] | None,
        action: str,
        limit: int | Callable[[], int | None] | None,
    ) -> list[fmt.Reply]:
        kwargs = dict(arguments)
        nodes = list(destination) if destination else None
        with self._mailbox(action) as mailbox:
            if not reply:
                # cast/abcast send what app.control.broadcast(reply=False) sends (expires: now + 1 s)
                if nodes:
                    mailbox.cast(nodes, command, kwargs)
                else:
                    mailbox.abcast(command, kwargs)
                return []
            if nodes:
                # Mailbox._broadcast stops after len(destination) replies
                bodies = mailbox.call(nodes, command, kwargs, timeout=timeout)
            else:
                wanted = limit() if callable(limit) else limit
                bodies = mailbox.multi_call(command, kwargs, timeout=timeout, limit=wanted or None)
        return [r for body in bodies or () for r in fmt.parse_replies(body)]

    def revoke(
        self,
        task_ids: Sequence[str],
        *,
        terminate: bool,
        signal: str | None,
        timeout: float,
        destination: Sequence[str] | None = None,
    ) -> list[fmt.Reply]:
        """``app.control.revoke(ids, terminate=..., signal=..., reply=timeout > 0, timeout=...)``."""
        return self.broadcast(
            "revoke",
            fmt.revoke_arguments(task_ids, terminate=terminate, signal=signal),
            reply=timeout > 0,
            timeout=timeout,
            destination=destination,
            action="send the revoke",
        )

    def revoked(self, *, timeout: float, destination: Sequence[str] | None = None) -> list[fmt.Reply]:
        """Every worker's revoked ids (``dump_revoked``, understood by every worker from 3.x to 5.7)."""
        return self.broadcast(
            "dump_revoked",
            {},
            reply=True,
            timeout=timeout,
            destination=destination,
            action="ask workers for revoked ids",
        )

    def bound_workers(self) -> list[str]:
        """Workers whose pidbox queue is bound to the control exchange, as the transport stores the bindings.

        Only where ``lists_bound_workers``: Redis keeps them in the set ``_kombu.binding.<namespace>.pidbox``,
        filesystem:// in its control folder; kombu's ``Channel.get_table`` reads either.
        """
        if not self.lists_bound_workers:
            return []
        exchange = fmt.pidbox_exchange(self.namespace)
        with self._mailbox("list bound workers") as mailbox:
            table = mailbox.connection.default_channel.get_table(exchange)
        names = (fmt.worker_of_pidbox_queue(str(row[-1]), self.namespace) for row in table or ())
        return sorted({n for n in names if n})

    def events(self, *, tick: float = 0.5) -> Generator[fmt.CeleryEvent | None, None, None]:
        """Celery's event stream, as ``celery events`` receives it; None after each ``tick`` s without one.

        A queue of our own (``taskctl.events.<uuid>``: auto-delete, exclusive, message TTL 5 s, expires 60 s, as
        Celery's EventReceiver declares it) bound to the ``celeryev`` exchange (Celery's event_exchange) with ``#``. Celery publishes
        events to a topic exchange, except on Redis where it uses fanout (celery.events.event.get_exchange).
        """
        Exchange, Queue, Consumer = _kombu_entities()
        pending: list[fmt.CeleryEvent] = []

        def on_message(body: Any, message: Any) -> None:
            pending.extend(fmt.parse_events(body))

        with self._mailbox("receive events") as mailbox:
            conn = mailbox.connection
            exchange_type = "fanout" if conn.transport.driver_type == "redis" else "topic"
            exchange = Exchange(self.event_exchange, type=exchange_type, durable=True, auto_delete=False)
            queue = Queue(
                f"taskctl.events.{uuid.uuid4()}",
                exchange=exchange,
                routing_key="#",
                auto_delete=True,
                durable=False,
                exclusive=True,
                message_ttl=EVENT_QUEUE_TTL,
                expires=EVENT_QUEUE_EXPIRES,
            )
            with Consumer(conn.default_channel, queues=[queue], callbacks=[on_message], accept=["json"], no_ack=True):
                while True:
                    try:
                        conn.drain_events(timeout=tick)
                    except TimeoutError:
                        if not pending:
                            yield None
                    while pending:
                        yield pending.pop(0)
