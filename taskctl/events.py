"""Warnings, notes and progress from any layer, without importing the renderer.

The CLI installs handlers (stderr, rich progress on a terminal, silence under --quiet); library users get
plain stderr warnings and no progress.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class ProgressHandle(Protocol):
    def advance(self, n: int = 1) -> None: ...
    def update(
        self, *, total: int | None = None, completed: int | None = None, description: str | None = None
    ) -> None: ...


class _NullProgress:
    def advance(self, n: int = 1) -> None:
        return None

    def update(self, *, total: int | None = None, completed: int | None = None, description: str | None = None) -> None:
        return None


def _stderr_warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _ignore(message: str) -> None:
    return None


_warn: Callable[[str], None] = _stderr_warn
_note: Callable[[str], None] = _ignore


@contextmanager
def _null_progress(description: str, total: int | None) -> Iterator[ProgressHandle]:
    yield _NullProgress()


_progress: Callable[[str, int | None], object] = _null_progress


def install(
    *,
    warn: Callable[[str], None] | None = None,
    note: Callable[[str], None] | None = None,
    progress: Callable[[str, int | None], object] | None = None,
) -> None:
    """Replace the handlers (the CLI does this once per run)."""
    global _warn, _note, _progress
    if warn is not None:
        _warn = warn
    if note is not None:
        _note = note
    if progress is not None:
        _progress = progress


def reset() -> None:
    install(warn=_stderr_warn, note=_ignore, progress=_null_progress)


def warn(message: str) -> None:
    """Something the user should know that does not stop the command (stderr)."""
    _warn(message)


def note(message: str) -> None:
    """Detail shown only with --verbose (stderr)."""
    _note(message)


def progress(description: str, total: int | None = None) -> AbstractContextManager[ProgressHandle]:
    """Context manager yielding a handle; a progress bar on a terminal's stderr, nothing otherwise."""
    return _progress(description, total)  # type: ignore[return-value]


@contextmanager
def routed(warn: Callable[[str], None], note: Callable[[str], None] | None = None) -> Iterator[None]:
    """Send warnings (and notes) to WARN while a full-screen view owns the terminal; the handlers come back after."""
    global _warn, _note
    saved = _warn, _note
    _warn, _note = warn, note or _ignore
    try:
        yield
    finally:
        _warn, _note = saved
