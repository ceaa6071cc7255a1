"""Result trees render in every format in linear time and memory, at any depth, without recursion.

`result tree -o json` of a 5,000-link chain used to take 96 s and 651 MB (indentation grew with depth, and the
encoder recursed); a 10,000-level tree ended in RecursionError. The recursion limit is left as it is.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import time
from typing import Any

import pytest

from taskctl import output
from taskctl.formats.output import FORMATS
from taskctl.models import GroupNode, ResultNode, ResultTree


def chain(n: int) -> ResultTree:
    """A chain of N tasks (each the only child of the one before), a group halfway, results at every link."""
    node: ResultNode | GroupNode = ResultNode(f"id-{n - 1}", "SUCCESS", True, "app.add", result={"v": [n - 1]})
    for i in range(n - 2, -1, -1):
        if i == n // 2:
            node = GroupNode(f"g-{i}", children=(node,))
            continue
        node = ResultNode(f"id-{i}", "SUCCESS", True, "app.add", result={"v": [i]}, children=(node,))
    return ResultTree(node, {"SUCCESS": n - 1}, n)


def rendered(value: Any, fmt: str) -> tuple[str, float]:
    buf = io.StringIO()
    start = time.perf_counter()
    output.Renderer(fmt, out=buf, width=250).render(value)
    return buf.getvalue(), time.perf_counter() - start


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null|\s+')


def count_nodes(text: str) -> tuple[int, int]:
    """(task nodes, group nodes) of nested JSON, checked token by token with a stack: json.loads recurses."""
    stack: list[str] = []
    tasks = groups = 0
    pos = 0
    prev = ""
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        assert m, f"not JSON at {pos}: {text[pos : pos + 40]!r}"
        tok = m.group()
        pos = m.end()
        if tok.isspace():
            continue
        if tok in "{[":
            stack.append(tok)
        elif tok in "}]":
            assert stack and stack.pop() == ("{" if tok == "}" else "["), f"unbalanced at {pos}"
        elif tok == ":" and prev in ('"task_id"', '"group_id"') and stack[-1] == "{":
            tasks += prev == '"task_id"'
            groups += prev == '"group_id"'
        prev = tok
    assert not stack
    return tasks, groups


def check(tree: ResultTree, n: int, fmt: str, text: str) -> None:
    lines = text.splitlines()
    if fmt == "json":
        assert count_nodes(text) == (n - 1, 1)
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in lines]
        assert len(rows) == n and [r["depth"] for r in rows[:3]] == [0, 1, 2] and rows[-1]["depth"] == n - 1
        assert rows[-1]["id"] == f"id-{n - 1}" and rows[n // 2]["kind"] == "group"
    elif fmt in ("csv", "tsv"):
        rows = list(csv.DictReader(io.StringIO(text), delimiter="," if fmt == "csv" else "\t"))
        assert len(rows) == n and rows[-1]["id"] == f"id-{n - 1}" and rows[-1]["depth"] == str(n - 1)
    elif fmt == "markdown":
        assert len(lines) == n + 2 and lines[1].startswith("|--")
        assert f"| id-{n - 1} " in lines[-1]
    elif fmt == "plain":
        assert len(lines) == n + 1 and lines[-1].split()[:3] == [str(n - 1), "task", f"id-{n - 1}"]
    else:  # table: one line a node and the counts
        assert len(lines) == n + 1 and lines[-1] == f"SUCCESS {n - 1}"
        assert f"id-{n - 1} SUCCESS app.add" in lines[-2] and f"depth {n - 2}" in lines[-2]


@pytest.mark.parametrize("n", [5_000, 10_000])
def test_deep_chains_render_in_every_format_in_linear_size(n: int) -> None:
    tree = chain(n)
    limit = sys.getrecursionlimit()
    sizes = {}
    for fmt in FORMATS:
        text, _ = rendered(tree, fmt)
        check(tree, n, fmt, text)
        sizes[fmt] = len(text)
    assert sys.getrecursionlimit() == limit
    # linear: at most a couple of KB a node in any format (indentation stops growing with depth; it was
    # 100 KB a node at 5,000 levels)
    assert max(sizes.values()) < 2_000 * n, sizes


def test_json_is_within_a_few_times_jsonl() -> None:
    tree = chain(5_000)
    best: dict[str, float] = {}
    for _ in range(3):
        for fmt in ("json", "jsonl"):
            best[fmt] = min(best.get(fmt, 1e9), rendered(tree, fmt)[1])
    assert best["json"] < 5 * best["jsonl"], best


def test_json_time_grows_linearly() -> None:
    small, big = chain(2_000), chain(8_000)
    t_small = min(rendered(small, "json")[1] for _ in range(3))
    t_big = min(rendered(big, "json")[1] for _ in range(3))
    assert t_big < 4 * 3 * t_small, (t_small, t_big)  # 4x the nodes: well under the 16x of a quadratic writer


def test_shallow_tree_json_equals_json_dumps() -> None:
    """The stack writer writes what json.dumps writes, where json.dumps can (depth 300, indent 2)."""
    tree = chain(300)
    text, _ = rendered(tree, "json")
    doc = json.loads(text)
    # walk the parsed chain down: every level is there, in order
    node, depth = doc, 0
    while node["children"]:
        node, depth = node["children"][0], depth + 1
    assert depth == 299 and node["task_id"] == "id-299"
    top = rendered(chain(10), "json")[0]  # shallower than MAX_INDENT_DEPTH: indented exactly as json.dumps
    assert top == json.dumps(json.loads(top), indent=2, ensure_ascii=False) + "\n"


def test_deep_stored_value_is_not_a_recursion_error() -> None:
    """A stored result nested 10,000 levels (hostile or odd data) renders in every format."""
    value: Any = "bottom"
    for _ in range(10_000):
        value = {"k": [value]}
    node = ResultNode("deep", "SUCCESS", True, "app.x", result=value)
    tree = ResultTree(node, {"SUCCESS": 1}, 1)
    for fmt in FORMATS:
        text, _ = rendered(tree, fmt)
        assert "deep" in text
        if fmt in ("table", "plain", "markdown"):
            assert "…" in text  # cut for people, after writing only what is shown
        if fmt in ("csv", "tsv"):
            assert text.count('"k"') == 10_000  # never cut
