"""`taskctl top` on a terminal: the live view's loop, its keys, and the terminal mode it needs.

The data comes from :class:`taskctl.Monitor` (its threads consume events and poll workers and queues);
each frame is drawn by :mod:`taskctl.output.live`. The terminal is put in no-echo, unbuffered-keys mode (the
signal keys stay on, so Ctrl-C interrupts as in every command) and restored on every way out.
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskctl import backends, events, monitor, workers
from taskctl.errors import TaskctlError
from taskctl.formats import control as fmt
from taskctl.models.worker import TopFrame, TopRow
from taskctl.output import live
from taskctl.urls import mask, mask_text

if TYPE_CHECKING:
    from taskctl.config import Settings

#: longest filter glob typed at the prompt
MAX_GLOB = 200
ESCAPE = "escape"
ENTER = "enter"
BACKSPACE = "backspace"


def parse_keys(data: str) -> list[str]:
    """Key presses in what one read returned: characters, ENTER, BACKSPACE, ESCAPE; arrow and function keys
    (escape sequences) are dropped."""
    out: list[str] = []
    i = 0
    while i < len(data):
        ch = data[i]
        if ch == "\x1b":
            if i + 1 < len(data) and data[i + 1] in "[O":
                i += 2
                while i < len(data) and not ("@" <= data[i] <= "~"):  # parameters up to the final byte
                    i += 1
                i += 1
                continue
            out.append(ESCAPE)
        elif ch in "\r\n":
            out.append(ENTER)
        elif ch in "\x7f\x08":
            out.append(BACKSPACE)
        elif ch.isprintable():
            out.append(ch)
        i += 1
    return out


@dataclass
class ViewState:
    """What the keys change: the sort key, the filter, the filter being typed, quitting."""

    sort: str = "name"
    filter: str | None = None
    prompt: str | None = None
    quit: bool = False

    def press(self, key: str) -> bool:
        """Apply one key; True when the screen should be drawn again at once."""
        if self.prompt is not None:
            if key == ENTER:
                self.filter = self.prompt.strip() or None
                self.prompt = None
            elif key == ESCAPE:
                self.prompt = None
            elif key == BACKSPACE:
                self.prompt = self.prompt[:-1]
            elif len(key) == 1 and len(self.prompt) < MAX_GLOB:
                self.prompt += key
            else:
                return False
            return True
        if key in ("q", "Q"):
            self.quit = True
        elif key in ("s", "S"):
            keys = monitor.SORT_KEYS
            i = keys.index(self.sort) if self.sort in keys else -1
            self.sort = keys[(i + (1 if key == "s" else -1)) % len(keys)]
        elif key == "/":
            self.prompt = ""
        elif key == ESCAPE and self.filter:
            self.filter = None
        else:
            return False
        return True


class Keys:
    """Key presses from a terminal: no echo, no line editing; ISIG kept, so Ctrl-C raises KeyboardInterrupt."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: list[Any] | None = None

    def __enter__(self) -> Keys:
        import termios

        self._saved = termios.tcgetattr(self.fd)
        mode = termios.tcgetattr(self.fd)
        mode[3] &= ~(termios.ICANON | termios.ECHO)
        cc = mode[6]
        assert isinstance(cc, list)
        cc[termios.VMIN] = 1
        cc[termios.VTIME] = 0
        # Ctrl-Z off: a stopped view would leave the shell on the alternate screen in this mode
        cc[termios.VSUSP] = b"\x00" if isinstance(cc[termios.VSUSP], bytes) else 0
        termios.tcsetattr(self.fd, termios.TCSANOW, mode)
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def read(self, timeout: float) -> list[str]:
        """The keys pressed within ``timeout`` seconds (empty when none)."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        data = os.read(self.fd, 256)
        if not data:  # the terminal went away: nothing more will come
            return ["q"]
        return parse_keys(data.decode("utf-8", errors="replace"))


#: seconds between remote-control rounds (workers) and management API reads (queues) in the live view
WORKERS_EVERY = 5.0
QUEUES_EVERY = 2.0
#: seconds before a failed connection is tried again
RETRY_AFTER = 2.0
#: seconds a warning stays on the live view's screen
WARNING_FOR = 10.0


class Monitor:
    """The live view's data: Celery's events consumed in one thread, workers and queues polled in another.

    Nothing here raises once started: a broken broker becomes a line in ``problems()`` and is tried again.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        timeout: float = 1.0,
        failures: int = monitor.FAILURES,
        workers_every: float = WORKERS_EVERY,
        queues_every: float = QUEUES_EVERY,
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        self.workers_every = workers_every
        self.queues_every = queues_every
        self.aggregate = monitor.Aggregate(failures=failures)
        self._stop = threading.Event()
        self._problems: dict[str, str] = {}
        self._warning: tuple[float, str] | None = None
        self._plock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for target, name in ((self._consume, "taskctl-top-events"), (self._poll, "taskctl-top-poll")):
            th = threading.Thread(target=target, name=name, daemon=True)
            th.start()
            self._threads.append(th)

    def stop(self, wait: float = 1.0) -> None:
        """Ask both threads to end; wait up to ``wait`` s (they are daemons: a stuck call cannot hold the exit)."""
        self._stop.set()
        deadline = time.monotonic() + wait
        for th in self._threads:
            th.join(max(0.0, deadline - time.monotonic()))

    def rows(self) -> list[TopRow]:
        return self.aggregate.rows()

    def problems(self) -> list[str]:
        """One line per failing source (events, workers, queues), the latest warning for WARNING_FOR seconds,
        and how to turn task events on."""
        now = time.monotonic()
        with self._plock:
            out = [f"{k}: {v}" for k, v in sorted(self._problems.items())]
            events_broken = "events" in self._problems
            if self._warning is not None and now - self._warning[0] <= WARNING_FOR:
                out.append(f"warning: {self._warning[1]}")
        agg = self.aggregate
        if not agg.task_events_seen and agg.clock() - agg.started >= monitor.QUIET_HINT_AFTER and not events_broken:
            out.append("no task events: run 'taskctl worker events --enable' or start workers with -E")
        return out

    def warn(self, message: str) -> None:
        """A warning from a lower layer, shown on the screen instead of stderr (which the screen covers)."""
        with self._plock:
            self._warning = (time.monotonic(), fmt.bounded(message, 300))

    def _problem(self, source: str, exc: BaseException | None) -> None:
        with self._plock:
            if exc is None:
                self._problems.pop(source, None)
            elif isinstance(exc, TaskctlError):
                self._problems[source] = exc.message
            else:  # a bug shows as a line, never a traceback over the screen
                urls = [u for u in (self.settings.broker, self.settings.management_url) if u]
                self._problems[source] = mask_text(f"internal error: {type(exc).__name__}: {exc}", *urls)

    def _consume(self) -> None:
        while not self._stop.is_set():
            try:
                source = backends.open_control(self.settings).events(tick=0.25)
                try:
                    for ev in source:
                        self._problem("events", None)
                        if ev is not None:
                            self.aggregate.add(ev)
                        if self._stop.is_set():
                            return
                finally:
                    source.close()
            except Exception as exc:
                self._problem("events", exc)
                self._stop.wait(RETRY_AFTER)

    def _poll(self) -> None:
        next_workers = next_queues = 0.0
        has_management: bool | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_workers:
                try:
                    ins = workers.Inspector(self.settings, timeout=self.timeout)
                    has_management = monitor.lists_queues(self.settings, ins.control.has_management)
                    stats, active = ins.calls(["stats", "active"])
                    self.aggregate.set_workers(stats, active, ins.names(stats, active))
                    self._problem("workers", None)
                    next_workers = time.monotonic() + self.workers_every
                except Exception as exc:
                    self._problem("workers", exc)
                    next_workers = time.monotonic() + RETRY_AFTER
            if has_management and now >= next_queues:
                try:
                    self.aggregate.set_queues(monitor.queue_rows(self.settings))
                    self._problem("queues", None)
                    next_queues = time.monotonic() + self.queues_every
                except Exception as exc:
                    self._problem("queues", exc)
                    next_queues = time.monotonic() + RETRY_AFTER
            wake = min(next_workers, next_queues if has_management else next_workers)
            self._stop.wait(max(0.05, wake - time.monotonic()))


def frame(mon: Monitor, state: ViewState, title: str) -> TopFrame:
    rows = monitor.filter_rows(monitor.sort_rows(mon.rows(), state.sort), state.filter)
    return TopFrame(
        rows=tuple(rows),
        title=f"{title} · {time.strftime('%H:%M:%S')}",
        sort=state.sort,
        filter=state.filter,
        prompt=state.prompt,
        problems=tuple(mon.problems()),
    )


@contextmanager
def _exit_on_hangup() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like an exit (128 + signal), so the terminal is restored on the way out."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    saved = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextmanager
def _running(mon: Monitor) -> Iterator[Monitor]:
    mon.start()
    try:
        yield mon
    finally:
        mon.stop()


def run(
    settings: Settings,
    *,
    interval: float = 1.0,
    timeout: float = 1.0,
    failures: int = monitor.FAILURES,
    sort: str = "name",
    glob: str | None = None,
) -> int:
    """The live view until `q` (exit 0); Ctrl-C raises KeyboardInterrupt after the terminal is restored."""
    monitor.sort_rows([], sort)  # a bad key is a usage error before the screen changes
    backends.open_control(settings)  # a missing or unknown broker URL: an error before the screen changes
    title = f"taskctl top · {mask(settings.broker or '')} · every {interval:g}s"
    state = ViewState(sort=sort, filter=glob)
    mon = Monitor(settings, timeout=timeout, failures=failures)
    with (
        _exit_on_hangup(),
        events.routed(mon.warn),  # stderr is under the screen: warnings go on it, notes nowhere
        Keys(sys.stdin.fileno()) as keys,
        live.live_screen() as screen,
        _running(mon),
    ):
        next_draw = 0.0
        redraw = True
        while not state.quit:
            now = time.monotonic()
            if redraw or now >= next_draw:
                screen.show(frame(mon, state, title))
                if now >= next_draw:
                    next_draw = now + interval
                redraw = False
            for key in keys.read(next_draw - time.monotonic()):
                redraw = state.press(key) or redraw
                if state.quit:
                    break
    return 0
