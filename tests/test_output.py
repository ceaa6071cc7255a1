"""The one renderer: every format reads the same column declaration; JSON is stable; errors are one line."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

import pytest

from taskctl import output
from taskctl.errors import ExitCode, NotFoundError
from taskctl.models import Listing, Model, Outcome


@dataclass(frozen=True)
class Row(Model):
    columns: ClassVar[tuple[str, ...]] = ("task_id", "state", "children")
    task_id: str
    state: str
    children: tuple[str, ...]
    when: dt.datetime | None = None
    size: Decimal | None = None
    raw: bytes | None = None


ROWS = [
    Row("a1", "SUCCESS", ("c1", "c2"), dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), Decimal("12"), b"\x00\x01"),
    Row("b2", "FAILURE", (), None, Decimal("1.5"), None),
]


def rendered(value: object, fmt: str) -> str:
    buf = io.StringIO()
    output.Renderer(fmt, out=buf, width=120).render(value)
    return buf.getvalue()


def test_json_array_with_documented_conversions() -> None:
    data = json.loads(rendered(Listing(Row, iter(ROWS)), "json"))
    assert data[0] == {
        "task_id": "a1",
        "state": "SUCCESS",
        "children": ["c1", "c2"],
        "when": "2026-01-02T03:04:05+00:00",
        "size": 12,
        "raw": "AAE=",
    }
    assert data[1]["size"] == 1.5 and data[1]["when"] is None


def test_empty_list_is_empty_json_array_and_plain_header() -> None:
    assert json.loads(rendered(Listing(Row, iter([])), "json")) == []
    assert rendered(Listing(Row, iter([])), "plain") == "TASK_ID  STATE  CHILDREN\n"


def test_jsonl_one_object_per_line() -> None:
    lines = rendered(ROWS, "jsonl").splitlines()
    assert [json.loads(x)["task_id"] for x in lines] == ["a1", "b2"]


def test_plain_has_stable_columns_and_dash_for_empty() -> None:
    assert rendered(ROWS, "plain") == ("TASK_ID  STATE    CHILDREN\na1       SUCCESS  c1, c2\nb2       FAILURE  -\n")


def test_csv_and_tsv_have_header_and_empty_cells() -> None:
    assert rendered(ROWS, "csv") == 'task_id,state,children\na1,SUCCESS,"c1,c2"\nb2,FAILURE,\n'
    assert rendered(ROWS, "tsv") == "task_id\tstate\tchildren\na1\tSUCCESS\tc1,c2\nb2\tFAILURE\t\n"


def test_object_plain_is_key_value_for_awk() -> None:
    text = rendered(ROWS[0], "plain")
    assert "task_id   a1\n" in text and "state     SUCCESS\n" in text


def test_table_format_has_no_colour_codes_off_a_terminal() -> None:
    text = rendered(ROWS, "table")
    assert "SUCCESS" in text and "\x1b[" not in text


def test_outcome_carries_exit_code_and_message() -> None:
    buf, err = io.StringIO(), io.StringIO()
    code = output.Renderer("plain", out=buf, err=err).render(Outcome(ROWS, ExitCode.NOT_FOUND, "1 id not found"))
    assert code == ExitCode.NOT_FOUND and err.getvalue() == "1 id not found\n" and "a1" in buf.getvalue()


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_error_as_json_on_stderr(fmt: str) -> None:
    buf = io.StringIO()
    output.render_error(NotFoundError("table 'x' not found", hint="create it"), fmt, stream=buf)
    assert json.loads(buf.getvalue()) == {
        "error": {"code": "not-found", "message": "table 'x' not found", "hint": "create it", "exit_code": 3}
    }


def test_error_as_text_is_one_line_plus_hint() -> None:
    buf = io.StringIO()
    output.render_error(NotFoundError("table 'x' not found", hint="create it"), "plain", stream=buf)
    assert buf.getvalue() == "error: table 'x' not found\nhint: create it\n"


def test_streaming_json_writes_before_the_iterator_ends() -> None:
    buf = io.StringIO()
    seen: list[str] = []

    def gen():  # type: ignore[no-untyped-def]
        yield ROWS[0]
        seen.append(buf.getvalue())
        yield ROWS[1]

    output.Renderer("jsonl", out=buf).render(Listing(Row, gen()))
    assert '"a1"' in seen[0]


# -- one list of formats, markdown (issue 8) --------------------------------------------------------------------


def test_one_list_of_formats_and_help_loads_no_renderer() -> None:
    import subprocess
    import sys

    from taskctl import cli
    from taskctl.formats.output import FORMATS

    assert cli.FORMATS is FORMATS is output.FORMATS and "markdown" in FORMATS
    code = (
        "import sys\nfrom taskctl.cli import main\nsys.argv=['taskctl','--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', [m for m in ('rich', 'tabulate', 'boto3', 'kombu') if m in sys.modules], file=sys.stderr)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "LOADED []" in res.stderr, res.stderr[-400:]
    assert "|".join(FORMATS) in res.stdout.replace("\n", "").replace(" ", "")


def test_markdown_list_is_a_github_pipe_table() -> None:
    text = rendered([*ROWS, Row("c|3", "PENDING", ())], "markdown")
    assert text == (
        "| task_id   | state   | children   |\n"
        "|-----------|---------|------------|\n"
        "| a1        | SUCCESS | c1, c2     |\n"
        "| b2        | FAILURE | -          |\n"
        "| c\\|3      | PENDING | -          |\n"
    )
    assert rendered(Listing(Row, iter([])), "markdown").splitlines()[0] == "| task_id   | state   | children   |"


def test_markdown_streams_rows_after_the_aligned_head() -> None:
    rows = [Row(f"t{i}", "SUCCESS", ()) for i in range(output.HEAD_ROWS + 2)]
    lines = rendered(rows, "markdown").splitlines()
    assert len(lines) == len(rows) + 2 and lines[-1] == f"| t{len(rows) - 1} | SUCCESS | - |"


def test_markdown_and_plain_object_are_key_value() -> None:
    md = rendered(ROWS[0], "markdown").splitlines()
    assert md[0].split() == ["|", "field", "|", "value", "|"] and md[4].startswith("| children | c1, c2 ")
    plain = rendered(ROWS[0], "plain").splitlines()
    assert plain[:3] == ["task_id   a1", "state     SUCCESS", "children  c1, c2"]


def test_markdown_end_to_end(run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run("--backend", f"file://{tmp_path}", "-o", "markdown", "result", "show", "nope", "--missing-ok")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("| task_id ") and lines[1].startswith("|--") and lines[2].startswith("| nope ")


# -- output scripts can parse (issue 9) -------------------------------------------------------------------------


def test_csv_tsv_json_never_cut_and_people_formats_do() -> None:
    from taskctl.models import TaskResult

    long = "x" * 500
    row = TaskResult("t1", "SUCCESS", True, result={"blob": long})
    for fmt in ("csv", "tsv"):
        text = rendered(Listing(TaskResult, iter([row])), fmt)
        assert long in text and "…" not in text
    assert json.loads(rendered([row], "json"))[0]["result"] == {"blob": long}
    for fmt in ("plain", "markdown", "table"):
        text = rendered(Listing(TaskResult, iter([row])), fmt)
        assert long not in text and "…" in text


def test_tree_rows_have_depth_and_a_clean_id() -> None:
    from taskctl.models import ResultNode, ResultTree

    leaf = ResultNode("b", "SUCCESS", True, repeat=True)
    tree = ResultTree(ResultNode("a", "SUCCESS", True, children=(ResultNode("a", "RETRY", True, cycle=True), leaf)), {})
    rows = list(csv.DictReader(io.StringIO(rendered(tree, "csv"))))
    assert [(r["depth"], r["id"], r["parent"], r["cycle"], r["repeat"]) for r in rows] == [
        ("0", "a", "", "false", "false"),
        ("1", "a", "a", "true", "false"),
        ("1", "b", "a", "false", "true"),
    ]
    plain = rendered(tree, "plain").splitlines()
    assert plain[0].split()[:4] == ["DEPTH", "KIND", "ID", "PARENT"]
    assert [line.split()[:3] for line in plain[1:]] == [["0", "task", "a"], ["1", "task", "a"], ["1", "task", "b"]]


def test_lists_in_text_cells_are_joined_with_comma_space() -> None:
    from taskctl.models import TaskResult

    r = TaskResult("t1", "SUCCESS", True, args=[8, 0.5], children=("c1", "c2"))
    text = rendered(r, "plain")
    assert "args         8, 0.5\n" in text and "children     c1, c2\n" in text
    assert "c1, c2" in rendered(Listing(TaskResult, iter([r])), "plain")


# -- terminal control characters (issue 9) ----------------------------------------------------------------------

HOSTILE = "\x1b[31mred\rover\x07bell\u202eevil\x9b\ttab\nline"
SHOWN = "\\x1b[31mred\\rover\\x07bell\\u202eevil\\x9b\\ttab\\nline"


@pytest.mark.parametrize("fmt", ["table", "plain", "markdown", "csv", "tsv"])
def test_control_characters_are_escaped_in_text_formats(fmt: str) -> None:
    from taskctl.models import TaskResult

    r = TaskResult("t1", HOSTILE, True, name=HOSTILE, result=HOSTILE)
    for value in (Listing(TaskResult, iter([r])), r):
        buf = io.StringIO()
        output.Renderer(fmt, out=buf, width=500).render(value)
        text = buf.getvalue()
        assert SHOWN in text, text
        allowed = "\n\t" if fmt == "tsv" else "\n"  # the line ends, and tsv's own separators
        bad = [c for c in text if (ord(c) < 0x20 and c not in allowed) or 0x7F <= ord(c) < 0xA0 or c == "\u202e"]
        assert not bad, (fmt, bad)


def test_json_keeps_the_exact_string() -> None:
    from taskctl.models import TaskResult

    r = TaskResult("t1", HOSTILE, True, name=HOSTILE, result=HOSTILE)
    for fmt in ("json", "jsonl"):
        text = rendered(r, fmt)
        assert "\x1b" not in text and "\r" not in text  # JSON escapes them
        doc = json.loads(text)
        assert doc["name"] == doc["state"] == doc["result"] == HOSTILE


def test_tree_view_and_messages_are_escaped() -> None:
    from taskctl.models import ResultNode, ResultTree

    tree = ResultTree(ResultNode("t\x1b[2J", HOSTILE, True, name=HOSTILE), {HOSTILE: 1})
    text = rendered(tree, "table")
    assert "\x1b" not in text and "\r" not in text and "t\\x1b[2J" in text
    err = io.StringIO()
    output.Renderer("plain", out=io.StringIO(), err=err).render(Outcome(None, ExitCode.FAILED, "ended: \x1b[31mx"))
    assert err.getvalue() == "ended: \\x1b[31mx\n"
    buf = io.StringIO()
    output.render_error(NotFoundError("no task 'a\x1b[2Jb'"), "plain", stream=buf)
    assert buf.getvalue() == "error: no task 'a\\x1b[2Jb'\n"
