"""Start-up benchmark: `taskctl --help`, `taskctl table --help`, `celery --help`, `aws dynamodb help`.

Scripts call taskctl in loops and shell completion runs it on every TAB, so start-up is latency users feel.
Each command runs RUNS times as a fresh process, interleaved so that machine load hits all of them alike;
the table shows medians and the ratio to `celery --help`. Goal: `taskctl --help` at most 1/3 of celery's.

    python bench/startup.py [--runs 15] [--json]

A tool that is not installed is skipped and named in the output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
GOAL_RATIO = 1 / 3


def _tool(name: str) -> str | None:
    """The tool next to this Python first (the venv), else on PATH; pyenv shims resolved to the real script."""
    local = BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found and "/shims/" in found and shutil.which("pyenv"):
        real = subprocess.run(["pyenv", "which", name], capture_output=True, text=True, check=False)
        if real.returncode == 0 and real.stdout.strip():
            return real.stdout.strip()
    return found


def commands() -> tuple[dict[str, list[str]], dict[str, str]]:
    """name -> argv for the tools found; name -> why skipped for the others."""
    found: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    taskctl = _tool("taskctl")
    base = [taskctl] if taskctl else [sys.executable, "-m", "taskctl"]
    found["taskctl --help"] = [*base, "--help"]
    found["taskctl table --help"] = [*base, "table", "--help"]
    for name, tool, args in (
        ("celery --help", "celery", ["--help"]),
        ("aws dynamodb help", "aws", ["dynamodb", "help"]),
    ):
        path = _tool(tool)
        if path is None:
            skipped[name] = f"{tool} is not installed"
        else:
            found[name] = [path, *args]
    return found, skipped


def time_once(argv: list[str]) -> float:
    env = {**os.environ, "PAGER": "cat", "MANPAGER": "cat", "AWS_EC2_METADATA_DISABLED": "true"}
    start = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    took = time.perf_counter() - start
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}")
    return took


def measure(runs: int) -> dict[str, object]:
    cmds, skipped = commands()
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    broken: dict[str, str] = {}
    for name, argv in cmds.items():  # warm the page cache once; not counted
        try:
            time_once(argv)
        except RuntimeError as exc:
            broken[name] = str(exc)
    for name in broken:
        skipped[name] = broken[name]
        del cmds[name], samples[name]
    for _ in range(runs):
        for name, argv in cmds.items():
            samples[name].append(time_once(argv))
    medians = {name: statistics.median(s) for name, s in samples.items()}
    ref = medians.get("celery --help")
    rows = [
        {
            "command": name,
            "median_s": round(m, 4),
            "min_s": round(min(samples[name]), 4),
            "ratio_to_celery": round(m / ref, 3) if ref else None,
        }
        for name, m in medians.items()
    ]
    ratio = rows[0]["ratio_to_celery"]
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {
        "runs": runs,
        "load_average_1m": load,
        "results": rows,
        "skipped": skipped,
        "goal": "taskctl --help <= 1/3 of celery --help",
        "goal_met": None if ratio is None else ratio <= GOAL_RATIO,
    }


def markdown(report: dict[str, object]) -> str:
    lines = [
        f"Start-up, median of {report['runs']} fresh processes (load average {report['load_average_1m']}):",
        "",
        "| command | median | min | ratio to `celery --help` |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in report["results"]:  # type: ignore[attr-defined]
        ratio = "-" if r["ratio_to_celery"] is None else f"{r['ratio_to_celery']:.2f}"
        lines.append(f"| `{r['command']}` | {r['median_s'] * 1000:.0f} ms | {r['min_s'] * 1000:.0f} ms | {ratio} |")
    for name, why in report["skipped"].items():  # type: ignore[attr-defined]
        lines.append(f"\nskipped `{name}`: {why}")
    met = report["goal_met"]
    lines.append(f"\nGoal ({report['goal']}): {'met' if met else 'not met' if met is False else 'not measured'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15, help="fresh processes per command (default 15)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    report = measure(max(1, args.runs))
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
