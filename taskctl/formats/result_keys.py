"""Celery's result keys: the kind prefixes, ``global_keyprefix`` in both spellings, DynamoDB's ``b'…'`` ids.

Pure: no I/O, stdlib only.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

TASK_PREFIX = "celery-task-meta-"
GROUP_PREFIX = "celery-taskset-meta-"
CHORD_PREFIX = "chord-unlock-"
KIND_PREFIXES = {"task": TASK_PREFIX, "group": GROUP_PREFIX, "chord-counter": CHORD_PREFIX}


def global_prefixes(global_keyprefix: str | None) -> tuple[str, ...]:
    """What Celery prepends to every key: 5.5+ adds '_' unless the prefix ends in one of ': _ - .';
    5.4 and older always add '_'. Both spellings, newest first, when they differ."""
    if not global_keyprefix:
        return ("",)
    new = global_keyprefix if global_keyprefix[-1] in ":_-." else global_keyprefix + "_"
    old = global_keyprefix + "_"
    return (new,) if new == old else (new, old)


@dataclass(frozen=True)
class ParsedKey:
    kind: str  # task | group | chord-counter
    id: str
    prefix: str  # the global prefix part ("" without one)


@dataclass(frozen=True)
class KeyScheme:
    """Celery's key layout under one ``global_keyprefix`` (or none)."""

    global_keyprefix: str | None = None

    @property
    def prefixes(self) -> tuple[str, ...]:
        return global_prefixes(self.global_keyprefix)

    def keys(self, kind: str, ident: str) -> list[str]:
        return [p + KIND_PREFIXES[kind] + ident for p in self.prefixes]

    def task_keys(self, task_id: str) -> list[str]:
        return self.keys("task", task_id)

    def kind_prefixes(self, kinds: tuple[str, ...] = ("task", "group", "chord-counter")) -> list[str]:
        return [p + KIND_PREFIXES[k] for p in self.prefixes for k in kinds]

    def parse(self, key: str) -> ParsedKey | None:
        """The kind and id of KEY, or None when it is not one of Celery's keys under this prefix."""
        for p in sorted(self.prefixes, key=len, reverse=True):
            if not key.startswith(p):
                continue
            rest = key[len(p) :]
            for kind, kp in KIND_PREFIXES.items():
                if rest.startswith(kp) and len(rest) > len(kp):
                    return ParsedKey(kind, rest[len(kp) :], p)
        return None


def dynamodb_id(key: str) -> str:
    """The ``id`` Celery's DynamoDB backend writes: ``str()`` of the key as bytes, i.e. ``b'celery-task-meta-…'``
    (celery/celery#5455, unchanged up to 5.7)."""
    return str(key.encode("utf-8"))


def from_dynamodb_id(item_id: str) -> str:
    """The plain key inside a DynamoDB ``id`` (written by Celery with the b'…' wrapper, or by hand without)."""
    if len(item_id) >= 3 and item_id[0] == "b" and item_id[1] in "'\"" and item_id[-1] == item_id[1]:
        inner = item_id[2:-1]
        if "\\" not in inner:
            return inner
        try:  # the escapes of a bytes repr (\\xNN, \\\\, \\'); no ast: it is not thread-safe in 3.11
            raw: bytes = codecs.escape_decode(inner.encode("ascii"))[0]
            return raw.decode("utf-8", "backslashreplace")
        except (ValueError, UnicodeEncodeError):
            return item_id
    return item_id
