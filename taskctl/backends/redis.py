"""Celery's Redis result backend: ``celery-task-meta-<id>`` string keys (``global_keyprefix`` in front).

Connection string (redis-py's ``from_url``, as Celery passes it)::

    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]      rediss://... (TLS; ?ssl_cert_reqs=required|optional|none)

Reads are MGET in chunks, deletes pipelined DEL, listing SCAN with a MATCH per prefix. Capabilities: scan,
pub/sub (Celery publishes every stored state on the key's channel, which wakes a waiting client); expiry is
enforced by Redis itself, so nothing is ever "expired but still there". Errors: UnavailableError (refused,
timeout, authentication), OperationError (anything else Redis answers).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from taskctl.backends.base import ScanPage, Shard, StoredItem, ValueHint, in_shard
from taskctl.errors import MissingExtraError, OperationError, TaskctlError, UnavailableError
from taskctl.urls import mask, mask_text

CHUNK = 1000
MAX_COUNT = 10_000
CONNECT_TIMEOUT = 3.0
SOCKET_TIMEOUT = 15.0


def _match_escape(prefix: str) -> str:
    out = []
    for ch in prefix:
        if ch in "*?[]\\":
            out.append("\\")
        out.append(ch)
    return "".join(out)


class RedisResultStore:
    supports_ttl: ClassVar[bool] = False
    supports_scan: ClassVar[bool] = True
    supports_pubsub: ClassVar[bool] = True
    batch_get_size: ClassVar[int] = CHUNK

    def __init__(self, url: str, client: Any) -> None:
        self.url = url
        self.client = client

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        transport_options: Mapping[str, Any] | None = None,
    ) -> RedisResultStore:
        """The URL says it all (host, password, db, TLS); global_keyprefix is applied by the caller's key scheme."""
        try:
            import redis
        except ImportError:
            raise MissingExtraError("redis", "redis", "the redis:// result backend") from None
        with _translate(url, "connect"):
            client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=SOCKET_TIMEOUT)
        return cls(url, client)

    def describe(self) -> str:
        return mask(self.url)

    def get_many(self, keys: Sequence[str]) -> dict[str, StoredItem]:
        unique = list(dict.fromkeys(keys))
        out: dict[str, StoredItem] = {}
        with _translate(self.url, "read results"):
            for i in range(0, len(unique), CHUNK):
                chunk = unique[i : i + CHUNK]
                for key, value in zip(chunk, self.client.mget(chunk), strict=True):
                    if value is not None:
                        out[key] = StoredItem(key=key, value=bytes(value))
        return out

    def iter_many(self, keys: Sequence[str]) -> Iterator[StoredItem]:
        yield from self.get_many(keys).values()

    def delete_many(self, keys: Sequence[str]) -> int:
        unique = list(dict.fromkeys(keys))
        n = 0
        with _translate(self.url, "delete results"):
            for i in range(0, len(unique), CHUNK):
                pipe = self.client.pipeline(transaction=False)
                for key in unique[i : i + CHUNK]:
                    pipe.delete(key)
                n += sum(int(x) for x in pipe.execute())
        return n

    def put(self, key: str, value: bytes, *, ttl_seconds: int | None = None) -> None:
        with _translate(self.url, "store a result"):
            if ttl_seconds is not None and ttl_seconds > 0:
                self.client.set(key, value, ex=ttl_seconds)
            else:
                self.client.set(key, value, keepttl=True)

    def publish(self, key: str, value: bytes) -> None:
        """Celery's Redis backend publishes each stored state on the key's channel."""
        with _translate(self.url, "publish a result"):
            self.client.publish(key, value)

    def scan_segments(self) -> int:
        """One SCAN cursor: Redis answers on one thread, so parallel scans would only queue."""
        return 1

    def scan_count(self) -> int:
        """SCAN's COUNT sized to the database: about a thousandth of its keys a call, 1,000 to 10,000."""
        try:
            with _translate(self.url, "list results"):
                size = int(self.client.dbsize())
        except TaskctlError:
            return CHUNK
        return max(CHUNK, min(MAX_COUNT, size // 1000))

    def scan(
        self,
        prefixes: Sequence[str] | None = None,
        *,
        shard: Shard | None = None,
        segments: int | None = None,
        values: ValueHint | None = None,  # no server-side filter on values: everything is returned
    ) -> Iterator[StoredItem]:
        for page in self.scan_pages(prefixes, shard=shard, segments=segments):
            yield from page.items

    def scan_pages(
        self,
        prefixes: Sequence[str] | None = None,
        *,
        shard: Shard | None = None,
        segments: int | None = None,
        resume: Mapping[int, str | None] | None = None,
        values: ValueHint | None = None,  # no server-side filter on values: everything is returned
    ) -> Iterator[ScanPage]:
        """SCAN with a MATCH per prefix, each reply's values in one MGET; a page's cursor is
        ``<prefix index>:<SCAN cursor>``. SHARD keeps the keys whose CRC-32 is INDEX mod COUNT."""
        patterns = [_match_escape(p) + "*" for p in prefixes] if prefixes else ["*"]
        cursor = (resume or {}).get(0, "")
        if cursor is None:
            return
        at, _, pos = cursor.partition(":") if cursor else ("0", "", "0")
        count = self.scan_count()
        for i in range(int(at), len(patterns)):
            scan_cursor = int(pos) if i == int(at) else 0
            while True:
                with _translate(self.url, "list results"):
                    scan_cursor, keys = self.client.scan(scan_cursor, match=patterns[i], count=count)
                    if shard is not None:
                        keys = [k for k in keys if in_shard(k, shard)]
                    items = tuple(self._values(keys, 0.0)) if keys else ()
                last = scan_cursor == 0 and i == len(patterns) - 1
                yield ScanPage(0, items, None if last else f"{i + (scan_cursor == 0)}:{scan_cursor}")
                if scan_cursor == 0:
                    break

    def _values(self, keys: list[bytes], now: float) -> Iterator[StoredItem]:
        values = self.client.mget(keys)
        for k, v in zip(keys, values, strict=True):
            if v is None:  # expired or deleted between SCAN and MGET
                continue
            yield StoredItem(key=k.decode("utf-8", "replace"), value=bytes(v))

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


@contextmanager
def _translate(url: str, action: str) -> Iterator[None]:
    """Every redis-py exception becomes one TaskctlError line naming the masked URL."""
    try:
        yield
    except TaskctlError:
        raise
    except Exception as exc:
        from redis import exceptions as rx

        if not isinstance(exc, rx.RedisError):
            raise
        msg = mask_text(" ".join(str(exc).split()), url)
        where = mask(url)
        if isinstance(exc, rx.AuthenticationError) or "WRONGPASS" in msg or "NOAUTH" in msg:
            raise UnavailableError(
                f"cannot {action} at {where}: authentication failed ({msg})",
                hint="check the password in the URL (redis://:PASSWORD@host/0)",
            ) from None
        if isinstance(exc, rx.ConnectionError | rx.TimeoutError):
            raise UnavailableError(
                f"cannot {action} at {where}: {msg or type(exc).__name__}",
                hint="is Redis running and reachable from here?",
            ) from None
        raise OperationError(f"cannot {action} at {where}: {msg}") from None
