"""Bulk work over a whole store: one run's share (``--segment I/N``), a pace (``--max-rate``) and a checkpoint
(``--checkpoint``) that lets a killed run be started again where it stopped."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from taskctl.backends.base import Shard
from taskctl.errors import UsageError
from taskctl.results.checkpoint import Checkpoint

__all__ = ["Checkpoint", "RateLimiter", "check_segments", "parse_shard"]

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
