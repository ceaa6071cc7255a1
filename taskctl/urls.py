"""The one URL module: parse backend and broker URLs exactly as Celery does, and mask secrets.

Celery reads ``dynamodb://[KEY:SECRET@]REGION[:PORT]/TABLE?read=N&write=N&ttl_seconds=N`` with
``kombu.utils.url``; ``localhost`` or an IP literal as REGION means the local endpoint ``http://HOST:PORT``
in region ``us-east-1`` (Celery 5.5+). Every URL that is printed goes through :func:`mask`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from taskctl.errors import UsageError

MASK = "****"
_SECRET_QUERY_KEYS = re.compile(r"(pass|secret|token|key|auth)", re.IGNORECASE)
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:@/]*):(?P<pw>[^@/]*)@")


def mask(url: str | None) -> str:
    """Return URL with its password (or AWS secret key) and secret-looking query values replaced."""
    if not url:
        return ""
    out = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@" if m["pw"] else m[0], url, count=1)
    if "?" in out:
        base, _, query = out.partition("?")
        parts = []
        for item in query.split("&"):
            k, sep, v = item.partition("=")
            parts.append(f"{k}={MASK}" if sep and v and _SECRET_QUERY_KEYS.search(k) else item)
        out = base + "?" + "&".join(parts)
    return out


def mask_text(text: str, *urls: str | None) -> str:
    """Replace every occurrence of each URL's secrets in free text (e.g. a driver's error message)."""
    for url in urls:
        if not url:
            continue
        m = _USERINFO.match(url)
        if m and m["pw"]:
            for secret in {m["pw"], unquote(m["pw"])}:
                if len(secret) >= 3:
                    text = text.replace(secret, MASK)
    return text


def scheme_of(url: str) -> str:
    """The backend scheme as Celery's ``by_url`` sees it: ``db+postgresql://`` is ``db``."""
    if "://" not in url:
        raise UsageError(
            f"not a URL: {mask(url)!r}",
            hint="URLs look like scheme://host/path, e.g. dynamodb://@us-east-1/celery",
        )
    scheme = url.split("://", 1)[0].lower()
    return scheme.split("+", 1)[0]


@dataclass(frozen=True)
class URLParts:
    scheme: str
    hostname: str | None
    port: int | None
    username: str | None
    password: str | None
    path: str
    query: dict[str, str]


def parse(url: str) -> URLParts:
    """Split a URL into parts as ``kombu.utils.url.url_to_parts`` does (userinfo unquoted)."""
    if "://" not in url:
        raise UsageError(f"not a URL: {mask(url)!r}", hint="URLs look like scheme://host/path")
    scheme = url.split("://", 1)[0]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"malformed URL {mask(url)!r}: {exc}") from None
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    return URLParts(
        scheme=scheme,
        hostname=unquote(parts.hostname) if parts.hostname else None,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        path=path,
        query=dict(parse_qsl(parts.query)),
    )


@dataclass(frozen=True)
class DynamoDBURL:
    """What Celery's DynamoDBBackend reads from its URL."""

    region: str | None
    endpoint_url: str | None
    table: str
    read: int
    write: int
    ttl_seconds: int | None
    access_key: str | None
    secret_key: str | None


def _int_param(url: str, query: dict[str, str], name: str, default: int | None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"bad {name}={raw!r} in {mask(url)}: must be an integer") from None


def parse_dynamodb(url: str) -> DynamoDBURL:
    """Parse ``dynamodb://`` the way Celery 5.5+ does; errors are usage errors naming the masked URL."""
    if scheme_of(url) != "dynamodb":
        raise UsageError(f"not a dynamodb:// URL: {mask(url)}")
    p = parse(url)
    if (p.username is None) != (p.password is None) and (p.username or p.password):
        raise UsageError(
            f"bad backend URL {mask(url)}: an AWS access key needs its secret key",
            hint="use dynamodb://KEY:SECRET@REGION/TABLE, or leave both out to use the AWS credential chain",
        )
    region: str | None = p.hostname or None
    endpoint: str | None = None
    if region is not None:
        local = region == "localhost"
        if not local:
            try:
                ipaddress.ip_address(region)
                local = True
            except ValueError:
                local = False
        if local:
            if p.port is None:
                raise UsageError(
                    f"bad backend URL {mask(url)}: a local endpoint needs a port",
                    hint="e.g. dynamodb://@localhost:8000/celery",
                )
            host = f"[{region}]" if ":" in region else region
            endpoint = f"http://{host}:{p.port}"
            region = "us-east-1"
    table = p.path.strip("/") or "celery"
    ttl = _int_param(url, p.query, "ttl_seconds", None)
    return DynamoDBURL(
        region=region,
        endpoint_url=endpoint,
        table=table,
        read=_int_param(url, p.query, "read", 1) or 1,
        write=_int_param(url, p.query, "write", 1) or 1,
        ttl_seconds=ttl,
        access_key=p.username or None,
        secret_key=p.password or None,
    )


def dynamodb_url(
    *,
    region: str | None,
    endpoint_url: str | None = None,
    table: str = "celery",
    ttl_seconds: int | None = None,
) -> str:
    """Build a dynamodb:// URL Celery understands (used by the local stack and examples)."""
    host = region or ""
    if endpoint_url:
        e = urlsplit(endpoint_url)
        host = f"{e.hostname}:{e.port}"
    q = f"?ttl_seconds={ttl_seconds}" if ttl_seconds is not None else ""
    return f"dynamodb://@{host}/{quote(table)}{q}"
