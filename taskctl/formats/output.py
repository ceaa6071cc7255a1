"""The names of the output formats (``-o``): one tuple, stdlib only.

The CLI validates ``-o`` with it at start-up, before (and often without) loading the renderer, rich or tabulate;
``taskctl.output`` renders exactly these.
"""

from __future__ import annotations

#: every value ``-o/--output`` accepts, in the order ``--help`` lists them
FORMATS: tuple[str, ...] = ("table", "plain", "json", "jsonl", "csv", "tsv", "markdown")
