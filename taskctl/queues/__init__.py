"""Queue operations, the library behind `taskctl queue`: one import for the two halves.

taskctl.queues.inspect looks (stats, list, peek) and purges; taskctl.queues.drain takes messages off (drain,
move) through the one transfer engine, taskctl.transfer; taskctl.queues.publish puts drained ones back.
"""

from __future__ import annotations

from taskctl.queues.drain import FILESYSTEM_WARNING, drain, move
from taskctl.queues.drainfile import LineFile, raw_record
from taskctl.queues.inspect import list_queues, management_api, peek, purge, queue_message, stats
from taskctl.queues.publish import publish, read_records
from taskctl.queues.unacked import restore, unacked
from taskctl.transfer import BATCH, COMMIT_IDLE, PREFETCH

__all__ = [
    "BATCH",
    "COMMIT_IDLE",
    "FILESYSTEM_WARNING",
    "PREFETCH",
    "LineFile",
    "drain",
    "list_queues",
    "management_api",
    "move",
    "peek",
    "publish",
    "purge",
    "queue_message",
    "raw_record",
    "read_records",
    "restore",
    "stats",
    "unacked",
]
