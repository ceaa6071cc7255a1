"""Celery's filesystem result backend: one file per key in a directory.

Connection string (as Celery's ``FilesystemBackend._find_path`` reads it)::

    file:///absolute/path          file://localhost/absolute/path

The file name is the plain key (``celery-task-meta-<id>``); the content is the serialized meta. Capabilities:
scan (directory listing), no TTL, no pub/sub. Errors: NotFoundError when the directory does not exist,
UnavailableError when it cannot be read, OperationError for other OS errors.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from taskctl.backends.base import ScanPage, Shard, StoredItem, ValueHint, in_shard
from taskctl.errors import NotFoundError, OperationError, UnavailableError, UsageError

#: files a scan page holds
PAGE = 1000


def path_of(url: str) -> Path:
    if url.startswith("file://localhost/"):
        return Path(url[16:])
    if url.startswith("file://"):
        return Path(url[7:])
    raise UsageError(f"not a file:// URL: {url}", hint="e.g. file:///var/celery/results")


class FileResultStore:
    supports_ttl: ClassVar[bool] = False
    supports_scan: ClassVar[bool] = True
    supports_pubsub: ClassVar[bool] = False
    batch_get_size: ClassVar[int] = 1000

    def __init__(self, url: str, directory: Path) -> None:
        self.url = url
        self.directory = directory

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        transport_options: Mapping[str, Any] | None = None,
    ) -> FileResultStore:
        """Only the URL matters: a directory has no endpoint, region, credentials or transport options."""
        directory = path_of(url)
        if not str(directory):
            raise UsageError(f"no directory in {url}", hint="e.g. file:///var/celery/results")
        if not directory.is_dir():
            raise NotFoundError(
                f"result directory {directory} does not exist",
                hint="check the backend URL (Celery's file:// backend needs an existing directory)",
            )
        return cls(url, directory)

    def describe(self) -> str:
        return self.url

    def _path(self, key: str) -> Path | None:
        """None for keys that are not plain file names (an id can never escape the directory)."""
        if not key or "/" in key or "\0" in key or key in (".", "..") or (os.sep != "/" and os.sep in key):
            return None
        return self.directory / key

    def _read(self, key: str, path: Path) -> StoredItem | None:
        try:
            with path.open("rb") as fh:
                data = fh.read()
                mtime = os.fstat(fh.fileno()).st_mtime
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except PermissionError as exc:
            raise UnavailableError(f"cannot read {path}: {exc.strerror}") from None
        except OSError as exc:
            raise OperationError(f"cannot read {path}: {exc.strerror or exc}") from None
        return StoredItem(key=key, value=data, timestamp=mtime)

    def get_many(self, keys: Sequence[str]) -> dict[str, StoredItem]:
        out: dict[str, StoredItem] = {}
        for key in dict.fromkeys(keys):
            path = self._path(key)
            if path is None:
                continue
            item = self._read(key, path)
            if item is not None:
                out[key] = item
        return out

    def iter_many(self, keys: Sequence[str]) -> Iterator[StoredItem]:
        yield from self.get_many(keys).values()

    def delete_many(self, keys: Sequence[str]) -> int:
        n = 0
        for key in dict.fromkeys(keys):
            path = self._path(key)
            if path is None:
                continue
            try:
                path.unlink()
                n += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise OperationError(f"cannot delete {path}: {exc.strerror or exc}") from None
        return n

    def put(self, key: str, value: bytes, *, ttl_seconds: int | None = None) -> None:
        path = self._path(key)
        if path is None:
            raise UsageError(f"not a valid result key: {key!r}")
        try:
            fd, tmp = tempfile.mkstemp(prefix=".taskctl-", dir=self.directory)
            with os.fdopen(fd, "wb") as fh:
                fh.write(value)
            os.replace(tmp, path)  # readers never see half a value
        except OSError as exc:
            raise OperationError(f"cannot write {path}: {exc.strerror or exc}") from None

    def scan_segments(self) -> int:
        return 1

    def scan(
        self,
        prefixes: Sequence[str] | None = None,
        *,
        shard: Shard | None = None,
        segments: int | None = None,
        values: ValueHint | None = None,  # no server-side filter on values: everything is returned
    ) -> Iterator[StoredItem]:
        wanted = tuple(prefixes) if prefixes else None
        try:
            entries = os.scandir(self.directory)
        except OSError as exc:
            raise UnavailableError(f"cannot list {self.directory}: {exc.strerror or exc}") from None
        with entries:
            for entry in entries:
                name = entry.name
                if wanted is not None and not name.startswith(wanted):
                    continue
                if wanted is None and name.startswith("."):
                    continue
                if shard is not None and not in_shard(name, shard):
                    continue
                item = self._read(name, Path(entry.path))
                if item is not None:
                    yield item

    def scan_pages(
        self,
        prefixes: Sequence[str] | None = None,
        *,
        shard: Shard | None = None,
        segments: int | None = None,
        resume: Mapping[int, str | None] | None = None,
        values: ValueHint | None = None,  # no server-side filter on values: everything is returned
    ) -> Iterator[ScanPage]:
        """Pages of PAGE files. A directory listing has no position to resume from: the cursor ``""`` means
        "list again" (what was deleted is gone, so a resumed forget repeats no delete); None: done."""
        if (resume or {}).get(0, "") is None:
            return
        page: list[StoredItem] = []
        for item in self.scan(prefixes, shard=shard):
            page.append(item)
            if len(page) >= PAGE:
                yield ScanPage(0, tuple(page), "")
                page = []
        yield ScanPage(0, tuple(page), None)

    def publish(self, key: str, value: bytes) -> None:
        """No pub/sub (supports_pubsub is False): nothing to wake."""
        return None

    def close(self) -> None:
        return None
