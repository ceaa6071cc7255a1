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
  the tail of the source with confirms. Either way the pass looks at no more than ``scan`` messages;
- a broker connection lost mid-run (a restart, a connection closed by an operator) is opened again up to
  ``retries`` times with exponential backoff: what was handed over is made durable, its message keys are
  remembered, and when the broker delivers those messages again they are acked without being handed over a
  second time. A publisher's lost connection is replaced and the unconfirmed publishes of the batch are sent
  again (duplicates at most one batch);
- with a checkpoint (taskctl.results.checkpoint), the keys of each batch are written to it after the commit
  and before the ack, so a run killed in between and started again acks those messages without writing or
  publishing them again.
"""

from __future__ import annotations

import errno
import hashlib
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from taskctl import events
from taskctl.errors import DiskFullError, InterruptedError_, OperationError, TaskctlError, UnavailableError, UsageError

if TYPE_CHECKING:
    from taskctl.backends.base import Broker, Consumer, Delivery, Getter, Publisher
    from taskctl.formats.message import RawMessage
    from taskctl.results.checkpoint import Checkpoint

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
#: reconnects after a lost broker connection, unless the caller says otherwise (--retries)
RETRIES = 5
#: the first wait before a reconnect, doubled each time up to BACKOFF_MAX seconds
BACKOFF = 0.5
BACKOFF_MAX = 15.0
#: message keys of committed, unacked messages kept (each batch's are dropped once it is acked)
MAX_KEYS = 20_000


def message_key(raw: RawMessage) -> tuple[str, bool]:
    """A key naming one message: its task id (or message id) and a digest of its body. The flag says it has an id;
    a message without one is recognised only when the broker marks it redelivered (identical bodies are common)."""
    ident = (raw.headers or {}).get("id") or (raw.properties or {}).get("message_id")
    digest = hashlib.blake2b(raw.body, digest_size=8).hexdigest()
    if isinstance(ident, str | bytes) and ident:
        text = ident.decode("utf-8", "replace") if isinstance(ident, bytes) else ident
        return f"{text[:200]}:{digest}", True
    return f"-:{digest}", False


def backoff(attempt: int) -> float:
    """Seconds to wait before reconnect ATTEMPT (1, 2, ...): 0.5, 1, 2, 4, ... at most BACKOFF_MAX."""
    return float(min(BACKOFF_MAX, BACKOFF * 2 ** (attempt - 1)))


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
    #: written or published before (by an earlier run, or before a reconnect) and delivered again: acked only
    recovered: int = 0
    #: broker connections opened again after a loss
    reconnects: int = 0
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

    __slots__ = ("delivery", "has_id", "key", "raw", "recovered", "row", "sent", "taken", "was")

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.raw: RawMessage = delivery.raw
        self.taken = True
        #: written or published already (an earlier run, or before a reconnect): only acked
        self.recovered = False
        #: for a recovered item: "" or "a" done already, "t" taken or "p" put back by this run (not yet counted)
        self.was = ""
        #: message_key(raw), where the transfer tracks keys (--retries, --checkpoint)
        self.key = ""
        self.has_id = False
        self.row: object = None
        #: what was published for it (message, exchange, routing key), sent again if the publisher is replaced
        self.sent: list[tuple[RawMessage, str, str]] | None = None


class Transfer:
    """Iterate to get each message to hand over; ack happens in batches after ``commit`` made them durable.

    Use as ``with t.guard(): for item in t: write(item.raw)`` (or ``t.publish(item, ...)``); ``guard`` turns
    Ctrl-C, a broken connection and a full disk into errors that say what was done, after committing what is
    safe. ``publisher`` opens the publisher the transfer publishes with (``t.publish``) and puts back with;
    the transfer opens it again when its connection is lost.
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
        publisher: Callable[[], AbstractContextManager[Publisher]] | None = None,
        scan: int | None = None,
        idle: float = 2.0,
        prefetch: int = PREFETCH,
        batch: int = BATCH,
        use_get: bool = False,
        purpose: str = "drain",
        on_commit: Callable[[list[Item]], None] | None = None,
        retries: int = 0,
        checkpoint: Checkpoint | None = None,
        checkpoint_state: Callable[[], Mapping[str, Any]] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if batch >= prefetch:
            raise UsageError(f"batch {batch} must be smaller than the prefetch window {prefetch}")
        if retries < 0:
            raise UsageError("--retries must be 0 or more")
        self.broker, self.queue = broker, queue
        self.commit_sink, self.verb, self.where = commit, verb, where
        self.limit, self.select = limit, select
        self.idle, self.batch, self.use_get, self.purpose = idle, batch, use_get, purpose
        self.on_commit = on_commit
        self.retries = retries
        self.checkpoint, self.checkpoint_state = checkpoint, checkpoint_state
        self._sleep = sleep
        self.tally = Tally()
        #: opens the publisher (publishes, put-backs); opened on first use and again after a lost connection
        self._open_publisher = publisher
        self.sink: Publisher | None = None
        self._pub_stack: ExitStack | None = None
        #: filter without a publisher to put messages back: the broker must return them in place
        self.leave = select is not None and broker.returns_in_place and not use_get
        if select is not None and not self.leave and publisher is None:
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
        #: keys of messages written/published (made durable) that may come back -> "t" (taken by this run, not
        #: yet counted as done), "p" (put back by this run), "" (done by an earlier run, maybe not acked) or "a"
        #: (acked: an ack sent on a connection the broker had already closed is lost, so the last batches acked
        #: are kept; one of them is recognised only when the broker says it is redelivered)
        self._known: dict[str, str] = {}
        #: the key lists of the batches acked last, oldest first: together at most one prefetch window and a batch
        self._acked: deque[list[str]] = deque()
        self._acked_n = 0
        self._keep = min(MAX_KEYS, self.prefetch + batch)
        self._track = retries > 0 or checkpoint is not None
        if checkpoint is not None:
            for flag, name in (("a", "acked"), ("", "unacked")):
                for k in checkpoint.state.get(name) or ():
                    if isinstance(k, str):
                        self._known[k] = flag
        #: reconnects in a row without a commit between them
        self._attempts = 0
        #: messages left in place (not taken) on this connection: looked at again after a reconnect
        self._left_here = 0
        self._opened = False
        #: the pending batch is counted in the checkpoint's ``done``
        self._recorded = False
        #: items handed over before a lost connection, by key, until their redelivery is acked (for on_commit)
        self._lost_items: dict[str, Item] = {}

    # -- the publisher ------------------------------------------------------------------------------------------

    def _publisher(self) -> Publisher:
        if self.sink is None:
            if self._open_publisher is None:
                raise UsageError("this transfer has no publisher")
            stack = ExitStack()
            try:
                self.sink = stack.enter_context(self._open_publisher())
            except BaseException:
                stack.close()
                raise
            self._pub_stack = stack
        return self.sink

    def _drop_publisher(self) -> None:
        """Close a publisher whose connection is gone (its unconfirmed messages are sent again on a new one)."""
        stack, self._pub_stack, self.sink = self._pub_stack, None, None
        if stack is not None:
            try:
                stack.__exit__(UnavailableError, UnavailableError("connection lost"), None)
            except Exception:
                pass

    def close(self) -> None:
        """Close the publisher the transfer opened."""
        stack, self._pub_stack = self._pub_stack, None
        if stack is not None:
            stack.close()
        self.sink = None

    def _with_publisher(self, action: Callable[[Publisher], None]) -> None:
        """Run ACTION on the publisher; a lost connection is replaced (the batch's publishes sent again)."""
        while True:
            try:
                action(self._publisher())
                return
            except UnavailableError as exc:
                self._wait_to_reconnect(exc, "publisher")
                self._drop_publisher()
                try:
                    self._replay()
                except UnavailableError:
                    continue  # counted at the next try

    def _replay(self) -> None:
        """On a new publisher: every publish of the batch not yet acked, in order (they may not have arrived)."""
        pub = self._publisher()
        for item in self._pending:
            for raw, exchange, routing_key in item.sent or ():
                pub.publish(raw, exchange, routing_key)

    def publish(self, item: Item, raw: RawMessage, exchange: str, routing_key: str) -> None:
        """Publish RAW for ITEM (acked in the source once confirmed); sent again if the publisher is replaced."""
        self._with_publisher(lambda pub: pub.publish(raw, exchange, routing_key))
        if item.sent is None:
            item.sent = []
        item.sent.append((raw, exchange, routing_key))

    def check_destination(self, exchange: str, routing_key: str) -> None:
        """NotFoundError unless the destination exists (checked once per publisher)."""
        self._with_publisher(lambda pub: pub.check_destination(exchange, routing_key))

    def _wait_to_reconnect(self, exc: UnavailableError, what: str) -> None:
        """Wait before reconnect number N, or raise EXC when the retries are used up."""
        if self._attempts >= self.retries:
            raise exc
        self._attempts += 1
        self.tally.reconnects += 1
        delay = backoff(self._attempts)
        events.warn(
            f"{exc.message}; connecting the {what} again in {delay:g}s (retry {self._attempts} of {self.retries})"
        )
        self._sleep(delay)

    # -- committing ---------------------------------------------------------------------------------------------

    def _durable(self, timeout: float | None = None) -> None:
        """What was handed over made durable: the caller's commit (fsync) and every publish confirmed."""
        self.commit_sink()
        if self.sink is None:
            return
        if timeout is not None:
            pub = self.sink
            pub.flush(timeout)  # on the way out: no reconnect
        else:
            self._with_publisher(lambda pub: pub.flush())

    def _record(self, pending: list[Item]) -> None:
        """Before the ack: the batch's keys into the checkpoint, so a rerun acks them without writing them again."""
        if self.checkpoint is None:
            return
        # every item of a batch is written, published back or recovered (left ones never join a batch)
        unacked = [k for k, flag in self._known.items() if flag != "a"]
        self._save([*unacked, *(i.key for i in pending)], pending)

    def _save(self, unacked: list[str], pending: list[Item]) -> None:
        cp = self.checkpoint
        assert cp is not None
        cp.state["unacked"] = unacked[-MAX_KEYS:]
        cp.state["acked"] = [k for k, flag in self._known.items() if flag == "a"][-MAX_KEYS:]
        if not self._recorded:  # a batch recorded, then cut off before its ack, is saved again but counted once
            cp.done += sum(1 for i in pending if i.taken)
            self._recorded = True
        if self.checkpoint_state is not None:
            cp.state.update(self.checkpoint_state())
        cp.save()

    def _commit(self, timeout: float | None = None) -> None:
        pending = self._pending
        if not pending or self._source is None:
            return
        self._durable(timeout)
        self._record(pending)
        if self.leave:
            consumer = self._consumer
            assert consumer is not None
            for item in pending:
                if item.taken or item.recovered:
                    consumer.ack_one(item.delivery)
        else:
            self._source.ack_upto(pending[-1].delivery)
        for item in pending:
            if item.recovered:
                if item.was == "t":
                    self.tally.done += 1
                elif item.was == "p":
                    self.tally.put_back += 1
                else:
                    self.tally.recovered += 1
            elif item.taken:
                self.tally.done += 1
            elif not self.leave:
                self.tally.put_back += 1
        if self._track:
            self._remember_acked(pending)
        # a message handed over before a lost connection is reported when its redelivery is acked
        lost = self._lost_items
        done = [lost.pop(i.key, i) if i.recovered else i for i in pending if not i.recovered or i.key in lost]
        pending.clear()
        self._recorded = False
        self._attempts = 0
        if self.on_commit is not None and done:
            self.on_commit(done)

    def _remember_acked(self, pending: list[Item]) -> None:
        keys = [i.key for i in pending]
        known = self._known
        for k in keys:
            known[k] = "a"
        self._acked.append(keys)
        self._acked_n += len(keys)
        while self._acked_n - len(self._acked[0]) >= self._keep:
            old = self._acked.popleft()
            self._acked_n -= len(old)
            for k in old:
                if known.get(k) == "a":
                    del known[k]

    def _salvage(self) -> None:
        """On the way out of an error: commit what is safe, within seconds; never raise."""
        try:
            self._commit(SALVAGE_TIMEOUT)
        except BaseException:
            self._pending.clear()

    def _lost(self) -> None:
        """The source's connection is gone: make what was handed over durable and remember its keys; the broker
        delivers those messages again and they are then acked without being handed over again."""
        pending = self._pending
        if pending:
            self._durable()
            for item in pending:
                self._known[item.key] = item.was if item.recovered else "t" if item.taken else "p"
                if not item.recovered:
                    self._lost_items[item.key] = item
            if self.checkpoint is not None:
                self._save([k for k, flag in self._known.items() if flag != "a"], pending)
            pending.clear()
            self._recorded = False
        while len(self._known) > MAX_KEYS:
            self._known.pop(next(iter(self._known)))
        while len(self._lost_items) > MAX_KEYS:
            self._lost_items.pop(next(iter(self._lost_items)))
        # held messages come back and are looked at again
        self.tally.seen -= self._left_here
        self.tally.left -= self._left_here
        self._left_here = 0

    def _recover(self, item: Item) -> bool:
        """ITEM was written/published before and not acked: mark it to be acked only."""
        flag = self._known.get(item.key)
        if flag is None or not (item.raw.redelivered or (item.has_id and flag != "a")):
            return False
        item.was = self._known.pop(item.key)
        item.recovered = True
        item.taken = False
        return True

    # -- the loop -----------------------------------------------------------------------------------------------

    def _open(self) -> AbstractContextManager[Consumer | Getter]:
        if self.use_get:
            return self.broker.getter(self.queue, purpose=self.purpose)
        return self.broker.consume(self.queue, prefetch=self.prefetch, purpose=self.purpose)

    def __iter__(self) -> Iterator[Item]:
        while True:
            try:
                yield from self._pass()
                return
            except UnavailableError as exc:
                if not self._opened:
                    raise  # never connected: nothing to go on with
                self._lost()
                self._wait_to_reconnect(exc, "consumer")

    def _pass(self) -> Iterator[Item]:
        """One connection's worth of the loop; a lost connection leaves the batch pending for ``_lost``."""
        t = self.tally
        scan = self.scan
        with self._open() as opened:
            self._opened = True
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
                    item = Item(d)
                    if self._track:
                        item.key, item.has_id = message_key(d.raw)
                    if self._known and self._recover(item):
                        pending.append(item)
                    else:
                        t.seen += 1
                        if select is not None and not select(d.raw):
                            item.taken = False
                            if self.leave:
                                t.left += 1
                                self._left_here += 1
                                continue
                            from taskctl.formats.message import for_republish

                            self.publish(item, for_republish(d.raw), "", self.queue)
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
            except UnavailableError:
                raise  # the batch stays pending: __iter__ makes it durable and reconnects
            except BaseException:
                self._salvage()
                raise
            finally:
                self._source = None
                self._consumer = None

    def put_back(self, item: Item) -> None:
        """The caller does not take ITEM after all (requeue: a skipped task): back to the source's tail."""
        item.taken = False
        if self._open_publisher is not None:
            from taskctl.formats.message import for_republish

            self.publish(item, for_republish(item.raw), "", self.queue)

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
        finally:
            self.close()


def flush_stdout() -> None:
    """The commit of a drain to stdout: what reached the pipe is as durable as stdout gets."""
    sys.stdout.flush()
