"""The local stack and doctor checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from taskctl.models.base import Model


@dataclass(frozen=True)
class LocalProcess(Model):
    """One process of the local stack (`taskctl local status`)."""

    columns: ClassVar[tuple[str, ...]] = ("component", "kind", "pid", "alive", "address", "log")

    component: str
    kind: str
    pid: int | None
    alive: bool
    address: str | None
    log: str | None


@dataclass(frozen=True)
class LocalStack(Model):
    """The embedded local stack: what runs where, and what `local up`/`down` just did."""

    running: bool
    state_dir: str
    env: str
    config_file: str | None
    backend: str | None
    broker: str | None
    table: str | None
    dynamodb: LocalProcess | None
    worker: LocalProcess | None
    broker_folders: dict[str, str] = field(default_factory=dict)
    actions: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        def proc(p: LocalProcess | None) -> dict[str, Any] | None:
            if p is None:
                return None
            return {"kind": p.kind, "pid": p.pid, "alive": p.alive, "address": p.address, "log": p.log}

        return {
            "running": self.running,
            "state_dir": self.state_dir,
            "env": self.env,
            "config_file": self.config_file,
            "backend": self.backend,
            "broker": self.broker,
            "table": self.table,
            "dynamodb": proc(self.dynamodb),
            "worker": proc(self.worker),
            "broker_folders": dict(self.broker_folders),
            "actions": list(self.actions),
        }


@dataclass(frozen=True)
class Check(Model):
    """One line of `taskctl doctor`: pass, warn or fail, with a hint for anything but pass."""

    columns: ClassVar[tuple[str, ...]] = ("name", "status", "detail", "hint")

    name: str
    status: str  # "pass" | "warn" | "fail"
    detail: str
    hint: str | None = None
