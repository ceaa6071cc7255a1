"""`taskctl top` on a terminal: the live view's loop, its keys, and the terminal mode it needs.

The data comes from :class:`taskctl.monitor.Monitor` (its threads consume events and poll workers and queues);
each frame is drawn by :mod:`taskctl.output.live`. The terminal is put in no-echo, unbuffered-keys mode (the
signal keys stay on, so Ctrl-C interrupts as in every command) and restored on every way out.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskctl import backends, events, monitor
from taskctl.models.worker import TopFrame
from taskctl.output import live
from taskctl.urls import mask

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


def frame(mon: monitor.Monitor, state: ViewState, title: str) -> TopFrame:
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
def _running(mon: monitor.Monitor) -> Iterator[monitor.Monitor]:
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
    mon = monitor.Monitor(settings, timeout=timeout, failures=failures)
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
