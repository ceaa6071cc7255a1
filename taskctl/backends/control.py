"""Celery remote control over kombu: broadcast a pidbox request and collect the workers' replies.

Connection string: any kombu broker URL (``amqp://``, ``redis://``, ``filesystem://`` with the configured
transport options). Topology as Celery 5.7's ``app.control`` (celery-formats §6.1): requests go to the fanout
exchange ``celery.pidbox`` (declared non-durable, as workers declare it), replies come to an exclusive,
auto-delete queue ``<oid>.reply.celery.pidbox`` bound to ``reply.celery.pidbox`` with routing key ``<oid>``,
declared **before** the request is published so no reply is missed.

Capabilities: broadcast everywhere kombu has a fanout exchange (AMQP, Redis, filesystem; not SQS ≤5.6).

Errors raised: UnavailableError (cannot connect, refused, bad credentials; the URL is masked), OperationError
(the broker failed the operation).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from taskctl.errors import OperationError, TaskctlError, UnavailableError
from taskctl.formats import control as fmt
from taskctl.urls import mask, mask_text

if TYPE_CHECKING:
    from taskctl.config import Settings

#: seconds; Celery's control_queue_ttl / control_queue_expires defaults
REPLY_QUEUE_TTL = 300.0
REPLY_QUEUE_EXPIRES = 10.0


def _kombu() -> Any:
    """kombu, imported on first use (``--help`` and commands without a broker never load it)."""
    import kombu

    return kombu


def _describe(exc: BaseException, url: str) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionRefusedError) or "refused" in text.lower():
        text = "connection refused"
    return mask_text(text, url)


def translate(exc: BaseException, url: str, action: str) -> TaskctlError:
    """A kombu/py-amqp/redis exception as the TaskctlError a user sees (URL masked)."""
    if isinstance(exc, TaskctlError):
        return exc
    name = type(exc).__name__
    text = _describe(exc, url)
    where = mask(url)
    if name in ("AccessRefused", "AuthenticationError", "AuthenticationWrongNumberOfArgsError") or (
        "ACCESS_REFUSED" in text or "NOAUTH" in text or "WRONGPASS" in text
    ):
        return UnavailableError(
            f"cannot {action}: the broker {where} refused the credentials",
            hint="check the user and password in the broker URL",
        )
    if isinstance(exc, OSError | TimeoutError) or name in (
        "OperationalError",
        "ConnectionError",
        "RecoverableConnectionError",
        "ConnectionForced",
        "TimeoutError",
        "BusyLoadingError",
    ):
        return UnavailableError(
            f"cannot {action}: broker {where} unreachable: {text}",
            hint="check --broker (or TASKCTL_BROKER_URL / CELERY_BROKER_URL) and that the broker is running",
        )
    return OperationError(f"cannot {action} on broker {where}: {name}: {text}")


class KombuControl:
    """Remote control of Celery workers through the broker (kombu pidbox, as ``app.control`` does)."""

    #: requests reach workers through a fanout exchange; False where the transport has none
    supports_broadcast = True

    def __init__(
        self,
        url: str,
        *,
        transport_options: dict[str, Any] | None = None,
        namespace: str = fmt.DEFAULT_NAMESPACE,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.transport_options = dict(transport_options or {})
        self.namespace = namespace
        self.connect_timeout = connect_timeout

    @classmethod
    def from_settings(cls, url: str, settings: Settings) -> KombuControl:
        namespace = str(settings.extra.get("control_exchange") or fmt.DEFAULT_NAMESPACE)
        return cls(url, transport_options=settings.transport_options, namespace=namespace)

    @contextmanager
    def _connection(self, action: str) -> Iterator[Any]:
        opts = dict(self.transport_options)
        if self.url.split("://", 1)[0].lower() in ("amqp", "pyamqp", "amqps"):
            # named, so operators can tell taskctl's connection from a worker's in RabbitMQ's list
            props = dict(opts.get("client_properties") or {})
            props.setdefault("connection_name", f"taskctl {action}")
            opts["client_properties"] = props
        conn = _kombu().Connection(
            self.url,
            transport_options=opts,
            connect_timeout=self.connect_timeout,
        )
        try:
            try:
                conn.ensure_connection(max_retries=1, timeout=self.connect_timeout)
            except Exception as exc:
                raise translate(exc, self.url, action) from None
            try:
                yield conn
            except TaskctlError:
                raise
            except Exception as exc:
                raise translate(exc, self.url, action) from None
        finally:
            try:
                conn.release()
            except Exception:  # closing a broken connection must not hide the real error
                pass

    def broadcast(
        self,
        build: Callable[[str | None], fmt.ControlRequest],
        *,
        reply: bool,
        timeout: float,
        action: str = "broadcast to workers",
    ) -> list[fmt.Reply]:
        """Publish the request ``build(reply_routing_key)`` returns; collect matching replies for ``timeout`` s."""
        kombu = _kombu()
        Consumer, Exchange, Producer, Queue = kombu.Consumer, kombu.Exchange, kombu.Producer, kombu.Queue
        with self._connection(action) as conn:
            channel = conn.channel()
            oid = str(uuid.uuid4()) if reply else None
            request = build(oid)
            replies: list[fmt.Reply] = []
            queue = None
            consumer = None
            if reply and oid is not None and request.ticket is not None:
                ticket = request.ticket
                reply_exchange = Exchange(
                    fmt.reply_exchange_name(self.namespace), type="direct", durable=False, delivery_mode="transient"
                )
                queue = Queue(
                    fmt.reply_queue_name(oid, self.namespace),
                    exchange=reply_exchange,
                    routing_key=oid,
                    durable=False,
                    exclusive=True,
                    auto_delete=True,
                    expires=REPLY_QUEUE_EXPIRES,
                    message_ttl=REPLY_QUEUE_TTL,
                )
                queue(channel).declare()

                def on_message(body: Any, message: Any) -> None:
                    if fmt.reply_matches(message.headers, ticket):
                        replies.extend(fmt.parse_replies(body))

                consumer = Consumer(channel, [queue], accept=["json"], no_ack=True, callbacks=[on_message])
                consumer.consume()
            exchange = Exchange(request.exchange, type="fanout", durable=False, delivery_mode="transient")
            exchange(channel).declare()
            # published by exchange *name*, as Mailbox._publish does (so delivery_mode is the default, 2)
            Producer(channel, auto_declare=False).publish(
                request.body,
                exchange=request.exchange,
                routing_key="",
                headers=request.headers,
                serializer="json",
            )
            if consumer is None or queue is None:
                return replies
            deadline = time.monotonic() + timeout
            try:
                while request.limit is None or len(replies) < request.limit:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        conn.drain_events(timeout=left)
                    except TimeoutError:
                        break
            finally:
                try:
                    consumer.cancel()
                    channel.after_reply_message_received(queue.name)
                except Exception:  # the queue is exclusive/auto-delete anyway
                    pass
            return replies

    def revoke(
        self,
        task_ids: Sequence[str],
        *,
        terminate: bool,
        signal: str | None,
        timeout: float,
        destination: Sequence[str] | None = None,
    ) -> list[fmt.Reply]:
        """``app.control.revoke(ids, terminate=..., signal=..., reply=True, timeout=...)``."""
        return self.broadcast(
            lambda oid: fmt.revoke_request(
                task_ids,
                terminate=terminate,
                signal=signal,
                destination=destination,
                reply_routing_key=oid,
                timeout=timeout,
                namespace=self.namespace,
            ),
            reply=timeout > 0,
            timeout=timeout,
            action="send the revoke",
        )

    def revoked(self, *, timeout: float, destination: Sequence[str] | None = None) -> list[fmt.Reply]:
        """Every worker's revoked ids (``dump_revoked``)."""
        return self.broadcast(
            lambda oid: fmt.revoked_request(
                reply_routing_key=oid or "", destination=destination, timeout=timeout, namespace=self.namespace
            ),
            reply=True,
            timeout=timeout,
            action="ask workers for revoked ids",
        )
