"""Revokes and requeues: what `task` commands return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from taskctl.models.base import Model


@dataclass(frozen=True)
class WorkerReply(Model):
    """One worker's answer to a remote-control request (`task revoke`)."""

    columns: ClassVar[tuple[str, ...]] = ("worker", "ok", "message")

    worker: str
    ok: bool
    message: str


@dataclass(frozen=True)
class RevokeReport(Model):
    """`task revoke`: what was broadcast, who answered, and what was marked REVOKED in the result backend."""

    #: ids the revoke was broadcast for (with --dry-run: would be)
    revoked: tuple[str, ...]
    #: ids stored as REVOKED in the result backend by taskctl
    marked: tuple[str, ...]
    #: ids left alone because their stored state is already ready (SUCCESS, FAILURE, REVOKED)
    skipped_ready: tuple[str, ...]
    #: ids left alone because a worker has them (STARTED or a custom state such as PROGRESS)
    skipped_running: tuple[str, ...]
    replies: tuple[WorkerReply, ...]
    terminate: bool
    signal: str
    #: "none" when no result backend is configured, "skipped" with --no-mark, else the masked backend URL
    backend: str
    dry_run: bool = False


@dataclass(frozen=True)
class RevokedTask(Model):
    """`task revoked`: one id some online worker holds as revoked, and which workers hold it."""

    columns: ClassVar[tuple[str, ...]] = ("task_id", "workers")

    task_id: str
    workers: tuple[str, ...]


@dataclass(frozen=True)
class RequeuedTask(Model):
    """`task requeue`: one message put back (or that would be, or was skipped, and why)."""

    columns: ClassVar[tuple[str, ...]] = ("task_id", "task", "source", "queue", "action", "note")

    task_id: str | None
    task: str | None
    #: the dead-letter queue, or "results" for --from-results
    source: str
    #: the queue it went (or would go) to
    queue: str | None
    #: requeued | would-requeue | skipped
    action: str
    note: str | None = None
    #: --new-id: the id the task was published under
    new_id: str | None = None
