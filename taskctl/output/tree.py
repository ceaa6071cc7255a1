"""The terminal view of a result tree: guide lines, one label per node, a count per state.

Lines come as (text, style) segments; the renderer turns them into rich text. The walk keeps its own stack and
each line's guides are a linked list shared with its parent's, so a 10,000-level chain is neither a
RecursionError nor quadratic: past MAX_GUIDES levels a line shows its depth and the last guides only.
"""

from __future__ import annotations

from collections.abc import Iterator

from taskctl.models import GroupNode, ResultNode, ResultTree
from taskctl.output.cells import TREE_LIMIT, escape, exception_text, value_text

#: a piece of a tree line: text and a style, either a state name (coloured by STATE_STYLES) or a rich style
Segment = tuple[str, str | None]
#: guides drawn per line; deeper lines start with "… depth N" and the last MAX_GUIDES guides
MAX_GUIDES = 16

# the guides of a line: (this level's guide, the parent's guides, depth), None at the root
_Guides = tuple[str, "_Guides | None", int] | None


def _prefix(guides: _Guides) -> str:
    parts: list[str] = []
    depth = guides[2] if guides else 0
    while guides is not None and len(parts) < MAX_GUIDES:
        parts.append(guides[0])
        guides = guides[1]
    text = "".join(reversed(parts))
    return f"… depth {depth} " + text if guides is not None else text


def node_label(node: ResultNode | GroupNode) -> list[Segment]:
    if isinstance(node, GroupNode):
        label: list[Segment] = [("group ", "bold"), (escape(node.group_id), "cyan")]
        return [*label, (" (repeat)", "dim")] if node.repeat else label
    state = escape(node.state) if node.found else "PENDING (not stored)"
    parts: list[Segment] = [(escape(node.task_id), None), (state, node.state)]
    if node.name:
        parts.append((escape(node.name), "bold"))
    if node.exception:
        parts.append((escape(exception_text(node.exception)), "red"))
    elif node.result is not None:
        parts.append((value_text(node.result, TREE_LIMIT), "dim"))
    if node.cycle:
        parts.append(("(cycle: its own ancestor)", "yellow"))
    elif node.repeat:
        parts.append(("(shown above)", "dim"))
    if node.via in ("parent_id", "group_id"):
        parts.append((f"[via {node.via}]", "dim"))
    out: list[Segment] = []
    for seg in parts:
        out += [(" ", None), seg] if out else [seg]
    return out


def tree_lines(tree: ResultTree) -> Iterator[list[Segment]]:
    """The table view, line by line, in pre-order; the last line counts the states."""
    root = tree.root
    yield node_label(root)
    # (guides of the line's parent, node, is its parent's last child)
    stack: list[tuple[_Guides, ResultNode | GroupNode, bool]] = [
        (None, c, i == len(root.children) - 1) for i, c in reversed(list(enumerate(root.children)))
    ]
    while stack:
        guides, node, last = stack.pop()
        yield [(_prefix(guides) + ("└── " if last else "├── "), "dim"), *node_label(node)]
        inner: _Guides = ("    " if last else "│   ", guides, (guides[2] if guides else 0) + 1)
        n = len(node.children)
        for i in range(n - 1, -1, -1):
            stack.append((inner, node.children[i], i == n - 1))
    yield count_line(tree)


def count_line(tree: ResultTree) -> list[Segment]:
    line: list[Segment] = []
    for state, n in sorted(tree.counts.items(), key=lambda kv: (-kv[1], kv[0])):
        line += [("  ", None)] if line else []
        line.append((f"{escape(state)} {n}", state))
    return line
