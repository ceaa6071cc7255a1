"""Receiving from and sending to SQS for the transfer engine: SqsReceiver (Getter and Consumer), SqsPublisher.

Receive ten, hand over, delete in tens only after the commit (see taskctl.backends.sqs_broker)."""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from taskctl.backends.base import Delivery
from taskctl.backends.sqs_format import BATCH_BYTES, SQS_BATCH, encode_envelope
from taskctl.errors import (
    OperationError,
    TaskctlError,
)
from taskctl.formats.message import RawMessage
from taskctl.urls import mask_text

if TYPE_CHECKING:
    from taskctl.backends.sqs_broker import SqsBroker


class SqsReceiver:
    """The Getter and Consumer of taskctl.backends.base on one queue: ReceiveMessage of ten, DeleteMessageBatch.

    As a Consumer it pauses (``next`` returns None) once the oldest message it holds has used half its
    visibility timeout: the transfer engine then commits and deletes, before SQS could hand that message to
    someone else.
    """

    def __init__(self, broker: SqsBroker, queue: str, url: str) -> None:
        self.broker, self.queue, self.url = broker, queue, url
        self.pending: deque[tuple[Delivery, float]] = deque()
        #: receipt handles handed out and not yet deleted, in order, with when they were received
        self.unacked: deque[tuple[str, float]] = deque()
        self.hold = broker.visibility / 2

    def _fill(self, wait: int) -> None:
        got = self.broker.receive(self.queue, self.url, SQS_BATCH, wait=wait, visibility=self.broker.visibility)
        now = time.monotonic()
        for m in got:
            self.pending.append((self.broker.to_delivery(m), now))

    def _take(self) -> Delivery | None:
        if not self.pending:
            return None
        d, at = self.pending.popleft()
        self.unacked.append((str(d.tag), at))
        return d

    def get(self) -> Delivery | None:
        """The next message; None when a one-second long poll finds none."""
        if not self.pending:
            self._fill(1)
        return self._take()

    def next(self, timeout: float) -> Delivery | None:
        """The next message, or None after about TIMEOUT s (whole seconds: SQS long polling) with none."""
        if self.unacked and time.monotonic() - self.unacked[0][1] > self.hold:
            return None  # commit first: the oldest held message is half-way to visible again
        if not self.pending:
            self._fill(max(1, math.ceil(timeout)) if timeout > 0 else 0)
        return self._take()

    def ack_upto(self, delivery: Delivery) -> int:
        """Delete DELIVERY and every message handed out before it, in tens; how many."""
        handles: list[str] = []
        while self.unacked:
            h, _ = self.unacked.popleft()
            handles.append(h)
            if h == delivery.tag:
                break
        self.broker.delete(self.queue, self.url, handles)
        return len(handles)

    def ack_one(self, delivery: Delivery) -> None:
        self.broker.delete(self.queue, self.url, [str(delivery.tag)])
        self.unacked = deque(x for x in self.unacked if x[0] != delivery.tag)

    def close(self) -> None:
        """Release every message received and not deleted (handed out or not), so it is visible at once."""
        handles = [h for h, _ in self.unacked] + [str(d.tag) for d, _ in self.pending]
        self.unacked.clear()
        self.pending.clear()
        if handles:
            self.broker.release(self.queue, self.url, handles)


class SqsPublisher:
    """SendMessageBatch in tens per destination; a batch is sent when full and on ``flush``, which returns once
    SQS accepted every message so far (the response is the confirm) or raises."""

    def __init__(self, broker: SqsBroker) -> None:
        self.broker = broker
        self.sent = 0
        self._confirmed = 0
        self._buffers: dict[str, list[dict[str, Any]]] = {}
        self._bytes: dict[str, int] = {}
        #: the first send that failed: every later flush raises, so the source is never deleted past it
        self._failure: str | None = None

    @property
    def confirmed(self) -> int:
        return self._confirmed

    def check_destination(self, exchange: str, routing_key: str) -> None:
        """NotFoundError unless the queue ROUTING_KEY exists (SQS has no exchanges: the routing key names it)."""
        self.broker.queue_url(routing_key)

    def publish(self, raw: RawMessage, exchange: str, routing_key: str) -> None:
        """Queue RAW for the queue ROUTING_KEY as kombu's SQS transport would send it; sent ten at a time."""
        queue = routing_key
        body = encode_envelope(raw, exchange, routing_key, b64=self.broker.b64)
        entry: dict[str, Any] = {"Id": str(len(self._buffers.get(queue, ()))), "MessageBody": body}
        if self.broker.sqs_name(queue).endswith(".fifo"):
            props = raw.properties or {}
            entry["MessageGroupId"] = str(props.get("MessageGroupId") or "default")
            entry["MessageDeduplicationId"] = str(props.get("MessageDeduplicationId") or uuid.uuid4())
        size = len(body)
        buf = self._buffers.setdefault(queue, [])
        if buf and self._bytes.get(queue, 0) + size > BATCH_BYTES:
            self._send(queue)
            buf = self._buffers.setdefault(queue, [])
            entry["Id"] = "0"
        buf.append(entry)
        self._bytes[queue] = self._bytes.get(queue, 0) + size
        self.sent += 1
        if len(buf) >= SQS_BATCH:
            self._send(queue)

    def _send(self, queue: str) -> None:
        entries = self._buffers.pop(queue, [])
        self._bytes.pop(queue, None)
        if not entries:
            return
        try:
            url = self.broker.queue_url(queue)
            resp = self.broker.call(queue, f"send to {queue!r}", "send_message_batch", QueueUrl=url, Entries=entries)
        except TaskctlError as exc:
            self._failure = self._failure or exc.message
            raise
        failed = resp.get("Failed") or []
        self._confirmed += len(resp.get("Successful") or [])
        if failed:
            f = failed[0]
            text = mask_text(str(f.get("Message") or ""), self.broker.url)
            self._failure = self._failure or f"SQS refused a message sent to {queue!r}: {f.get('Code')}: {text}"
            raise OperationError(
                f"SQS refused {len(failed)} of {len(entries)} messages sent to {queue!r}: {f.get('Code')}: {text}",
                hint="the source messages were not deleted and stay where they were",
            )

    def flush(self, timeout: float = 60.0) -> None:
        """Send what is buffered; raises if any message since the start was refused (or its request failed), so
        nothing is deleted from the source after a failed send."""
        for queue in list(self._buffers):
            self._send(queue)
        if self._failure:
            raise OperationError(
                f"publish failed: {self._failure}", hint="the source messages were not deleted and stay where they were"
            )
