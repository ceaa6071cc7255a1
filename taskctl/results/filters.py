"""The filters `result list` and `result forget` share: state, task name, age."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taskctl import events
from taskctl.backends.base import ValueHint
from taskctl.formats.compression import CELERY_COMPRESSED_MAGIC
from taskctl.formats.result import parse_date_done

if TYPE_CHECKING:
    from taskctl.results.read import Fetched

    pass


#: the states Celery itself sets (celery.states.ALL_STATES); anything else is a custom state
CELERY_STATES = frozenset(
    {"PENDING", "RECEIVED", "STARTED", "SUCCESS", "FAILURE", "REVOKED", "REJECTED", "RETRY", "IGNORED"}
)


@dataclass(frozen=True)
class Filters:
    states: frozenset[str] = frozenset()
    task_glob: str | None = None
    older_than: float | None = None
    newer_than: float | None = None
    #: bytes: only values larger than this (``result list --larger-than``)
    larger_than: int | None = None

    @property
    def any(self) -> bool:
        return bool(
            self.states
            or self.task_glob
            or self.older_than is not None
            or self.newer_than is not None
            or self.larger_than is not None
        )

    def describe(self) -> dict[str, object]:
        """The filters as JSON (what a checkpoint records to recognise its command)."""
        return {
            "states": sorted(self.states),
            "task": self.task_glob,
            "older_than": self.older_than,
            "newer_than": self.newer_than,
            "larger_than": self.larger_than,
        }

    def value_hint(self) -> ValueHint | None:
        """What a store may filter on its server. --larger-than: the stored bytes' size, exactly. --state: a value
        holds its state's name as text in every serializer Celery writes (json, msgpack, yaml, pickle), unless
        compressed (kept whole); not where the state can be implied without the text (PENDING is what a meta
        without a status reads as; UNKNOWN is an unreadable value)."""
        states = bool(self.states) and not self.states & {"PENDING", "UNKNOWN"}
        if not states and self.larger_than is None:
            return None
        return ValueHint(
            contains=tuple(s.encode("utf-8") for s in sorted(self.states)) if states else (),
            or_starts_with=(CELERY_COMPRESSED_MAGIC,) if states else (),
            larger_than=self.larger_than,
        )

    def age_ok(self, when: float | None, now: float) -> bool:
        if self.older_than is None and self.newer_than is None:
            return True
        if when is None:
            return False
        age = now - when
        if self.older_than is not None and age < self.older_than:
            return False
        return not (self.newer_than is not None and age > self.newer_than)

    def matches(self, f: Fetched, now: float) -> bool:
        """:meth:`task_ok`, where a value that defeats the filters matches only when nothing is filtered."""
        try:
            return self.task_ok(f, now)
        except Exception:
            return not self.any

    def task_ok(self, f: Fetched, now: float) -> bool:
        if self.larger_than is not None and f.decoded.size <= self.larger_than:
            return False
        meta = f.meta
        state = meta.status if meta is not None else "UNKNOWN"
        if self.states and state not in self.states:
            return False
        if self.task_glob and not fnmatch.fnmatchcase((meta.name if meta else None) or "", self.task_glob):
            return False
        return self.age_ok(when(f), now)


def when(f: Fetched) -> float | None:
    """Age is measured on date_done; DynamoDB's timestamp (a file's mtime) where there is none."""
    if f.meta is not None:
        d = parse_date_done(f.meta.date_done)
        if d is not None:
            return d.timestamp()
    return f.item.timestamp


def make_filters(
    states: Sequence[str] = (),
    task_glob: str | None = None,
    older_than: float | None = None,
    newer_than: float | None = None,
    larger_than: int | None = None,
) -> Filters:
    wanted = {s.strip().upper() for raw in states for s in raw.split(",") if s.strip()}
    for state in sorted(wanted - CELERY_STATES):
        # custom states (PROGRESS, ...) are legitimate: say what was probably meant, and go on
        close = difflib.get_close_matches(state, sorted(CELERY_STATES), n=1, cutoff=0.6)
        if close:
            events.warn(f"no Celery state {state}; did you mean {close[0]}?")
    return Filters(frozenset(wanted), task_glob, older_than, newer_than, larger_than)
