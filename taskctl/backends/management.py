"""RabbitMQ's HTTP management API, over urllib (no SDK): listing queues with counts, consumers and idle time.

Address: ``--management-url`` / ``TASKCTL_MANAGEMENT_URL`` (``http://USER:PASSWORD@HOST:15672``), else the broker
URL's host on port 15672 over http with the broker's user and password (guest/guest when the URL has none).
The vhost is the broker URL's. Needs the ``rabbitmq_management`` plugin (``rabbitmq-plugins enable
rabbitmq_management``; no restart).

Errors raised: UnavailableError (not reachable, plugin off, 401 wrong credentials, 403 not allowed; exit 5),
NotFoundError (vhost or queue missing; exit 3), OperationError (any other HTTP error). URLs are masked.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from taskctl.errors import NotFoundError, OperationError, UnavailableError
from taskctl.formats.times import parse_iso
from taskctl.models import BrokerQueue
from taskctl.urls import mask, parse

TIMEOUT = 10.0
PAGE_SIZE = 500
COLUMNS = (
    "name,vhost,messages,messages_ready,messages_unacknowledged,consumers,idle_since,arguments,"
    "auto_delete,durable,exclusive,type,state,policy,effective_policy_definition,"
    "message_stats.publish_details.rate,message_stats.deliver_get_details.rate"
)


class ManagementAPI:
    """A small client of ``/api/queues``."""

    def __init__(self, base_url: str, user: str, password: str, vhost: str = "/", timeout: float = TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        #: seconds per request; checks on the way to another operation use less
        self.timeout = timeout
        self.user = user
        self.password = password
        self.vhost = vhost

    @classmethod
    def from_url(cls, broker_url: str, *, management_url: str | None = None, timeout: float = TIMEOUT) -> ManagementAPI:
        """The API for BROKER_URL's host (port 15672, its user and password), or MANAGEMENT_URL if given."""
        b = parse(broker_url) if "://" in broker_url else None
        vhost = (b.path if b and b.path else "/") if b else "/"
        user = (b.username if b else None) or "guest"
        password = (b.password if b else None) or "guest"
        if management_url:
            m = parse(management_url)
            scheme = m.scheme if m.scheme in ("http", "https") else "http"
            host = m.hostname or "127.0.0.1"
            port = f":{m.port}" if m.port else ""
            path = "/" + m.path.strip("/") if m.path.strip("/") else ""
            base = f"{scheme}://{host}{port}{path}"
            user = m.username or user
            password = m.password if m.password is not None else password
        else:
            host = (b.hostname if b else None) or "127.0.0.1"
            host = "127.0.0.1" if host == "localhost" else host
            base = f"http://{host}:15672"
        return cls(base, user, password, vhost, timeout)

    @property
    def shown(self) -> str:
        """The address as printed (never with the password)."""
        return mask(self.base_url)

    def _get(self, path: str) -> Any:
        url = self.base_url + path
        req = urllib.request.Request(url)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
        req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise UnavailableError(
                    f"management API {self.shown}: login failed for user {self.user!r}",
                    hint="pass --management-url http://USER:PASSWORD@HOST:15672",
                ) from None
            if exc.code == 403:
                raise UnavailableError(
                    f"management API {self.shown}: user {self.user!r} is not allowed (needs the monitoring tag)"
                ) from None
            if exc.code == 404:
                raise NotFoundError(f"management API {self.shown}: not found: {urllib.parse.unquote(path)}") from None
            raise OperationError(f"management API {self.shown}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UnavailableError(
                f"management API {self.shown} not reachable: {reason}",
                hint="enable it with 'rabbitmq-plugins enable rabbitmq_management', or pass --management-url",
            ) from None
        except ValueError:
            raise OperationError(f"management API {self.shown}: the reply is not JSON") from None

    def reachable(self) -> bool:
        try:
            self._get("/api/overview")
            return True
        except (UnavailableError, OperationError, NotFoundError):
            return False

    def server_version(self) -> str | None:
        """RabbitMQ's version as ``/api/overview`` tells it (None when it does not)."""
        data = self._get("/api/overview")
        v = data.get("rabbitmq_version") if isinstance(data, dict) else None
        return str(v) if v else None

    def iter_queues(self, vhost: str | None = None) -> Iterator[BrokerQueue]:
        """Every queue of the vhost, a page at a time (tens of thousands of reply queues are common)."""
        v = urllib.parse.quote(vhost or self.vhost, safe="")
        now = dt.datetime.now(dt.UTC)
        page = 1
        while True:
            data = self._get(f"/api/queues/{v}?page={page}&page_size={PAGE_SIZE}&columns={COLUMNS}")
            if isinstance(data, list):  # servers without pagination
                yield from (broker_queue(q, now) for q in data if isinstance(q, dict))
                return
            yield from (broker_queue(q, now) for q in data.get("items", []) if isinstance(q, dict))
            if page >= int(data.get("page_count", 1) or 1):
                return
            page += 1

    def bound_queues(self, exchange: str, vhost: str | None = None) -> list[str]:
        """Names of the queues bound to EXCHANGE (``/api/exchanges/{vhost}/{exchange}/bindings/source``)."""
        v = urllib.parse.quote(vhost or self.vhost, safe="")
        data = self._get(f"/api/exchanges/{v}/{urllib.parse.quote(exchange, safe='')}/bindings/source")
        if not isinstance(data, list):
            raise OperationError(f"management API {self.shown}: unexpected reply for exchange {exchange!r}")
        return [
            str(b["destination"])
            for b in data
            if isinstance(b, dict) and b.get("destination_type") == "queue" and b.get("destination")
        ]

    def queue(self, name: str, vhost: str | None = None) -> BrokerQueue:
        v = urllib.parse.quote(vhost or self.vhost, safe="")
        data = self._get(f"/api/queues/{v}/{urllib.parse.quote(name, safe='')}")
        if not isinstance(data, dict):
            raise OperationError(f"management API {self.shown}: unexpected reply for queue {name!r}")
        return broker_queue(data)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def broker_queue(q: dict[str, Any], now: dt.datetime | None = None) -> BrokerQueue:
    """An API queue object as a model (idle time from ``idle_since``, expiry from ``x-expires``, the delivery
    limit from the ``x-delivery-limit`` argument, else the effective policy's ``delivery-limit``)."""
    now = now or dt.datetime.now(dt.UTC)
    args = q.get("arguments") or {}
    if not isinstance(args, dict):
        args = {}
    policy = q.get("effective_policy_definition") or {}
    if not isinstance(policy, dict):
        policy = {}
    idle = parse_iso(q.get("idle_since"))
    expires = args.get("x-expires")
    limit = args.get("x-delivery-limit", policy.get("delivery-limit"))
    return BrokerQueue(
        queue=str(q.get("name")),
        vhost=str(q.get("vhost", "/")),
        messages=int(q.get("messages") or 0),
        ready=int(q.get("messages_ready") or 0),
        unacked=int(q.get("messages_unacknowledged") or 0),
        consumers=int(q.get("consumers") or 0),
        idle_since=idle.astimezone(dt.UTC).isoformat() if idle else None,
        idle_seconds=round(max(0.0, (now - idle).total_seconds()), 1) if idle else None,
        type=str(q.get("type") or "classic"),
        durable=bool(q.get("durable")),
        auto_delete=bool(q.get("auto_delete")),
        exclusive=bool(q.get("exclusive")),
        expires=float(expires) / 1000.0 if isinstance(expires, int | float) else None,
        arguments=dict(args),
        delivery_limit=_int_or_none(limit),
        rate_in=_rate(q, "publish_details"),
        rate_out=_rate(q, "deliver_get_details"),
    )


def _rate(q: dict[str, Any], key: str) -> float | None:
    """Messages per second from ``message_stats.<key>.rate`` (absent until the queue has traffic)."""
    stats = q.get("message_stats")
    details = stats.get(key) if isinstance(stats, dict) else None
    rate = details.get("rate") if isinstance(details, dict) else None
    return float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) else None
