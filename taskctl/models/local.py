"""The local stack and doctor checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

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


@dataclass(frozen=True)
class Check(Model):
    """One line of `taskctl doctor`: pass, warn or fail, with a hint for anything but pass."""

    columns: ClassVar[tuple[str, ...]] = ("name", "status", "detail", "hint")

    name: str
    status: str  # "pass" | "warn" | "fail"
    detail: str
    hint: str | None = None
