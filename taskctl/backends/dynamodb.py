"""DynamoDB adapter: the botocore client, error translation, and table administration.

Connection string (as Celery 5.5+ reads it, see taskctl.urls.parse_dynamodb)::

    dynamodb://[KEY:SECRET@]REGION[:PORT]/TABLE?read=N&write=N&ttl_seconds=N

``localhost`` or an IP literal with a port as REGION means the endpoint ``http://HOST:PORT`` in us-east-1.
The ``endpoint_url``, ``region`` and ``profile`` arguments (``--endpoint-url``, ``--region``, ``--aws-profile``,
which the registry reads) override the URL; otherwise botocore's usual credential chain and region resolution
apply.

Capabilities: table create/describe/list/delete, TTL describe/update (DynamoDBTableAdmin), each returning the
value types of taskctl.backends.base (TableDescription, TtlDescription): no DynamoDB reply leaves this module.

Errors raised (every botocore exception is translated by :func:`translate_errors`): NotFoundError (missing
table), ConflictError (refused by DynamoDB's rules: TTL changes, table in use, limits), UsageError (no region,
bad profile, a name or parameter DynamoDB rejects), UnavailableError (unreachable endpoint, timeouts, bad or
missing credentials, access denied), OperationError (throttling and anything else).

botocore is imported inside functions only: this module is itself loaded lazily through the registry, and a
caller importing it for :func:`make_client` must not pay boto's start-up cost before it needs a client.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from taskctl.backends.base import TableDefaults, TableDescription, TableKey, TtlDescription
from taskctl.errors import (
    ConflictError,
    NotFoundError,
    OperationError,
    TaskctlError,
    UnavailableError,
    UsageError,
)
from taskctl.urls import mask, mask_text, parse_dynamodb

if TYPE_CHECKING:
    pass

#: seconds to open a TCP connection; an unreachable endpoint must fail within seconds, not minutes
CONNECT_TIMEOUT = 2.0
#: seconds to wait for a reply on an open connection
READ_TIMEOUT = 10.0
#: connections kept open: the scans and the deletes of a bulk forget run at once (8 + 8 threads)
MAX_POOL_CONNECTIONS = 20
#: total attempts per call (botocore "standard" retry mode: jittered exponential backoff)
MAX_ATTEMPTS = 3

#: Functions called with every new client: the one test seam for replies no local server gives
#: (botocore Stubber or a ``before-send`` hook returning a canned response).
CLIENT_HOOKS: list[Callable[[Any], None]] = []

_NOT_FOUND = {"ResourceNotFoundException", "ResourceNotFound", "TableNotFoundException"}
_AUTH = {
    "AccessDeniedException": "access denied",
    "AccessDenied": "access denied",
    "UnrecognizedClientException": "the credentials were not accepted",
    "InvalidSignatureException": "the request signature does not match (wrong secret key?)",
    "SignatureDoesNotMatch": "the request signature does not match (wrong secret key?)",
    "IncompleteSignature": "the request signature is incomplete",
    "IncompleteSignatureException": "the request signature is incomplete",
    "MissingAuthenticationToken": "the request carried no credentials",
    "MissingAuthenticationTokenException": "the request carried no credentials",
    "ExpiredToken": "the session token has expired",
    "ExpiredTokenException": "the session token has expired",
    "InvalidClientTokenId": "the access key id is not known",
}
_THROTTLED = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
}
_AUTH_HINT = "check the credentials (URL KEY:SECRET, --aws-profile, AWS_* variables) and their IAM permissions"


def make_client(
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    retry_mode: str = "standard",
    max_attempts: int = MAX_ATTEMPTS,
) -> Any:
    """A botocore DynamoDB client for URL; ENDPOINT_URL, REGION and PROFILE override what the URL says.
    RETRY_MODE "adaptive" (bulk work) also slows the client down while DynamoDB throttles it."""
    import botocore.session
    from botocore import exceptions as bx
    from botocore.config import Config

    parsed = parse_dynamodb(url)
    region = region or parsed.region
    endpoint = endpoint_url or parsed.endpoint_url
    with translate_errors("create a DynamoDB client", url=url):
        session = botocore.session.Session(profile=profile or None)
        if profile:
            session.get_scoped_config()  # raises ProfileNotFound now, with a clear message
        region = region or session.get_config_variable("region") or None
        if region is None:
            if endpoint is None:
                raise bx.NoRegionError()
            region = "us-east-1"  # a local endpoint signs with some region; DynamoDB Local and moto accept any
        cfg = Config(
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retries={"total_max_attempts": max_attempts, "mode": retry_mode},  # type: ignore[arg-type]
            user_agent_extra="taskctl",
            max_pool_connections=MAX_POOL_CONNECTIONS,
        )
        kwargs: dict[str, Any] = {"config": cfg}
        if region:
            kwargs["region_name"] = region
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        if parsed.access_key and parsed.secret_key:
            kwargs["aws_access_key_id"] = parsed.access_key
            kwargs["aws_secret_access_key"] = parsed.secret_key
        try:
            client = session.create_client("dynamodb", **kwargs)
        except ValueError as exc:  # "Invalid endpoint: ..." from a malformed region or endpoint
            raise UsageError(f"cannot create a DynamoDB client for {mask(url)}: {exc}") from None
    for hook in CLIENT_HOOKS:
        hook(client)
    return client


def _where(url: str, table: str | None) -> str:
    return f"table {table!r} at {mask(url)}" if table else mask(url)


def _one_line(text: str, *urls: str) -> str:
    text = mask_text(" ".join(str(text).split()), *urls)
    return text if len(text) <= 300 else text[:297] + "..."


@contextmanager
def translate_errors(action: str, *, url: str, table: str | None = None) -> Iterator[None]:
    """Turn every botocore exception raised inside into a one-line TaskctlError naming ACTION, table and URL."""
    try:
        yield
    except TaskctlError:
        raise
    except Exception as exc:
        from botocore import exceptions as bx

        if not isinstance(exc, bx.BotoCoreError | bx.ClientError):
            raise
        raise _translate(exc, action, url, table) from exc


def _translate(exc: Exception, action: str, url: str, table: str | None) -> TaskctlError:
    from botocore import exceptions as bx

    where = _where(url, table)
    head = f"cannot {action} ({where})"
    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        msg = _one_line(str(err.get("Message") or code), url)
        return _from_code(code, msg, head, table)
    if isinstance(exc, bx.NoRegionError):
        return UsageError(
            f"cannot {action}: no AWS region configured ({mask(url)})",
            hint="put the region in the URL (dynamodb://@us-east-1/TABLE), pass --region, or set AWS_DEFAULT_REGION",
        )
    if isinstance(exc, bx.ProfileNotFound):
        return UsageError(
            f"cannot {action}: {_one_line(str(exc), url)}", hint="list profiles with: aws configure list-profiles"
        )
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError | bx.CredentialRetrievalError):
        return UnavailableError(
            f"{head}: no usable AWS credentials ({_one_line(str(exc), url)})",
            hint="put KEY:SECRET in the URL, pass --aws-profile, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(exc, bx.ConnectTimeoutError | bx.ReadTimeoutError):
        return UnavailableError(
            f"{head}: timed out ({_one_line(str(exc), url)})",
            hint="check the endpoint/region and the network; a local server must be running",
        )
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectionError | bx.HTTPClientError):
        return UnavailableError(
            f"{head}: cannot connect ({_one_line(str(exc), url)})",
            hint="check the endpoint/region and the network; a local server must be running",
        )
    if isinstance(exc, bx.ParamValidationError):
        return UsageError(f"{head}: {_one_line(str(exc), url)}")
    return OperationError(f"{head}: {type(exc).__name__}: {_one_line(str(exc), url)}")


def _from_code(code: str, msg: str, head: str, table: str | None) -> TaskctlError:
    if code in _NOT_FOUND:
        what = f"table {table!r} does not exist" if table else msg
        return NotFoundError(
            f"{head}: {what}",
            hint=(
                "list the tables with: taskctl table list"
                if "delete" in head or not table
                else f"create it with: taskctl table create {table}"
            ),
            code="not-found",
        )
    if code in _AUTH:
        return UnavailableError(f"{head}: {_AUTH[code]}: {code}: {msg}", hint=_AUTH_HINT, code="auth")
    if code in _THROTTLED:
        return OperationError(
            f"{head}: throttled by DynamoDB: {code}: {msg}",
            hint="retry later, raise the table's capacity, or switch it to on-demand (PAY_PER_REQUEST)",
            code="throttled",
        )
    if code in ("ServiceUnavailable", "ServiceUnavailableException"):
        return UnavailableError(f"{head}: DynamoDB is unavailable: {msg}", hint="retry later")
    if code == "ResourceInUseException":
        return ConflictError(
            f"{head}: the table is in use: {msg}",
            hint="it is being created, updated or deleted, or already exists; check with: taskctl table describe",
            code="in-use",
        )
    if code == "LimitExceededException":
        return ConflictError(
            f"{head}: a DynamoDB limit was reached: {msg}",
            hint="wait for running table operations to finish, or raise the account's limits",
            code="limit",
        )
    if code in ("ConditionalCheckFailedException", "TransactionConflictException"):
        return ConflictError(f"{head}: {msg}", code="condition")
    if code == "ValidationException":
        return _validation(msg, head)
    if code in ("SerializationException", "UnknownOperationException"):
        return OperationError(f"{head}: the server does not support this request: {code}: {msg}")
    return OperationError(f"{head}: {code}: {msg}")


def _validation(msg: str, head: str) -> TaskctlError:
    low = msg.lower()
    if "modified multiple times" in low:
        return ConflictError(
            f"{head}: DynamoDB refused the TTL change: {msg}",
            hint="a TTL change takes up to an hour to settle on AWS; wait, check with 'taskctl table ttl', then retry",
            code="ttl-refused",
        )
    if "different attributename" in low:
        return ConflictError(
            f"{head}: DynamoDB refused the TTL change: {msg}",
            hint="disable TTL first ('taskctl table ttl TABLE --disable'), wait until DISABLED, then enable it again",
            code="ttl-refused",
        )
    if "timetolive" in low or "time to live" in low:
        return ConflictError(f"{head}: DynamoDB refused the TTL change: {msg}", code="ttl-refused")
    if (
        "validation error detected" in low
        or "table name" in low
        or "tablename" in low
        or "invalid" in low
        or "must " in low
    ):
        return UsageError(f"{head}: DynamoDB rejected the request: {msg}", code="invalid")
    return ConflictError(f"{head}: DynamoDB refused the request: {msg}", code="refused")


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_table(table: dict[str, Any]) -> TableDescription:
    """DescribeTable's (or DeleteTable's) ``Table`` description as a TableDescription."""
    billing = (table.get("BillingModeSummary") or {}).get("BillingMode") or "PROVISIONED"
    pt = table.get("ProvisionedThroughput") or {}
    on_demand = billing == "PAY_PER_REQUEST"
    created = table.get("CreationDateTime")
    return TableDescription(
        name=str(table.get("TableName", "")),
        status=str(table.get("TableStatus") or "UNKNOWN"),
        key_schema=tuple(
            TableKey(name=str(k.get("AttributeName")), role=str(k.get("KeyType"))) for k in table.get("KeySchema", [])
        ),
        attribute_types={
            str(a.get("AttributeName")): str(a.get("AttributeType")) for a in table.get("AttributeDefinitions", [])
        },
        billing_mode=str(billing),
        read_capacity=None if on_demand else _int_or_none(pt.get("ReadCapacityUnits")),
        write_capacity=None if on_demand else _int_or_none(pt.get("WriteCapacityUnits")),
        item_count=_int_or_none(table.get("ItemCount")),
        size_bytes=_int_or_none(table.get("TableSizeBytes")),
        arn=table.get("TableArn"),
        created=created if isinstance(created, dt.datetime) else None,
    )


def parse_ttl(description: dict[str, Any]) -> TtlDescription:
    """DescribeTimeToLive's ``TimeToLiveDescription`` as a TtlDescription."""
    attribute = description.get("AttributeName")
    return TtlDescription(
        status=str(description.get("TimeToLiveStatus") or "DISABLED"), attribute=str(attribute) if attribute else None
    )


#: sample_item_sizes: segments its scan is split into (taken in random order) and requests it makes at most
SAMPLE_SEGMENTS = 16
SAMPLE_REQUESTS = 8


def _value_size(value: Any) -> int:
    """Bytes DynamoDB counts for one attribute value (its documented item size rules, closely enough)."""
    if not isinstance(value, dict) or len(value) != 1:
        return 0
    ((kind, v),) = value.items()
    if kind == "S":
        return len(str(v).encode("utf-8", "surrogatepass"))
    if kind == "B":
        return len(v) if isinstance(v, bytes | bytearray) else len(str(v))
    if kind == "N":
        digits = str(v).lstrip("-").replace(".", "").split("e")[0].split("E")[0].strip("0")
        return (len(digits) + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("L",):
        return 3 + sum(1 + _value_size(x) for x in v) if isinstance(v, list) else 3
    if kind == "M":
        return 3 + sum(1 + len(str(k).encode()) + _value_size(x) for k, x in v.items()) if isinstance(v, dict) else 3
    if kind in ("SS", "NS", "BS") and isinstance(v, list):
        return sum(_value_size({kind[0]: x}) for x in v)
    return len(str(v))


def item_size(item: dict[str, Any]) -> int:
    """An item's size toward DynamoDB's 400 KB limit: attribute names plus their values, in bytes."""
    return sum(len(str(name).encode("utf-8")) + _value_size(value) for name, value in item.items())


class DynamoDBTableAdmin:
    """Table administration over one client: every call translated, TableDescription/TtlDescription out."""

    def __init__(self, url: str, client: Any) -> None:
        self.url = url
        self.client = client
        self.defaults = self.defaults_from_url(url)

    @classmethod
    def defaults_from_url(cls, url: str) -> TableDefaults:
        parsed = parse_dynamodb(url)
        return TableDefaults(table=parsed.table, read=parsed.read, write=parsed.write, ttl_seconds=parsed.ttl_seconds)

    @classmethod
    def from_url(
        cls, url: str, *, endpoint_url: str | None = None, region: str | None = None, profile: str | None = None
    ) -> DynamoDBTableAdmin:
        return cls(url, make_client(url, endpoint_url=endpoint_url, region=region, profile=profile))

    @property
    def endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    def describe_table(self, table: str) -> TableDescription:
        """NotFoundError when missing."""
        with translate_errors("describe table", url=self.url, table=table):
            return parse_table(self.client.describe_table(TableName=table)["Table"])

    def sample_item_sizes(self, table: str, limit: int) -> Iterator[tuple[str, int]]:
        """(key, size) of up to LIMIT items, each size counted as DynamoDB counts it against its 400 KB item
        limit. A table of more than LIMIT items (DescribeTable's count) is sampled from SAMPLE_SEGMENTS scan
        segments in random order, an equal share from each, so the sample is spread over the table; at most
        SAMPLE_REQUESTS requests beyond one a segment (about a MB each), whatever the table's size."""
        import random

        from taskctl.formats.result import from_dynamodb_id

        if limit <= 0:
            return
        with translate_errors("describe table", url=self.url, table=table):
            count = int(self.client.describe_table(TableName=table)["Table"].get("ItemCount") or 0)
        total = 1 if count <= limit else SAMPLE_SEGMENTS
        segments = list(range(total))
        random.shuffle(segments)
        left, budget = limit, SAMPLE_REQUESTS + total
        for i, segment in enumerate(segments):
            share = -(-left // (total - i))  # this segment's part of what is left, rounded up
            start: dict[str, Any] | None = None
            while share > 0 and budget > 0:
                kw: dict[str, Any] = {"TableName": table, "Limit": share}
                if total > 1:
                    kw.update(Segment=segment, TotalSegments=total)
                if start:
                    kw["ExclusiveStartKey"] = start
                with translate_errors("sample items", url=self.url, table=table):
                    resp = self.client.scan(**kw)
                budget -= 1
                for raw in resp.get("Items", []):
                    ident = raw.get("id", {}).get("S")
                    key = from_dynamodb_id(str(ident)) if isinstance(ident, str) else "?"
                    share -= 1
                    left -= 1
                    yield key, item_size(raw)
                start = resp.get("LastEvaluatedKey")
                if not start:
                    break
            if left <= 0 or budget <= 0:
                return

    def describe_ttl(self, table: str) -> TtlDescription:
        with translate_errors("describe TTL", url=self.url, table=table):
            return parse_ttl(self.client.describe_time_to_live(TableName=table).get("TimeToLiveDescription", {}))

    def create_table(self, table: str, *, read: int, write: int, on_demand: bool) -> bool:
        """Create a table with Celery's key schema; False when a table of that name already exists."""
        kwargs: dict[str, Any] = {
            "TableName": table,
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        }
        if on_demand:
            kwargs["BillingMode"] = "PAY_PER_REQUEST"
        else:
            kwargs["BillingMode"] = "PROVISIONED"
            kwargs["ProvisionedThroughput"] = {"ReadCapacityUnits": read, "WriteCapacityUnits": write}
        from botocore.exceptions import ClientError

        with translate_errors("create table", url=self.url, table=table):
            try:
                self.client.create_table(**kwargs)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ResourceInUseException":
                    return False
                raise
        return True

    def update_ttl(self, table: str, *, enabled: bool, attribute: str) -> bool:
        """UpdateTimeToLive; False when that state was already in force. Refusals become ConflictError."""
        from botocore.exceptions import ClientError

        action = "enable TTL" if enabled else "disable TTL"
        spec = {"Enabled": enabled, "AttributeName": attribute}
        with translate_errors(action, url=self.url, table=table):
            try:
                self.client.update_time_to_live(TableName=table, TimeToLiveSpecification=spec)
            except ClientError as exc:
                # a concurrent change got there first: "TimeToLive is already enabled/disabled"
                if "is already " + ("enabled" if enabled else "disabled") in str(exc).lower():
                    return False
                raise
            return True

    def delete_table(self, table: str) -> TableDescription:
        with translate_errors("delete table", url=self.url, table=table):
            return parse_table(self.client.delete_table(TableName=table).get("TableDescription", {}))

    def list_tables(self) -> Iterator[str]:
        """Every table name at the endpoint, page by page."""
        with translate_errors("list tables", url=self.url):
            kwargs: dict[str, Any] = {}
            while True:
                page = self.client.list_tables(**kwargs)
                yield from page.get("TableNames", [])
                last = page.get("LastEvaluatedTableName")
                if not last:
                    return
                kwargs["ExclusiveStartTableName"] = last

    def close(self) -> None:
        self.client.close()
