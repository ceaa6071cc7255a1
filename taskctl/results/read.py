"""The one stored-result reader: a store from the registry, the codec settings, the key scheme; rows built
from what it reads, with a ``problem`` where a stored value defeats them."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from taskctl import backends, events
from taskctl.errors import UsageError
from taskctl.formats.result import (
    KIND_PREFIXES,
    Decoded,
    GroupRef,
    KeyScheme,
    ResultFormatError,
    TaskMeta,
    decode_payload,
    normalize_serializer,
    to_plain,
)
from taskctl.models import TaskResult
from taskctl.results.refs import parse_ref, ref_ids, task_meta

if TYPE_CHECKING:
    from taskctl.backends.base import ResultStore, StoredItem
    from taskctl.config import Settings

KINDS = tuple(KIND_PREFIXES)


FAILED_STATES = frozenset({"FAILURE", "REVOKED"})


@dataclass(frozen=True)
class Options:
    """How stored values are read: the serializer Celery used, its global_keyprefix, and --unsafe-pickle."""

    serializer: str | None = None
    key_prefix: str | None = None
    unsafe_pickle: bool = False


@dataclass
class Fetched:
    item: StoredItem
    decoded: Decoded
    meta: TaskMeta | None


class Reader:
    """A result store plus the codec settings to read it with."""

    def __init__(self, settings: Settings, opts: Options | None = None, store: ResultStore | None = None) -> None:
        opts = opts or Options()
        try:
            self.serializer = normalize_serializer(opts.serializer or settings.serializer)
        except ResultFormatError as exc:
            raise UsageError(str(exc)) from None
        prefix = (
            opts.key_prefix
            if opts.key_prefix is not None
            else (settings.key_prefix or settings.result_transport_options.get("global_keyprefix"))
        )
        self.keys = KeyScheme(prefix or None)
        self.unsafe_pickle = opts.unsafe_pickle
        self.store = store if store is not None else backends.result_store(settings)
        self._warned: set[str] = set()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def decode(self, task_id: str, item: StoredItem) -> Fetched:
        dec = decode_payload(item.value, self.serializer, unsafe_pickle=self.unsafe_pickle)
        if dec.sniffed and dec.serializer not in self._warned:
            self._warned.add(str(dec.serializer))
            events.warn(
                f"some results are stored as {dec.serializer}, not {self.serializer} as configured "
                "(read anyway; pass --serializer to say what the workers use)"
            )
        meta = None
        if dec.ok:
            try:
                meta = task_meta(dec.value, task_id)
            except Exception as exc:  # stored data is untrusted: one odd value is a problem on its row, not a crash
                dec.error = f"cannot read task meta: {type(exc).__name__}: {exc}"[:300]
            else:
                if meta is None:
                    dec.error = "not Celery task meta"
        if meta is not None:
            # the parsed meta holds all that is shown: drop the raw bytes and the decoded dict (big trees)
            dec.value = None
            item = replace(item, value=None)
        return Fetched(item, dec, meta)

    def fetch(self, ids: Sequence[str]) -> dict[str, Fetched]:
        """Task id -> what is stored, for the ids that have something stored (one batched read)."""
        keymap: dict[str, str] = {}
        for i in ids:
            for k in self.keys.task_keys(i):
                keymap.setdefault(k, i)
        out: dict[str, Fetched] = {}
        if not keymap:
            return out
        if len(self.keys.prefixes) == 1:
            # decode each batch as it arrives, while the store fetches the next ones
            for item in self.store.iter_many(list(keymap)):
                owner = keymap.get(item.key)
                if owner is not None and owner not in out:
                    out[owner] = self.decode(owner, item)
            return out
        items = self.store.get_many(list(keymap))
        for i in ids:
            if i in out:
                continue
            for k in self.keys.task_keys(i):
                if k in items:
                    out[i] = self.decode(i, items[k])
                    break
        return out

    def group(self, group_id: str) -> GroupRef | None:
        """The saved group ``celery-taskset-meta-<id>`` (``GroupResult.save()``), or None."""
        keys = self.keys.keys("group", group_id)
        found = self.store.get_many(keys)
        for k in keys:
            if k in found:
                dec = decode_payload(found[k].value, self.serializer, unsafe_pickle=self.unsafe_pickle)
                ref = parse_ref(dec.value.get("result")) if dec.ok and isinstance(dec.value, Mapping) else None
                return ref if isinstance(ref, GroupRef) else None
        return None


def is_expired(item: StoredItem, now: float) -> bool:
    return item.expires_at is not None and item.expires_at < now


def task_result(task_id: str, f: Fetched | None, now: float | None = None) -> TaskResult:
    """The show/list row for one id (PENDING with found=false when nothing is stored)."""
    if f is None:
        return TaskResult(task_id=task_id, state="PENDING", found=False)
    now = time.time() if now is None else now
    dec, meta = f.decoded, f.meta
    expired = is_expired(f.item, now)
    if meta is None:
        return TaskResult(
            task_id=task_id,
            state="UNKNOWN",
            found=True,
            expired=expired,
            serializer=dec.serializer,
            compression=dec.compression,
            undecodable=dec.undecodable()
            or {"error": dec.error, "size": dec.size, "head": dec.head, "compression": dec.compression},
            problem=dec.error or "not Celery task meta",
            size=dec.size,
        )
    exc = meta.exception
    return TaskResult(
        task_id=task_id,
        state=meta.status,
        found=True,
        name=meta.name,
        args=to_plain(meta.args),
        kwargs=to_plain(meta.kwargs),
        result=None if exc else to_plain(meta.result),
        exception=exc.to_json() if exc else None,
        traceback=meta.traceback,
        date_done=meta.date_done,
        worker=meta.worker,
        retries=meta.retries,
        queue=meta.queue,
        parent_id=meta.parent_id,
        group_id=meta.group_id,
        children=tuple(ref_ids(meta.children)),
        expired=expired,
        serializer=dec.serializer,
        compression=dec.compression,
        problem="; ".join(p for p in (dec.problem, meta.problem) if p) or None,
        size=dec.size,
    )


def task_row(task_id: str, f: Fetched | None, now: float) -> TaskResult:
    """:func:`task_result`, or a row with a ``problem`` when the stored value defeats it (one bad item never
    stops a command over many)."""
    try:
        return task_result(task_id, f, now)
    except Exception as exc:
        return _problem_row(task_id, f, exc)


def _problem_row(task_id: str, f: Fetched | None, exc: BaseException) -> TaskResult:
    dec = f.decoded if f is not None else None
    why = f"cannot read task meta: {type(exc).__name__}: {exc}"[:300]
    return TaskResult(
        task_id=task_id,
        state="UNKNOWN",
        found=True,
        serializer=dec.serializer if dec else None,
        compression=dec.compression if dec else None,
        undecodable={
            "error": why,
            "size": dec.size if dec else 0,
            "head": dec.head if dec else "",
            "compression": None,
        },
        problem=why,
    )


def need_ids(ids: Sequence[str]) -> None:
    if not ids:
        raise UsageError("no task ids given", hint="pass one or more ids, or '-' to read them from stdin")
