"""Publishing over kombu: raw messages as they were received, with publisher confirms in a window.

A second connection of its own (publishing on a consuming connection re-enters its callbacks), confirms in a
window of at most WINDOW unconfirmed messages, and ``mandatory`` so an unroutable message is an error, not a
silent ack. :attr:`Publisher.confirmed` counts what the broker confirmed: summaries count that, never what
was merely sent. kombu's virtual transports store synchronously: published is confirmed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from taskctl.backends.kombu_consume import VIRTUAL_ENVELOPE, close_channel
from taskctl.errors import NotFoundError, OperationError

if TYPE_CHECKING:
    from taskctl.backends.kombu_broker import KombuBroker
    from taskctl.formats.message import RawMessage

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


class Publisher:
    """Publish raw messages with publisher confirms, at most WINDOW unconfirmed; ``flush`` waits for all."""

    def __init__(self, broker: KombuBroker, conn: Any, window: int) -> None:
        self.broker, self.conn, self.window = broker, conn, window
        self.channel = broker.channel(conn)
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
            with broker.op("enable publisher confirms"):
                self.channel.confirm_select()

    @property
    def confirmed(self) -> int:
        """Messages the broker confirmed (in order, so the first this many are safe)."""
        return self._confirmed_upto

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
        with self.broker.op(f"publish to {exchange or routing_key!r}"):
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
                props = {k: v for k, v in raw.properties.items() if k not in VIRTUAL_ENVELOPE}
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
        """Read confirms for up to TIMEOUT s in short waits (a Ctrl-C is handled between them)."""
        deadline = time.monotonic() + timeout
        start = self.outstanding
        while self.outstanding >= start:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OperationError(f"no publisher confirm from the broker within {timeout:g}s")
            try:
                self.conn.drain_events(timeout=min(left, 0.5))
            except TimeoutError:
                continue
            return

    def flush(self, timeout: float = 60.0) -> None:
        """Return once the broker confirmed every message published so far; raises if any was refused."""
        deadline = time.monotonic() + timeout
        with self.broker.op("wait for publisher confirms"):
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
        close_channel(self.channel)
