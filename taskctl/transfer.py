"""The one loop that removes a message from a queue only after it is safe somewhere else.

Every command that takes messages off a broker goes through :class:`Transfer`: ``queue drain`` (to a file or
stdout), ``queue move``, ``task requeue --from`` and ``rpc drain``. The caller writes or publishes each
message the engine hands it; then, in batches, the engine makes that durable (``commit``: fsync of the
file, flush of stdout, and the publisher's confirms) and only then acks the source, up to the last message
handed over. A kill at any moment leaves each message in the destination or back in the queue, or both
(duplicates bounded by the prefetch window).

Guarantees, each with a test:

- counts are of what is confirmed done (committed and acked), never of what was merely handed over;
- Ctrl-C: the wait on the broker is short (``COMMIT_IDLE``), what was written is committed, nothing unwritten is
  acked, and ``InterruptedError_`` says what was done; a closed stdout (``BrokenPipeError``) acks nothing
  more;
- an error part-way (a full disk, a refused publish) first commits what is safe (so a rerun does not publish
  it again), then raises with the counts;
- messages a filter does not take stay in place where the broker returns unacked messages to their place
  (RabbitMQ, :attr:`Broker.returns_in_place`: they are simply not acked), else they are published back to
  the tail of the source with confirms. Either way the pass looks at no more than ``scan`` messages.
"""

from __future__ import annotations

import errno
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from taskctl.errors import DiskFullError, InterruptedError_, OperationError, TaskctlError, UnavailableError, UsageError

if TYPE_CHECKING:
    from taskctl.backends.base import Broker, Consumer, Delivery, Getter, Publisher
    from taskctl.formats.message import RawMessage

PREFETCH = 1000
#: commit (fsync, confirms) and ack every BATCH messages: below PREFETCH, or the broker stops delivering
BATCH = 500
#: commit what is handed over after this long without a message (a trickling queue still gets acked); also
#: the longest wait on the broker, so a Ctrl-C is handled at once
COMMIT_IDLE = 0.2
#: with a filter on a broker that returns messages in place: the most messages held unacked by one pass
MAX_HELD = 10_000
#: seconds to wait for confirms when committing on the way out of an error or Ctrl-C
SALVAGE_TIMEOUT = 2.0
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class Source(Protocol):
    def next(self, timeout: float) -> Delivery | None: ...
    def ack_upto(self, delivery: Delivery) -> int: ...


class _FromGetter:
    """A Getter as a source: ``basic_get`` never waits, so an empty queue ends the pass."""

    def __init__(self, getter: Getter) -> None:
        self.getter = getter

    def next(self, timeout: float) -> Delivery | None:
        return self.getter.get()

    def ack_upto(self, delivery: Delivery) -> int:
        return self.getter.ack_upto(delivery)


@dataclass
class Tally:
    """What a transfer did; ``done`` and ``put_back`` count only what is committed and acked."""

    #: messages received from the source
    seen: int = 0
    #: taken messages handed to the caller (written or published, maybe not yet durable)
    handed: int = 0
    #: taken messages durable at the destination and acked in the source
    done: int = 0
    #: not taken: published back to the tail of the source, confirmed
    put_back: int = 0
    #: not taken: left in place (never acked)
    left: int = 0
    #: limit | idle | end | one-pass (a filtered pass looked at its --scan budget)
    stopped: str | None = None
    problems: list[str] = field(default_factory=list)

    def describe(self, verb: str, where: str) -> str:
        """'12 written to out.jsonl and acknowledged; 3 not acknowledged stay in the queue'."""
        text = f"{self.done} {verb} {where} and acknowledged"
        unacked = self.handed - self.done
        if unacked > 0:
            text += f"; {unacked} {verb} but not acknowledged stay in the queue too (duplicates on a rerun)"
        return text + "; the rest stay in the queue"


class Item:
    """One message on its way: RAW to hand over; the caller may attach a row to report after the commit."""

    __slots__ = ("delivery", "raw", "row", "taken")

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.raw: RawMessage = delivery.raw
        self.taken = True
        self.row: object = None


class Transfer:
    """Iterate to get each message to hand over; ack happens in batches after ``commit`` made them durable.

    Use as ``with t.guard(): for item in t: write(item.raw)``; ``guard`` turns Ctrl-C, a broken connection and
    a full disk into errors that say what was done, after committing what is safe.
    """

    def __init__(
        self,
        broker: Broker,
        queue: str,
        *,
        commit: Callable[[], None],
        verb: str,
        where: str,
        limit: int | None = None,
        select: Callable[[RawMessage], bool] | None = None,
        putback: Publisher | None = None,
        sink: Publisher | None = None,
        scan: int | None = None,
        idle: float = 2.0,
        prefetch: int = PREFETCH,
        batch: int = BATCH,
        use_get: bool = False,
        purpose: str = "drain",
        on_commit: Callable[[list[Item]], None] | None = None,
    ) -> None:
        if batch >= prefetch:
            raise UsageError(f"batch {batch} must be smaller than the prefetch window {prefetch}")
        self.broker, self.queue = broker, queue
        self.commit_sink, self.verb, self.where = commit, verb, where
        self.limit, self.select, self.putback, self.sink = limit, select, putback, sink
        self.idle, self.batch, self.use_get, self.purpose = idle, batch, use_get, purpose
        self.on_commit = on_commit
        self.tally = Tally()
        #: filter without a publisher to put messages back: the broker must return them in place
        self.leave = select is not None and broker.returns_in_place and not use_get
        if select is not None and not self.leave and putback is None:
            raise UsageError("a filtered pass needs a publisher to put other messages back")
        self.scan = scan
        self.prefetch = prefetch
        if self.leave:
            # held (not taken) messages stay unacked: the window must hold the whole scan plus a batch
            bound = MAX_HELD if scan is None else min(scan, MAX_HELD)
            self.scan = bound
            self.prefetch = bound + batch + 1
        self._pending: list[Item] = []
        self._source: Source | None = None
        self._consumer: Consumer | None = None

    # -- committing ---------------------------------------------------------------------------------------------

    def _commit(self, timeout: float | None = None) -> None:
        pending = self._pending
        if not pending or self._source is None:
            return
        self.commit_sink()
        for pub in (self.sink, self.putback):
            if pub is not None:
                if timeout is None:
                    pub.flush()
                else:
                    pub.flush(timeout)
        if self.leave:
            consumer = self._consumer
            assert consumer is not None
            for item in pending:
                if item.taken:
                    consumer.ack_one(item.delivery)
        else:
            self._source.ack_upto(pending[-1].delivery)
        for item in pending:
            if item.taken:
                self.tally.done += 1
            elif not self.leave:
                self.tally.put_back += 1
        done = list(pending)
        pending.clear()
        if self.on_commit is not None:
            self.on_commit(done)

    def _salvage(self) -> None:
        """On the way out of an error: commit what is safe, within seconds; never raise."""
        try:
            self._commit(SALVAGE_TIMEOUT)
        except BaseException:
            self._pending.clear()

    # -- the loop -----------------------------------------------------------------------------------------------

    def _open(self) -> AbstractContextManager[Consumer | Getter]:
        if self.use_get:
            return self.broker.getter(self.queue, purpose=self.purpose)
        return self.broker.consume(self.queue, prefetch=self.prefetch, purpose=self.purpose)

    def __iter__(self) -> Iterator[Item]:
        t = self.tally
        scan = self.scan
        with self._open() as opened:
            if self.use_get:
                self._source = _FromGetter(opened)  # type: ignore[arg-type]
            else:
                self._consumer = opened  # type: ignore[assignment]
                self._source = opened  # type: ignore[assignment]
            source = self._source
            assert source is not None
            pending = self._pending
            try:
                # seconds spent waiting on the source without a message: time spent committing does not count,
                # and a source may return None at once to have what it handed over committed (SQS, before the
                # visibility timeout of what it holds runs out)
                waited = 0.0
                limit, select, batch, idle = self.limit, self.select, self.batch, self.idle
                monotonic = time.monotonic
                while True:
                    if limit is not None and t.handed >= limit:
                        t.stopped = "limit"
                        break
                    if scan is not None and t.seen >= scan:
                        t.stopped = "one-pass" if select is not None else "end"
                        break
                    asked = monotonic()
                    d = source.next(COMMIT_IDLE if pending else min(COMMIT_IDLE, idle))
                    if d is None:
                        waited += monotonic() - asked
                        self._commit()
                        if self.use_get:
                            t.stopped = "end"
                            break
                        if waited >= idle:
                            t.stopped = "idle"
                            break
                        continue
                    waited = 0.0
                    t.seen += 1
                    item = Item(d)
                    if select is not None and not select(d.raw):
                        item.taken = False
                        if self.leave:
                            t.left += 1
                            continue
                        if self.putback is not None:
                            from taskctl.formats.message import for_republish

                            self.putback.publish(for_republish(d.raw), "", self.queue)
                        pending.append(item)
                    else:
                        yield item
                        # the caller asked for the next one: ITEM is written (or published, or skipped by it)
                        if item.taken:
                            t.handed += 1
                        pending.append(item)
                    if len(pending) >= batch:
                        self._commit()
                self._commit()
            except BaseException:
                self._salvage()
                raise
            finally:
                self._source = None
                self._consumer = None

    def put_back(self, item: Item) -> None:
        """The caller does not take ITEM after all (requeue: a skipped task): back to the source's tail."""
        item.taken = False
        if self.putback is not None:
            from taskctl.formats.message import for_republish

            self.putback.publish(for_republish(item.raw), "", self.queue)

    @contextmanager
    def guard(self) -> Iterator[Tally]:
        """Errors in the caller's loop: commit what is safe, then raise an error that says what was done."""
        try:
            yield self.tally
        except BrokenPipeError:
            # stdout closed: nothing more is acked (the lines in the pipe's buffer may be lost to the reader)
            self._pending.clear()
            raise
        except KeyboardInterrupt:
            self._salvage()
            raise InterruptedError_(f"interrupted: {self.tally.describe(self.verb, self.where)}") from None
        except OSError as exc:
            self._pending.clear()
            if exc.errno in DISK_FULL:
                raise DiskFullError(
                    f"{self.where}: {(exc.strerror or 'no space left on device').lower()}: "
                    f"{self.tally.describe(self.verb, self.where)}",
                    hint="free some space and run the command again: nothing was lost",
                ) from None
            raise OperationError(
                f"cannot write {self.where}: {exc.strerror or exc}; {self.tally.describe(self.verb, self.where)}"
            ) from None
        except UnavailableError as exc:
            raise UnavailableError(
                f"{exc.message}; {self.tally.describe(self.verb, self.where)}", hint=exc.hint
            ) from None
        except TaskctlError as exc:
            self._salvage()
            if exc.message.endswith("the rest stay in the queue"):
                raise
            raise type(exc)(
                f"{exc.message}; {self.tally.describe(self.verb, self.where)}", hint=exc.hint, code=exc.code
            ) from None


def flush_stdout() -> None:
    """The commit of a drain to stdout: what reached the pipe is as durable as stdout gets."""
    sys.stdout.flush()
