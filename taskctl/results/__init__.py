"""Stored results: show, forget, list, wait, and walking result trees, on any result store.

Everything reads through one :class:`Reader` (``read``): the store from the registry, the codec, the key
scheme. ``refs`` reads Celery's result tuples without recursion, ``walk`` walks trees one batched read per
level, ``tree`` builds the tree, show and wait models, ``filters`` and ``listing`` serve `result list`,
``forget`` deletes. Names used outside the package are re-exported here.
"""

from __future__ import annotations

from taskctl.formats.result import CHORD_PREFIX, GROUP_PREFIX
from taskctl.results.bulk import Checkpoint, RateLimiter, parse_shard
from taskctl.results.filters import CELERY_STATES, Filters, make_filters
from taskctl.results.forget import forget
from taskctl.results.listing import list_results
from taskctl.results.read import FAILED_STATES, KINDS, Fetched, Options, Reader, task_result, task_row
from taskctl.results.refs import parse_ref, parse_refs, ref_ids, task_meta
from taskctl.results.tree import show, tree, wait
from taskctl.results.walk import Walker, climb, revoke_targets, walk_ids

__all__ = [
    "CELERY_STATES",
    "CHORD_PREFIX",
    "FAILED_STATES",
    "GROUP_PREFIX",
    "KINDS",
    "Checkpoint",
    "Fetched",
    "Filters",
    "Options",
    "RateLimiter",
    "Reader",
    "Walker",
    "climb",
    "forget",
    "list_results",
    "make_filters",
    "parse_ref",
    "parse_refs",
    "parse_shard",
    "ref_ids",
    "revoke_targets",
    "show",
    "task_meta",
    "task_result",
    "task_row",
    "tree",
    "wait",
    "walk_ids",
]
