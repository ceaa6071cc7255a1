"""Generated files kept in step with the code: README's command reference and exit codes, shell completions.

``python -m taskctl.devtools docs|completions [--check]``; ``--check`` exits 1 when a file is stale (tests use it).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COMPLETIONS = ROOT / "completions"
SHELLS = {"bash": "taskctl.bash", "zsh": "_taskctl", "fish": "taskctl.fish"}
COMPLETE_VAR = "_TASKCTL_COMPLETE"


def help_texts() -> list[tuple[str, str]]:
    """(command line, --help text) for every command, as a user sees it at 100 columns."""
    import typer
    from typer._click import Context

    from taskctl.cli import app

    out: list[tuple[str, str]] = []

    def walk(cmd: Any, ctx: Any, path: list[str]) -> None:
        out.append((" ".join(["taskctl", *path]), cmd.get_help(ctx).rstrip()))
        if not hasattr(cmd, "list_commands"):
            return
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            walk(
                sub, Context(sub, info_name=name, parent=ctx, max_content_width=100, terminal_width=100), [*path, name]
            )

    root = typer.main.get_command(app)
    walk(
        root,
        Context(
            root, info_name="taskctl", max_content_width=100, terminal_width=100, help_option_names=["-h", "--help"]
        ),
        [],
    )
    return out


def reference_markdown() -> str:
    parts = []
    for line, text in help_texts():
        depth = line.count(" ")
        heading = "###" if depth <= 1 else "####"
        parts.append(f"{heading} `{line}`\n\n```text\n{text}\n```\n")
    return "\n".join(parts)


def exit_codes_markdown() -> str:
    from taskctl.errors import EXIT_CODE_DOCS, ExitCode

    rows = ["| code | name | meaning |", "|---:|---|---|"]
    for code in ExitCode:
        rows.append(f"| {int(code)} | `{code.name}` | {EXIT_CODE_DOCS[code]} |")
    return "\n".join(rows) + "\n"


def _replace_block(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"README.md lacks the markers {start} ... {end}")
    return pattern.sub(lambda _m: f"{start}\n{body}{end}", text)


#: user documentation of each command group, assembled into README.md in this order
SECTIONS = ["docs/table.md", "docs/result.md", "docs/queue.md", "docs/task.md", "docs/local.md"]


def sections_markdown() -> str:
    return "\n".join((ROOT / p).read_text().strip() + "\n" for p in SECTIONS)


def render_readme(text: str) -> str:
    text = _replace_block(text, "sections", sections_markdown())
    text = _replace_block(text, "reference", reference_markdown())
    return _replace_block(text, "exit-codes", exit_codes_markdown())


def completion_script(shell: str) -> str:
    from typer._completion_classes import completion_init
    from typer._completion_shared import get_completion_script

    completion_init()
    return get_completion_script(prog_name="taskctl", complete_var=COMPLETE_VAR, shell=shell) + "\n"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("docs", "completions"):
        print("usage: python -m taskctl.devtools docs|completions [--check]", file=sys.stderr)
        return 2
    check = "--check" in argv
    stale: list[str] = []
    os.environ.setdefault("COLUMNS", "100")
    if argv[0] == "docs":
        old = README.read_text()
        new = render_readme(old)
        if new != old:
            stale.append(str(README))
            if not check:
                README.write_text(new)
    else:
        COMPLETIONS.mkdir(exist_ok=True)
        for shell, fname in SHELLS.items():
            target = COMPLETIONS / fname
            new = completion_script(shell)
            if not target.is_file() or target.read_text() != new:
                stale.append(str(target))
                if not check:
                    target.write_text(new)
    if check and stale:
        print("stale: " + ", ".join(stale) + f" (run: make {argv[0]})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
