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

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from taskctl import events
from taskctl.backends.base import Delivery, QueueCounts
from taskctl.backends.sqs_consume import SqsPublisher, SqsReceiver
from taskctl.backends.sqs_format import SQS_BATCH, decode_envelope, entity_name
from taskctl.errors import (
    ConflictError,
    NotFoundError,
    OperationError,
    TaskctlError,
    UnavailableError,
    UsageError,
)
from taskctl.urls import mask, mask_text, parse

if TYPE_CHECKING:
    from taskctl.models import BrokerQueue

DEFAULT_VISIBILITY = 120
#: seconds a peek hides what it received if releasing it fails
PEEK_VISIBILITY = 30
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
