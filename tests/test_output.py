"""The one renderer: every format reads the same column declaration; JSON is stable; errors are one line."""

from __future__ import annotations

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
