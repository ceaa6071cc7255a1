"""The live `top` screen: one frame (taskctl.models.TopFrame) drawn with rich, on the terminal's alternate screen.

Drawing stays here with the other renderers; the loop that reads keys and feeds frames is taskctl.topview.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from taskctl.models.worker import TopFrame, TopRow
from taskctl.output.cells import cell, escape

#: section -> (title, [(value key, header)]); the row's name is the first column
SECTION_COLUMNS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "worker": (
        "WORKER",
        [("state", "STATE"), ("active", "ACTIVE"), ("processed", "PROCESSED"), ("load", "LOAD")],
    ),
    "queue": (
        "QUEUE",
        [
            ("ready", "READY"),
            ("unacked", "UNACKED"),
            ("consumers", "CONSUMERS"),
            ("rate_in", "IN/s"),
            ("rate_out", "OUT/s"),
        ],
    ),
    "task": (
        "TASK",
        [
            ("received", "RECV/min"),
            ("succeeded", "OK/min"),
            ("failed", "FAIL/min"),
            ("retried", "RETRY/min"),
            ("runtime_p50", "P50 s"),
            ("runtime_p95", "P95 s"),
        ],
    ),
    "failure": (
        "FAILED TASK",
        [("time", "TIME"), ("worker", "WORKER"), ("task_id", "TASK ID"), ("exception", "EXCEPTION")],
    ),
}
STATE_STYLE = {"up": "green", "offline": "red", "no reply": "yellow"}
KEYS_HELP = "q quit · s sort · / filter"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.0f}"
    return cell(value)


def _table(section: str, rows: list[TopRow], sort: str) -> Any:
    from rich.table import Table
    from rich.text import Text

    title, columns = SECTION_COLUMNS[section]
    t = Table(box=None, pad_edge=False, show_edge=False, header_style="bold reverse")
    name_header = title + (" ▼" if sort == "name" and section != "failure" else "")
    t.add_column(name_header, overflow="ellipsis", no_wrap=True, min_width=24, max_width=60)
    for key, header in columns:
        text = key in ("exception", "task_id", "worker", "time")
        t.add_column(
            header + (" ▼" if key == sort else ""),
            justify="left" if text or key == "state" else "right",
            no_wrap=True,
            overflow="ellipsis",
            max_width=None if key == "exception" else 40,
        )
    for r in rows:
        cells: list[Any] = [Text(cell(r.name))]
        for key, _ in columns:
            v = r.values.get(key)
            style = STATE_STYLE.get(v, "") if key == "state" and isinstance(v, str) else ""
            if key == "exception":
                style = "red"
            if key == "time" and isinstance(v, str) and len(v) >= 19:
                v = v[11:19]  # the ISO time of day (UTC); -o json keeps the whole timestamp
            cells.append(Text(_number(v), style=style))
        t.add_row(*cells)
    return t


def fit(counts: dict[str, int], lines: int) -> dict[str, int]:
    """Rows shown per section when LINES lines are left for rows: the small sections whole, the rest an equal
    share of what remains (a broker with 500 queues still leaves room for the tasks)."""
    shown: dict[str, int] = {}
    left = max(0, lines)
    pending = sorted(counts, key=lambda k: counts[k])
    for i, section in enumerate(pending):
        share = left // (len(pending) - i)
        shown[section] = min(counts[section], share)
        left -= shown[section]
    return shown


def top_screen(frame: TopFrame, height: int | None = None) -> Any:
    """One frame as a rich renderable: the title line, problems, the filter prompt, then each section, cut to
    HEIGHT lines (a section cut short ends with "… N more"): rows past the screen are never drawn."""
    from rich.console import Group
    from rich.text import Text

    # one line each, cut at the right edge: the height budget below counts them as one
    head = Text(escape(frame.title), style="bold", no_wrap=True, overflow="ellipsis")
    head.append(f"   sort: {frame.sort}", style="cyan")
    if frame.filter:
        head.append(f"   filter: {escape(frame.filter)}", style="cyan")
    head.append(f"   {KEYS_HELP}", style="dim")
    parts: list[Any] = [head]
    parts.extend(Text(escape(p), style="yellow", no_wrap=True, overflow="ellipsis") for p in frame.problems)
    if frame.prompt is not None:
        parts.append(Text(f"filter (glob, Enter to apply, Esc to cancel): /{escape(frame.prompt)}█", style="bold"))
    by = {s: [r for r in frame.rows if r.kind == s] for s in SECTION_COLUMNS}
    sections = [s for s in SECTION_COLUMNS if by[s] or s != "failure"]
    # each section takes a blank line and its header; one more line for "… N more" where cut
    room = None if height is None else height - len(parts) - 3 * len(sections)
    shown = fit({s: len(by[s]) for s in sections}, room) if room is not None else {}
    for section in sections:
        rows = by[section]
        keep = shown.get(section, len(rows))
        parts.append(Text(""))
        parts.append(_table(section, rows[:keep], frame.sort))
        if keep < len(rows):
            parts.append(Text(f"… {len(rows) - keep} more (/ to filter)", style="dim"))
    return Group(*parts)


class Screen:
    """The alternate screen with the cursor hidden; ``show(frame)`` draws a frame at once."""

    def __init__(self, live: Any) -> None:
        self._live = live

    def show(self, frame: TopFrame) -> None:
        self._live.update(top_screen(frame, self._live.console.size.height), refresh=True)


@contextmanager
def live_screen() -> Iterator[Screen]:
    """rich's Live on the alternate screen, refreshed only when asked; the terminal is restored on any exit."""
    from rich.console import Console
    from rich.live import Live

    console = Console(highlight=False)
    with Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False, redirect_stderr=False) as live:
        yield Screen(live)
