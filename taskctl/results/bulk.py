"""Bulk work over a whole store: one run's share (``--segment I/N``), a pace (``--max-rate``) and a checkpoint
(``--checkpoint``) that lets a killed run be started again where it stopped."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskctl.backends.base import Shard
from taskctl.errors import OperationError, UsageError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
MAX_SEGMENTS = 1024


def parse_shard(text: str | None) -> Shard | None:
    """``I/N`` (as the AWS CLI's --segment/--total-segments): run I of N, 0 <= I < N."""
    if text is None:
        return None
    m = _SHARD.match(text)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)) <= MAX_SEGMENTS:
        raise UsageError(f"bad --segment {text!r}", hint=f"use I/N with 0 <= I < N <= {MAX_SEGMENTS}, e.g. 0/4 ... 3/4")
    return Shard(int(m.group(1)), int(m.group(2)))


def check_segments(segments: int | None) -> None:
    if segments is not None and not 1 <= segments <= MAX_SEGMENTS:
        raise UsageError(f"--segments must be 1 to {MAX_SEGMENTS}")


class RateLimiter:
    """A token bucket: RATE items a second on average, bursts of at most a tenth of a second's worth. It starts
    empty, so even a short run keeps to the rate. None: no limit."""

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise UsageError("--max-rate must be more than 0")
        self.rate = rate
        self.burst = max(1.0, (rate or 0) / 10)
        self.tokens = 0.0
        self._clock = clock
        self._sleep = sleep
        self._last = clock()

    def take(self, n: int) -> None:
        """Wait until N more items keep to the rate (a debt is paid by sleeping, so batches of any size work)."""
        if self.rate is None or n <= 0:
            return
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate) - n
        self._last = now
        if self.tokens < 0:
            self._sleep(-self.tokens / self.rate)


@dataclass
class Checkpoint:
    """Where a forget stands, in a JSON file rewritten atomically (temp file, fsync, rename) as it goes.

    ``job`` says which command it belongs to (a checkpoint of another command is refused); ``positions`` maps
    a scan segment to the cursor its next page starts at (None: finished); ``done`` counts the items deleted so
    far; ``plan`` holds a tree forget's walked deletion order, so a rerun does not walk again.
    """

    path: Path
    job: dict[str, Any]
    positions: dict[int, str | None] = field(default_factory=dict)
    done: int = 0
    plan: dict[str, Any] | None = None
    #: items deleted by earlier runs (``done`` when this run loaded it)
    earlier: int = 0

    @classmethod
    def open(cls, path: str | Path, job: Mapping[str, Any]) -> Checkpoint:
        """The checkpoint at PATH for JOB: fresh when the file does not exist, else where the last run stopped."""
        p = Path(path)
        job = json.loads(json.dumps(job))  # as it reads back
        try:
            raw = p.read_text("utf-8")
        except FileNotFoundError:
            return cls(p, dict(job))
        except OSError as exc:
            raise UsageError(f"cannot read checkpoint {p}: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw)
            positions = {int(k): v for k, v in data["positions"].items()}
            done = int(data["done"])
            stored_job = data["job"]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(
                f"{p} is not a taskctl checkpoint", hint="pass a new file, or delete this one to start over"
            ) from None
        if stored_job != job:
            raise UsageError(
                f"checkpoint {p} belongs to another command ({json.dumps(stored_job, sort_keys=True)[:300]})",
                hint="run that command again with it, or pass a new file to start over",
            )
        return cls(p, dict(job), positions, done, data.get("plan"), earlier=done)

    def finished(self, segments: int) -> bool:
        """Every one of SEGMENTS scanned to its end."""
        return all(s in self.positions and self.positions[s] is None for s in range(segments))

    def save(self) -> None:
        data = {"job": self.job, "positions": self.positions, "done": self.done, "plan": self.plan}
        directory = self.path.parent
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, separators=(",", ":"))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)  # the rename itself survives a crash
            finally:
                os.close(dfd)
        except OSError as exc:
            raise OperationError(f"cannot write checkpoint {self.path}: {exc.strerror or exc}") from None
