"""The one ISO-8601 parser: every spelling Celery, kombu and RabbitMQ write, and nothing it is given raises."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskctl.formats import message, result
from taskctl.formats.times import parse_iso

UTC = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-06T07:08:09",  # Celery <= 5.3 date_done: naive UTC
        "2024-05-06T07:08:09+00:00",  # 5.4
        "2024-05-06T02:08:09-05:00",  # 5.5+: the app's timezone
        "2024-05-06T07:08:09Z",
        "2024-05-06 07:08:09",  # RabbitMQ's idle_since
        b"2024-05-06T07:08:09Z",
        dt.datetime(2024, 5, 6, 7, 8, 9),
        dt.datetime(2024, 5, 6, 9, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    ],
)
def test_every_spelling_is_the_same_utc_instant(value: Any) -> None:
    got = parse_iso(value)
    assert got == UTC and got is not None and got.tzinfo == dt.UTC


UNREADABLE = [None, "", "nonsense", 1716973689, 2**20000, "2024-13-01", "9999-12-31T23:59:59-01:00", "2" * 10_000]


@pytest.mark.parametrize("value", UNREADABLE, ids=[f"{type(v).__name__}-{i}" for i, v in enumerate(UNREADABLE)])
def test_unreadable_values_are_none(value: Any) -> None:
    assert parse_iso(value) is None


def test_old_names_are_the_one_parser() -> None:
    assert result.parse_date_done is parse_iso and message.parse_time is parse_iso


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.binary(max_size=40) | st.integers() | st.datetimes(timezones=st.timezones()))
def test_fuzz_never_raises(value: Any) -> None:
    got = parse_iso(value)
    assert got is None or got.tzinfo == dt.UTC
