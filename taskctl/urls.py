"""The one URL module: parse backend and broker URLs exactly as Celery does, and mask secrets.

Celery reads ``dynamodb://[KEY:SECRET@]REGION[:PORT]/TABLE?read=N&write=N&ttl_seconds=N`` with
``kombu.utils.url``; ``localhost`` or an IP literal as REGION means the local endpoint ``http://HOST:PORT``
in region ``us-east-1`` (Celery 5.5+). Every URL that is printed goes through :func:`mask`.

A URL is split as urllib splits it (and so kombu and redis-py): the user info runs to the last ``@`` before the
first ``/`` or ``?``; a ``;`` separates the URLs of a failover list (kombu's Connection). Where a raw delimiter
could sit inside a secret (``/ ? # ; [ ]`` in a password, an ``@`` after the host part) the parsers would read
part of the secret as a host, port, path or query: :func:`check` refuses such a URL, naming what to
percent-encode, and :func:`mask` prints it as ``scheme://****``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from taskctl.errors import UsageError

MASK = "****"
_SECRET_QUERY_KEYS = re.compile(r"(pass|secret|token|key|auth)", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")
#: a URL with user info anywhere in free text (a driver's message), up to the last '@' of its run
_ANY_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<pw>\S*)@")
_ENCODE_HINT = (
    "percent-encode it, e.g. urllib.parse.quote(password, safe=''): '/' as %2F, '?' as %3F, '#' as %23, "
    "'@' as %40, ';' as %3B, '&' as %26, '[' as %5B, ']' as %5D"
)


class _Ambiguous(ValueError):
    """Where a URL cannot be split unambiguously; the text names the part, never its value."""


@dataclass(frozen=True)
class _Spans:
    """Where the secrets of one URL stand in its text (half-open index ranges)."""

    scheme: str
    authority: tuple[int, int]
    password: tuple[int, int] | None
    #: (start, end) of each secret-looking query value
    query_secrets: tuple[tuple[int, int], ...]
    #: where the first secret-looking query value starts: masked to the end, since a raw '&' in the secret
    #: cannot be told from the next parameter
    query_masked_from: int | None


def split_failover(url: str) -> list[str]:
    """The URLs of a failover list ``amqp://h1//;amqp://h2//``, split where kombu's Connection splits it."""
    return url.split(";")


def _locate(url: str) -> _Spans:
    """Find the user info, password and query of one URL as urllib (and so kombu and redis-py) split it.

    Raises _Ambiguous where a raw delimiter may sit inside a secret, so the parsers could read a password as
    a host, port, path, query or fragment.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.match(scheme):
        raise _Ambiguous("not a URL")
    start = len(scheme) + 3
    if "#" in rest:
        raise _Ambiguous("it holds a raw '#', which ends the URL there (a '#' in a password or value?)")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    at = authority.rfind("@")
    last_at = tail.rfind("@")
    if last_at >= 0 and (at >= 0 or ":" in authority or ":" in tail[:last_at]):
        raise _Ambiguous(
            "an '@' after the host part: a '/' or '?' in the user name or password ends the host part early"
        )
    hostinfo = authority[at + 1 :]
    if "[" in authority[: max(at, 0)] or "]" in authority[: max(at, 0)] or hostinfo.count("[") > 1:
        raise _Ambiguous("a '[' or ']' outside an IPv6 host (urllib reads any bracket as one)")
    port = (hostinfo.partition("]")[2] if "[" in hostinfo else hostinfo).partition(":")[2]
    if at < 0 and port and not (port.isascii() and port.isdigit()):
        # 'user:secret' with the '@' lost (a raw ';' split it off): the secret would print as a port
        raise _Ambiguous("the port after ':' is not a number")
    password = None
    if at >= 0:
        colon = authority.find(":", 0, at)
        if colon >= 0 and colon + 1 < at:
            password = (start + colon + 1, start + at)
    secrets: list[tuple[int, int]] = []
    masked_from: int | None = None
    qpos = tail.find("?")
    if qpos >= 0:
        pos = start + cut + qpos + 1
        for item in tail[qpos + 1 :].split("&"):
            key, eq, value = item.partition("=")
            if item and not eq:
                raise _Ambiguous("a query item without '=' (a raw '&' in a value?)")
            if _SECRET_QUERY_KEYS.search(key):
                if masked_from is None:
                    masked_from = pos + len(key) + 1
                if value:
                    secrets.append((pos + len(key) + 1, pos + len(item)))
            pos += len(item) + 1
    return _Spans(scheme, (start, start + cut), password, tuple(secrets), masked_from)


def _mask_one(url: str) -> str:
    try:
        spans = _locate(url)
    except _Ambiguous:
        scheme, sep, _ = url.partition("://")
        if sep and _SCHEME.match(scheme):
            return f"{scheme}://{MASK}"
        return MASK if ("@" in url or ":" in url) else url
    out = url if spans.query_masked_from is None else url[: spans.query_masked_from] + MASK
    if spans.password:
        a, b = spans.password
        out = out[:a] + MASK + out[b:]
    return out


def mask(url: str | None) -> str:
    """URL as it may be printed: passwords (AWS secret keys) and secret-looking query values replaced.

    Every URL of a failover list is masked; a URL that cannot be split unambiguously prints as
    ``scheme://****``, since any part of it might be a secret.
    """
    if not url:
        return ""
    parts = split_failover(url)
    if len(parts) > 1 and not all("://" in p for p in parts):
        # a piece without a scheme is the tail of a secret a raw ';' cut off: any piece may be secret
        scheme, sep, _ = parts[0].partition("://")
        return f"{scheme}://{MASK}" if sep and _SCHEME.match(scheme) else MASK
    return ";".join(_mask_one(p) for p in parts)


def _secrets(url: str) -> set[str]:
    out: set[str] = set()
    for part in split_failover(url):
        try:
            spans = _locate(part)
        except _Ambiguous:
            continue
        for a, b in [*([spans.password] if spans.password else []), *spans.query_secrets]:
            out.update(s for s in (part[a:b], unquote(part[a:b])) if s)
    return out


def mask_text(text: str, *urls: str | None) -> str:
    """Free text (a driver's message) with the secrets of URLS masked where they stand in a URL or a setting.

    The URLs themselves, ``:secret@`` user info, ``password=secret`` / ``'password': 'secret'`` settings and any
    other ``scheme://user:secret@`` are masked; the same letters elsewhere (a queue named like the password)
    are left alone.
    """
    for url in urls:
        if not url:
            continue
        for whole in sorted({url, *split_failover(url)}, key=len, reverse=True):
            if len(whole) > 3 and whole in text:
                text = text.replace(whole, mask(whole))
        for secret in sorted(_secrets(url), key=len, reverse=True):
            s = re.escape(secret)
            text = re.sub(f":{s}@", f":{MASK}@", text)
            text = re.sub(
                rf"(?i)(\w*(?:pass|secret|token|key|auth)\w*['\"]?\s*[=:]\s*['\"]?){s}",
                lambda m: m[1] + MASK,
                text,
            )
    return _ANY_USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)


def check(url: str, *, setting: str = "URL", source: str | None = None, kombu: bool = False) -> None:
    """Refuse (UsageError, exit 2) a URL the parsers could read more than one way, naming what to encode.

    ``kombu``: the URL goes to ``kombu.Connection``, which takes user and password only from the user info.
    ``source`` says where the setting came from (``flag --broker``), for the message.
    """
    setting = f"{setting} ({source})" if source else setting
    for part in split_failover(url):
        try:
            spans = _locate(part)
        except _Ambiguous as exc:
            if str(exc) == "not a URL":
                if len(split_failover(url)) > 1:
                    raise UsageError(
                        f"bad {setting}: {mask(url)}: every URL of a ';' failover list needs a scheme",
                        hint=f"a ';' inside a password is read as a list separator: {_ENCODE_HINT}",
                    ) from None
                raise UsageError(
                    f"not a URL: {mask(url)!r}",
                    hint="URLs look like scheme://host/path, e.g. dynamodb://@us-east-1/celery",
                ) from None
            also = "; or a raw ';' in a password split it into a failover list" if ";" in url else ""
            raise UsageError(
                f"ambiguous {setting}: {mask(url)}: {exc}{also}",
                hint=f"if the user name or password holds such a character, {_ENCODE_HINT}",
            ) from None
        try:
            urlsplit(part).port  # noqa: B018 (the port as urllib, and so kombu and redis-py, read it)
        except ValueError:
            # urllib's own text may quote the user info: never shown
            raise UsageError(
                f"malformed URL {mask(part)!r}: the host or port cannot be read (brackets, a port that is not "
                "a number 0-65535, or characters urllib refuses)",
                hint=f"if the user name or password holds such a character, {_ENCODE_HINT}",
            ) from None
        if spans.scheme.lower() == "file" and part.find("@", *spans.authority) >= 0:
            raise UsageError(
                f"bad {setting}: {mask(url)}: a file:// URL holds a path, not a user or password",
                hint="write file:///absolute/path",
            )
        if kombu:
            keys = {k for k, _ in parse_qsl(urlsplit(part).query)}
            dup = sorted(keys & {"password", "userid", "hostname", "port", "virtual_host", "transport"})
            if dup:
                raise UsageError(
                    f"bad {setting}: {mask(url)}: {dup[0]!r} cannot be a query parameter of a broker URL",
                    hint="give user and password in the user info: amqp://USER:PASSWORD@host// (percent-encoded)",
                )


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
    """Split a URL into parts as ``kombu.utils.url.url_to_parts`` does (userinfo unquoted).

    A failover list gives the parts of its first URL (the one kombu connects to first); a URL that cannot be
    read unambiguously is a UsageError (see :func:`check`).
    """
    if "://" not in url:
        raise UsageError(f"not a URL: {mask(url)!r}", hint="URLs look like scheme://host/path")
    check(url)
    url = split_failover(url)[0]
    scheme = url.split("://", 1)[0]
    parts = urlsplit(url)
    port = parts.port
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
