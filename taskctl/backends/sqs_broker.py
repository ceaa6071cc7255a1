"""Amazon SQS as Celery uses it, with boto3 directly: receive and delete in tens, never one request a message.

The URL and transport options are read as kombu's SQS transport (``kombu/transport/SQS``) reads them:

- ``sqs://KEY:SECRET@`` (percent-encoded), or ``sqs://`` for boto3's own credential chain; a host
  (``sqs://KEY:SECRET@localhost:9324``) is the endpoint, ``http://`` unless the ``is_secure`` option is true;
- ``region`` (else boto3's default region, else ``us-east-1``), ``queue_name_prefix``, ``predefined_queues``
  (name -> ``url`` and optional ``region``/``access_key_id``/``secret_access_key``), ``sqs_base64_encoding``
  (default true), ``client-config`` (botocore Config keywords);
- a Celery queue name becomes an SQS name as kombu's ``canonical_queue_name`` makes it: the prefix, then ``.``
  -> ``-`` and other punctuation but ``-``/``_`` -> ``_`` (a ``.fifo`` suffix kept).

A message is kombu's virtual-transport JSON (``body`` base64, ``properties.delivery_info``...) and the SQS body
is that JSON in base64 (``sqs_base64_encoding``); reading accepts both, as kombu does.

At least once: a receive hides messages for ``taskctl_visibility_timeout`` seconds (default 120); they are deleted
(DeleteMessageBatch) only after the caller committed them. A process killed in between loses nothing: SQS makes
the undeleted messages visible again when the timeout runs out. A closing consumer releases what it holds at
once (visibility 0).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import re
import string
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from taskctl import events
from taskctl.backends.base import Delivery, QueueCounts
from taskctl.errors import (
    ConflictError,
    NotFoundError,
    OperationError,
    TaskctlError,
    UnavailableError,
    UsageError,
)
from taskctl.formats.message import RawMessage
from taskctl.urls import mask, mask_text, parse

if TYPE_CHECKING:
    from taskctl.models import BrokerQueue

#: kombu's CHARS_REPLACE_TABLE: '.' -> '-', punctuation other than '-' and '_' -> '_'
CHARS_REPLACE_TABLE = {ord(c): 0x5F for c in string.punctuation if c not in "-_."}
CHARS_REPLACE_TABLE[0x2E] = 0x2D
#: SQS returns, sends and deletes at most ten messages a request
SQS_BATCH = 10
#: a SendMessageBatch request may carry at most this many bytes of bodies (the classic SQS limit)
BATCH_BYTES = 256 * 1024
#: seconds a drain, move or requeue keeps received messages hidden before it deletes them
DEFAULT_VISIBILITY = 120
#: seconds a peek hides what it received if releasing it fails
PEEK_VISIBILITY = 30
#: kombu's virtual-transport keys in ``properties`` that are envelope, not message
VIRTUAL_ENVELOPE = ("body_encoding", "delivery_tag", "delivery_info")
B64_RE = re.compile(rb"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
NOT_FOUND = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "ExpiredToken",
    "InvalidSecurity",
}
THROTTLED = {"Throttling", "ThrottlingException", "RequestThrottled", "OverLimit"}
PURGE_IN_PROGRESS = {"AWS.SimpleQueueService.PurgeQueueInProgress", "PurgeQueueInProgress"}
#: seconds SQS makes a queue wait between two purges
PURGE_INTERVAL = 60


def entity_name(name: str) -> str:
    """A queue name as kombu makes it legal for SQS (``my.queue`` -> ``my-queue``)."""
    if name.endswith(".fifo"):
        return name[: -len(".fifo")].translate(CHARS_REPLACE_TABLE) + ".fifo"
    return name.translate(CHARS_REPLACE_TABLE)


def _b64_or_raw(raw: bytes) -> bytes:
    """kombu's ``_optional_b64_decode``: the decoded bytes where RAW is canonical base64 of UTF-8 text."""
    candidate = raw.strip()
    if not B64_RE.fullmatch(candidate):
        return raw
    try:
        decoded = base64.b64decode(candidate, validate=True)
    except (binascii.Error, ValueError):
        return raw
    if base64.b64encode(decoded).rstrip(b"=") != candidate.rstrip(b"="):
        return raw
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    return decoded


def decode_envelope(body: str, receive_count: int = 1) -> RawMessage:
    """An SQS message body (as kombu's SQS transport writes it) as the message Celery published.

    Untrusted: anything that is not kombu's envelope is returned as the body itself, never an error.
    """
    text_bytes = _b64_or_raw(body.encode("utf-8", "surrogateescape"))
    redelivered = receive_count > 1
    try:
        from kombu.utils.json import loads

        payload = loads(text_bytes.decode("utf-8"))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, RecursionError, UnicodeError, OverflowError):
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("properties"), dict):
        return RawMessage(body=text_bytes, redelivered=redelivered)
    props = dict(payload["properties"])
    found = props.get("delivery_info")
    info: dict[str, Any] = found if isinstance(found, dict) else {}
    raw_body = payload.get("body")
    try:
        if isinstance(raw_body, str) and props.get("body_encoding") == "base64":
            data = base64.b64decode(raw_body)
        elif isinstance(raw_body, str):
            data = raw_body.encode("utf-8", "surrogateescape")
        elif isinstance(raw_body, bytes):
            data = raw_body
        else:
            data = b"" if raw_body is None else json.dumps(raw_body).encode()
    except (binascii.Error, ValueError, TypeError, RecursionError):
        return RawMessage(body=text_bytes, redelivered=redelivered)
    headers = payload.get("headers")
    ctype, cenc = payload.get("content-type"), payload.get("content-encoding")
    return RawMessage(
        body=data,
        content_type=ctype if isinstance(ctype, str) else None,
        content_encoding=cenc if isinstance(cenc, str) else None,
        headers=dict(headers) if isinstance(headers, dict) else {},
        properties={k: v for k, v in props.items() if k not in VIRTUAL_ENVELOPE},
        exchange=str(info.get("exchange") or ""),
        routing_key=str(info.get("routing_key") or ""),
        redelivered=redelivered,
    )


def encode_envelope(raw: RawMessage, exchange: str, routing_key: str, *, b64: bool = True) -> str:
    """RAW as the body kombu's SQS transport sends (``Channel._put``): its virtual JSON, base64 by default."""
    from kombu.utils.json import dumps

    props = {k: v for k, v in (raw.properties or {}).items() if k not in VIRTUAL_ENVELOPE}
    props.setdefault("priority", 0)
    props["body_encoding"] = "base64"
    props["delivery_tag"] = str(uuid.uuid4())
    props["delivery_info"] = {"exchange": exchange, "routing_key": routing_key}
    payload = {
        "body": base64.b64encode(raw.body).decode("ascii"),
        "content-encoding": raw.content_encoding,
        "content-type": raw.content_type,
        "headers": dict(raw.headers or {}),
        "properties": props,
    }
    text: str = dumps(payload)  # type: ignore[no-untyped-call]
    return base64.b64encode(text.encode("utf-8")).decode("ascii") if b64 else text


def _name_of(url_or_arn: str) -> str:
    """The queue name at the end of a queue URL or ARN."""
    return url_or_arn.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class SqsBroker:
    """The Broker contract on SQS (see taskctl.backends.base.Broker)."""

    #: a received message is only hidden: it comes back unless deleted, so a killed client loses nothing
    acks = True
    #: SQS does not tell how many consumers a queue has
    counts_consumers = False
    #: GetQueueUrl tells a missing queue from an empty one
    missing_is_empty = False
    has_management = False
    peek_moves_to_tail = False
    #: messages a filtered pass does not take are published back (SQS keeps no order to return them to)
    returns_in_place = False
    #: ListQueues (or ``predefined_queues``)
    lists_queues = True
    #: every receive counts toward the redrive policy's ``maxReceiveCount``: a peek is a delivery
    peek_counts_deliveries = True
    #: a dead-letter queue names its sources (ListDeadLetterSourceQueues)
    knows_dead_letter_sources = True
    #: unacked messages are hidden by SQS, not data a client reads (no ``held``/``restore_held``)
    holds_unacked = False
    #: SQS's classic message size limit (a queue's ``MaximumMessageSize`` may be set lower)
    max_message_bytes: int | None = 262_144
    scheme = "sqs"

    def __init__(self, url: str, transport_options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.transport_options = dict(transport_options or {})
        opts = self.transport_options
        p = parse(url)
        self.access_key, self.secret_key = p.username or None, p.password or None
        self.is_secure = bool(opts.get("is_secure"))
        self.endpoint_url: str | None = None
        if p.hostname:
            port = f":{p.port}" if p.port is not None else ""
            self.endpoint_url = f"{'https' if self.is_secure else 'http'}://{p.hostname}{port}"
        self.prefix = str(opts.get("queue_name_prefix") or "")
        self.predefined: dict[str, Any] = dict(opts.get("predefined_queues") or {})
        self.b64 = bool(opts.get("sqs_base64_encoding", True))
        try:
            self.visibility = int(float(opts.get("taskctl_visibility_timeout") or DEFAULT_VISIBILITY))
        except (TypeError, ValueError, OverflowError):
            self.visibility = -1
        if not 2 <= self.visibility <= 43200:
            raise UsageError("transport option taskctl_visibility_timeout must be 2 to 43200 seconds (SQS's limit)")
        self._region: str | None = opts.get("region") or None
        self._clients: dict[tuple[str | None, str | None, str | None], Any] = {}
        self._urls: dict[str, str] = {}

    @classmethod
    def from_url(cls, url: str, *, transport_options: dict[str, Any] | None = None) -> SqsBroker:
        return cls(url, transport_options)

    @property
    def masked_url(self) -> str:
        return mask(self.url)

    @property
    def vhost(self) -> str:
        return self.region

    @property
    def region(self) -> str:
        if self._region is None:
            import boto3

            self._region = boto3.session.Session().region_name or "us-east-1"
        return self._region

    # -- clients, names and errors ------------------------------------------------------------------------------

    def client(self, sqs_name: str | None = None) -> Any:
        """The boto3 SQS client for a queue (a predefined queue may have a region and keys of its own)."""
        entry = self.predefined.get(sqs_name or "")
        q: dict[str, Any] = entry if isinstance(entry, dict) else {}
        key = (q.get("region", self.region), q.get("access_key_id", self.access_key), q.get("secret_access_key"))
        key = (key[0], key[1], key[2] or self.secret_key)
        c = self._clients.get(key)
        if c is None:
            with self.op("connect to SQS"):
                import boto3
                from botocore.config import Config

                session = boto3.session.Session(
                    region_name=key[0], aws_access_key_id=key[1], aws_secret_access_key=key[2]
                )
                config = Config(
                    connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
                ).merge(Config(**(self.transport_options.get("client-config") or {})))
                kwargs: dict[str, Any] = {"config": config}
                if self.endpoint_url:
                    kwargs["endpoint_url"] = self.endpoint_url
                c = self._clients[key] = session.client("sqs", **kwargs)
        return c

    def sqs_name(self, queue: str) -> str:
        """kombu's ``canonical_queue_name``: prefix, then legal characters."""
        return entity_name(self.prefix + queue)

    def celery_name(self, sqs_name: str) -> str:
        """The name to give taskctl for an SQS queue name (the prefix taken off)."""
        return sqs_name[len(self.prefix) :] if self.prefix and sqs_name.startswith(self.prefix) else sqs_name

    def translate(self, exc: BaseException, what: str) -> TaskctlError:
        """A botocore error as a TaskctlError (exit codes of taskctl.errors); URLs masked."""
        from botocore import exceptions as bx

        where = self.masked_url
        if isinstance(exc, bx.ClientError):
            err: dict[str, Any] = dict(exc.response.get("Error") or {})
            code = str(err.get("Code") or "")
            text = mask_text(str(err.get("Message") or code), self.url)
            meta: dict[str, Any] = dict(exc.response.get("ResponseMetadata") or {})
            status = meta.get("HTTPStatusCode")
            if code in NOT_FOUND:
                return NotFoundError(f"{what}: the queue does not exist on {where}")
            if code in PURGE_IN_PROGRESS:
                return ConflictError(f"{what}: {text}")
            if code in DENIED or status in (401, 403):
                return UnavailableError(
                    f"{what}: access denied by SQS at {where}: {code}: {text}",
                    hint="check the key and secret in the broker URL (sqs://KEY:SECRET@, percent-encoded) "
                    "or the AWS credentials in the environment",
                )
            if code in THROTTLED:
                return UnavailableError(f"{what}: SQS throttled the request: {text}", hint="run again later")
            return OperationError(f"{what}: {code}: {text}")
        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
            return UnavailableError(
                f"{what}: no AWS credentials for {where}",
                hint="give them in the broker URL (sqs://KEY:SECRET@) or the environment (AWS_ACCESS_KEY_ID...)",
            )
        if isinstance(exc, bx.NoRegionError):
            return UsageError(f"{what}: no AWS region", hint="set the 'region' transport option")
        if isinstance(exc, bx.ParamValidationError):
            return UsageError(f"{what}: {mask_text(str(exc), self.url)}")
        if isinstance(exc, bx.EndpointConnectionError | bx.ConnectionError | bx.HTTPClientError | OSError):
            return UnavailableError(
                f"{what}: cannot reach SQS at {where}: {mask_text(str(exc), self.url)}",
                hint="check the broker URL's host and port, and the network",
            )
        return OperationError(f"{what}: {type(exc).__name__}: {mask_text(str(exc), self.url)}")

    @contextmanager
    def op(self, what: str) -> Iterator[None]:
        """Translate any SDK exception raised inside into a TaskctlError about WHAT."""
        try:
            yield
        except TaskctlError:
            raise
        except Exception as exc:
            raise self.translate(exc, what) from None

    def queue_url(self, queue: str) -> str:
        """The URL of QUEUE (a Celery queue name); NotFoundError (exit 3) when it does not exist."""
        name = self.sqs_name(queue)
        url = self._urls.get(name)
        if url is not None:
            return url
        also = f" (SQS name {name!r})" if name != queue else ""
        if self.predefined:
            q = self.predefined.get(name)
            if not isinstance(q, dict) or not q.get("url"):
                raise NotFoundError(
                    f"queue {queue!r}{also} is not in the predefined_queues transport option",
                    hint="only predefined queues are used when predefined_queues is set",
                )
            url = str(q["url"])
        else:
            try:
                with self.op(f"queue {queue!r}{also}"):
                    url = str(self.client(name).get_queue_url(QueueName=name)["QueueUrl"])
            except NotFoundError:
                raise NotFoundError(
                    f"queue {queue!r}{also} does not exist on {self.masked_url}",
                    hint="list queues with 'taskctl queue list'",
                ) from None
        self._urls[name] = url
        return url

    def call(self, queue: str, what: str, method: str, **kwargs: Any) -> Any:
        """One SQS request about QUEUE, errors translated."""
        with self.op(what):
            return getattr(self.client(self.sqs_name(queue)), method)(**kwargs)

    # -- looking ------------------------------------------------------------------------------------------------

    def attributes(self, queue: str) -> dict[str, str]:
        url = self.queue_url(queue)
        resp = self.call(queue, f"queue {queue!r}", "get_queue_attributes", QueueUrl=url, AttributeNames=["All"])
        return dict(resp.get("Attributes") or {})

    def _redrive(self, attrs: Mapping[str, str]) -> tuple[str | None, int | None]:
        """The dead-letter queue (taskctl's name for it) and maxReceiveCount of a queue's redrive policy."""
        try:
            policy = json.loads(attrs.get("RedrivePolicy") or "null")
        except ValueError:
            return None, None
        if not isinstance(policy, dict):
            return None, None
        arn = policy.get("deadLetterTargetArn")
        dlq = self.celery_name(_name_of(str(arn))) if arn else None
        limit = policy.get("maxReceiveCount")
        return dlq, _int(limit) if limit is not None else None

    def stats(self, queue: str) -> QueueCounts:
        """Visible, in flight and delayed messages and the redrive policy (GetQueueAttributes)."""
        attrs = self.attributes(queue)
        dlq, limit = self._redrive(attrs)
        return QueueCounts(
            queue,
            _int(attrs.get("ApproximateNumberOfMessages")),
            None,
            in_flight=_int(attrs.get("ApproximateNumberOfMessagesNotVisible")),
            delayed=_int(attrs.get("ApproximateNumberOfMessagesDelayed")),
            dead_letter_queue=dlq,
            max_receive_count=limit,
        )

    def delivery_limit(self, queue: str) -> int | None:
        """The redrive policy's maxReceiveCount (None: no redrive policy); NotFoundError when missing."""
        return self._redrive(self.attributes(queue))[1]

    def dead_letter_sources(self, queue: str) -> list[str]:
        """The queues whose redrive policy sends their dead letters to QUEUE."""
        url = self.queue_url(queue)
        out: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"QueueUrl": url, "MaxResults": 1000}
            if token:
                kwargs["NextToken"] = token
            resp = self.call(queue, f"dead-letter sources of {queue!r}", "list_dead_letter_source_queues", **kwargs)
            out += [self.celery_name(_name_of(u)) for u in resp.get("queueUrls") or []]
            token = resp.get("NextToken")
            if not token:
                return sorted(out)

    def iter_queues(self) -> Iterator[BrokerQueue]:
        """Every queue under the prefix (ListQueues, paged), or the predefined ones."""
        from taskctl.models import BrokerQueue

        if self.predefined:
            names = sorted(self.celery_name(str(n)) for n in self.predefined)
        else:
            names = []
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"MaxResults": 1000}
                if self.prefix:
                    kwargs["QueueNamePrefix"] = self.prefix
                if token:
                    kwargs["NextToken"] = token
                with self.op("list queues"):
                    resp = self.client().list_queues(**kwargs)
                for u in resp.get("QueueUrls") or []:
                    name = _name_of(u)
                    self._urls.setdefault(name, u)
                    names.append(self.celery_name(name))
                token = resp.get("NextToken")
                if not token:
                    break
            names.sort()
        for name in names:
            try:
                attrs = self.attributes(name)
            except NotFoundError:
                continue  # deleted since it was listed
            dlq, limit = self._redrive(attrs)
            visible = _int(attrs.get("ApproximateNumberOfMessages"))
            in_flight = _int(attrs.get("ApproximateNumberOfMessagesNotVisible"))
            yield BrokerQueue(
                queue=name,
                vhost=self.region,
                messages=visible + in_flight,
                ready=visible,
                unacked=in_flight,
                consumers=None,
                idle_since=None,
                idle_seconds=None,
                type="fifo" if attrs.get("FifoQueue") == "true" else "standard",
                durable=True,
                auto_delete=False,
                exclusive=False,
                expires=None,
                arguments=dict(attrs),
                delivery_limit=limit,
                delayed=_int(attrs.get("ApproximateNumberOfMessagesDelayed")),
                dead_letter_queue=dlq,
            )

    def receive(self, queue: str, url: str, n: int, *, wait: int, visibility: int) -> list[dict[str, Any]]:
        """One ReceiveMessage of up to N (<= 10) messages, hidden for VISIBILITY seconds."""
        resp = self.call(
            queue,
            f"receive from {queue!r}",
            "receive_message",
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(n, SQS_BATCH)),
            WaitTimeSeconds=max(0, min(wait, 20)),
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return list(resp.get("Messages") or [])

    def to_delivery(self, m: Mapping[str, Any]) -> Delivery:
        count = _int((m.get("Attributes") or {}).get("ApproximateReceiveCount") or 1)
        return Delivery(decode_envelope(str(m.get("Body") or ""), count), str(m["ReceiptHandle"]))

    def release(self, queue: str, url: str, handles: list[str]) -> None:
        """Make received messages visible again at once (ChangeMessageVisibilityBatch 0), in tens; never raises:
        what is not released comes back when its visibility timeout runs out."""
        failed = 0
        for i in range(0, len(handles), SQS_BATCH):
            entries = [
                {"Id": str(j), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for j, h in enumerate(handles[i : i + SQS_BATCH])
            ]
            try:
                resp = self.call(
                    queue, f"release on {queue!r}", "change_message_visibility_batch", QueueUrl=url, Entries=entries
                )
                failed += len(resp.get("Failed") or [])
            except TaskctlError:
                failed += len(entries)
        if failed:
            events.warn(f"{failed} messages of {queue!r} not released: they come back when their visibility ends")

    def delete(self, queue: str, url: str, handles: list[str]) -> None:
        """DeleteMessageBatch in tens; a handle SQS no longer accepts (received again elsewhere after its
        visibility ran out) leaves a duplicate, never a loss: warned about."""
        failed: list[str] = []
        for i in range(0, len(handles), SQS_BATCH):
            entries = [{"Id": str(j), "ReceiptHandle": h} for j, h in enumerate(handles[i : i + SQS_BATCH])]
            resp = self.call(queue, f"delete from {queue!r}", "delete_message_batch", QueueUrl=url, Entries=entries)
            failed += [str(f.get("Code")) for f in resp.get("Failed") or []]
        if failed:
            events.warn(
                f"{len(failed)} messages of {queue!r} could not be deleted ({failed[0]}): they stay in the queue "
                f"(their visibility timeout, {self.visibility}s, ran out: raise taskctl_visibility_timeout)"
            )

    def peek(self, queue: str, limit: int) -> list[Delivery]:
        """Up to LIMIT messages by ReceiveMessage, released at once (each receive counts toward maxReceiveCount)."""
        url = self.queue_url(queue)
        out: list[Delivery] = []
        handles: list[str] = []
        try:
            while len(out) < limit:
                got = self.receive(queue, url, limit - len(out), wait=1, visibility=PEEK_VISIBILITY)
                if not got:
                    break
                for m in got:
                    handles.append(str(m["ReceiptHandle"]))
                    out.append(self.to_delivery(m))
        finally:
            self.release(queue, url, handles)
        return out

    @contextmanager
    def getter(self, queue: str, purpose: str = "get") -> Iterator[SqsReceiver]:
        """Receive in tens, handed out one at a time; what is not deleted is released when it closes."""
        r = SqsReceiver(self, queue, self.queue_url(queue))
        try:
            yield r
        finally:
            r.close()

    @contextmanager
    def consume(self, queue: str, *, prefetch: int = 1000, purpose: str = "drain") -> Iterator[SqsReceiver]:
        """As ``getter``, waiting up to a second for messages (SQS long polling)."""
        with self.getter(queue, purpose) as r:
            yield r

    # -- changing -----------------------------------------------------------------------------------------------

    def purge(self, queue: str) -> int:
        """One PurgeQueue (every message goes: visible, in flight and delayed); returns how many were visible.

        SQS refuses a second purge of a queue within 60 s: ConflictError (exit 4) saying when it can run.
        """
        counts = self.stats(queue)
        url = self.queue_url(queue)
        try:
            self.call(queue, f"purge {queue!r}", "purge_queue", QueueUrl=url)
        except ConflictError:
            at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=PURGE_INTERVAL)
            raise ConflictError(
                f"queue {queue!r} was purged less than {PURGE_INTERVAL} s ago: SQS allows one purge a minute per queue",
                hint=f"run it again at {at:%H:%M:%S} UTC at the latest",
            ) from None
        return counts.messages + (counts.in_flight or 0) + (counts.delayed or 0)

    def delete_queue(self, queue: str, *, if_empty: bool = False) -> None:
        if if_empty:
            c = self.stats(queue)
            if c.messages or c.in_flight or c.delayed:
                raise ConflictError(f"queue {queue!r} is not empty")
        url = self.queue_url(queue)
        self.call(queue, f"delete queue {queue!r}", "delete_queue", QueueUrl=url)
        self._urls.pop(self.sqs_name(queue), None)

    def declare_queue(self, queue: str, **kwargs: Any) -> None:
        """Create a queue (tests, benchmarks and demos); ``attributes`` are CreateQueue's (RedrivePolicy...)."""
        name = self.sqs_name(queue)
        attrs = {k: str(v) for k, v in dict(kwargs.get("attributes") or {}).items()}
        if name.endswith(".fifo"):
            attrs.setdefault("FifoQueue", "true")
        resp = self.call(queue, f"declare queue {queue!r}", "create_queue", QueueName=name, Attributes=attrs)
        self._urls[name] = str(resp["QueueUrl"])

    def queue_arn(self, queue: str) -> str:
        return str(self.attributes(queue)["QueueArn"])

    @contextmanager
    def publisher(self, *, window: int = 1000, purpose: str = "publish") -> Iterator[SqsPublisher]:
        pub = SqsPublisher(self)
        yield pub


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
