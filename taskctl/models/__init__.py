"""Frozen dataclasses the operations return, one module per command group; every name is re-exported here."""

from taskctl.models.base import Listing, Model, Outcome
from taskctl.models.local import Check, LocalProcess, LocalStack
from taskctl.models.queue import (
    BrokerQueue,
    DrainedLine,
    PurgedQueue,
    QueueMessage,
    QueueStats,
    RestoredMessage,
    RpcResult,
    TransferSummary,
    UnackedMessage,
)
from taskctl.models.result import (
    ForgetReport,
    GroupNode,
    ResultNode,
    ResultTree,
    StoredGroup,
    TaskResult,
    TreeRow,
)
from taskctl.models.table import KeyAttr, TableInfo
from taskctl.models.task import RequeuedTask, RevokedTask, RevokeReport, WorkerReply
from taskctl.models.worker import (
    ConsumerChange,
    RegisteredTask,
    RevokeMatch,
    TopFrame,
    TopRow,
    Worker,
    WorkerEvent,
    WorkerStats,
    WorkerTask,
)

__all__ = [
    "BrokerQueue",
    "Check",
    "ConsumerChange",
    "DrainedLine",
    "ForgetReport",
    "GroupNode",
    "KeyAttr",
    "Listing",
    "LocalProcess",
    "LocalStack",
    "Model",
    "Outcome",
    "PurgedQueue",
    "QueueMessage",
    "QueueStats",
    "RegisteredTask",
    "RequeuedTask",
    "RestoredMessage",
    "ResultNode",
    "ResultTree",
    "RevokeMatch",
    "RevokeReport",
    "RevokedTask",
    "RpcResult",
    "StoredGroup",
    "TableInfo",
    "TaskResult",
    "TopFrame",
    "TopRow",
    "TransferSummary",
    "TreeRow",
    "UnackedMessage",
    "Worker",
    "WorkerEvent",
    "WorkerReply",
    "WorkerStats",
    "WorkerTask",
]
