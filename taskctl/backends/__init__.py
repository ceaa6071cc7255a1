"""Adapters chosen from the URL scheme (like kombu's TRANSPORT_ALIASES and celery's ``by_url``).

Each table maps a scheme to ``"module:Class"``, imported on first use so that ``--help`` and commands that do
not need a backend never import boto3, redis or kombu. Brokers: one kombu adapter for every transport, with
a subclass where a transport needs more than kombu's consumer path (Redis: atomic moves; SQS: receive/delete).
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING, Any

from taskctl.errors import UsageError
from taskctl.urls import check, mask, scheme_of

if TYPE_CHECKING:
    from taskctl.backends.base import Broker, Management, RemoteControl, ResultStore, TableAdmin, TableDefaults
    from taskctl.config import Settings

RESULT_STORES: dict[str, str] = {
    "dynamodb": "taskctl.backends.dynamodb_store:DynamoDBResultStore",
    "redis": "taskctl.backends.redis:RedisResultStore",
    "rediss": "taskctl.backends.redis:RedisResultStore",
    "file": "taskctl.backends.file:FileResultStore",
}
TABLE_ADMINS: dict[str, str] = {
    "dynamodb": "taskctl.backends.dynamodb:DynamoDBTableAdmin",
}
BROKER = "taskctl.backends.kombu_broker:KombuBroker"
#: scheme -> adapter, for transports with one of their own; every other scheme is BROKER
BROKERS: dict[str, str] = {
    "redis": "taskctl.backends.redis_broker:RedisBroker",
    "sqs": "taskctl.backends.sqs_broker:SqsBroker",
}
MANAGEMENT = "taskctl.backends.management:ManagementAPI"
CONTROL = "taskctl.backends.control:KombuControl"


def load(dotted: str) -> Any:
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)


def _lookup(table: dict[str, str], url: str, what: str) -> str:
    scheme = scheme_of(url)
    if scheme in table:
        return table[scheme]
    close = difflib.get_close_matches(scheme, list(table), n=1)
    hint = f"did you mean '{close[0]}'?" if close else "supported: " + ", ".join(f"{s}://" for s in table)
    raise UsageError(f"{what} does not support {scheme}:// ({mask(url)})", hint=hint)


def _checked(settings: Settings, name: str, url: str | None = None) -> str | None:
    """URL (default: setting NAME), refused when it can be read more than one way (urls.check), before any
    driver can echo a misread secret. Checked here, when used: a bad broker URL never stops a table command."""
    url = url or getattr(settings, name)
    if url:
        source = settings.sources.get(name) if url == getattr(settings, name) else None
        check(url, setting=f"{name.replace('_', ' ')} URL", source=source, kombu=name == "broker")
    return url


def result_store(settings: Settings, url: str | None = None) -> ResultStore:
    """The result store for URL (default: the configured backend)."""
    url = _checked(settings, "backend", url or settings.require_backend()) or ""
    _checked(settings, "endpoint_url")
    cls = load(_lookup(RESULT_STORES, url, "result commands"))
    return cls.from_url(  # type: ignore[no-any-return]
        url,
        endpoint_url=settings.endpoint_url,
        region=settings.region,
        profile=settings.aws_profile,
        transport_options=dict(settings.result_transport_options),
    )


def table_admin(settings: Settings, url: str | None = None) -> TableAdmin:
    """The table administrator for URL (default: the configured backend, else dynamodb://).

    The one place that turns settings into the adapter's keyword arguments.
    """
    url = _checked(settings, "backend", url) or "dynamodb://"
    _checked(settings, "endpoint_url")
    cls = load(_lookup(TABLE_ADMINS, url, "table commands"))
    return cls.from_url(  # type: ignore[no-any-return]
        url,
        endpoint_url=settings.endpoint_url or None,
        region=settings.region or None,
        profile=settings.aws_profile or None,
    )


def table_defaults(url: str) -> TableDefaults | None:
    """What URL says about its table (no client made), or None when its store has no tables to administer."""
    scheme = scheme_of(url)
    if scheme not in TABLE_ADMINS:
        return None
    return load(TABLE_ADMINS[scheme]).defaults_from_url(url)  # type: ignore[no-any-return]


def open_control(settings: Settings, url: str | None = None) -> RemoteControl:
    """Remote control of Celery workers over the broker (the pidbox exchange)."""
    cls = load(CONTROL)
    return cls.from_url(  # type: ignore[no-any-return]
        _checked(settings, "broker", url),
        transport_options=settings.transport_options,
        namespace=str(settings.extra.get("control_exchange") or "") or None,
        event_exchange=str(settings.extra.get("event_exchange") or "") or None,
    )


def open_broker(settings: Settings, url: str | None = None) -> Broker:
    """The broker adapter for URL (default: the configured broker), with the configured transport options."""
    broker = _checked(settings, "broker", url)
    cls = broker_class(broker or "")
    return cls.from_url(broker, transport_options=settings.transport_options)  # type: ignore[no-any-return]


def broker_class(url: str) -> Any:
    """The adapter class for a broker URL (kombu's aliases: rediss -> redis)."""
    scheme = scheme_of(url) if "://" in url else url
    scheme = {"rediss": "redis", "sentinel": "redis"}.get(scheme, scheme)
    return load(BROKERS.get(scheme, BROKER))


def open_management(settings: Settings, broker_url: str | None = None, *, timeout: float | None = None) -> Management:
    """RabbitMQ's HTTP management API: --management-url, else the broker's host on port 15672.

    TIMEOUT (seconds per request) is for checks on the way to another operation, which must not stall.
    """
    cls = load(MANAGEMENT)
    broker_url = _checked(settings, "broker", broker_url)
    kwargs: dict[str, Any] = {"management_url": _checked(settings, "management_url")}
    if timeout is not None:
        kwargs["timeout"] = timeout
    return cls.from_url(broker_url, **kwargs)  # type: ignore[no-any-return]
