"""The result codec and the safe pickle reader, byte for byte against celery-formats §1–§3 and §7."""

from __future__ import annotations

import bz2
import datetime as dt
import json
import lzma
import os
import pickle
import uuid
import zlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskctl.formats import result as R
from taskctl.formats.safepickle import PickleDecodeError, PickledObject, safe_loads

CHAIN_A = (
    b'{"status": "SUCCESS", "result": 3, "traceback": null, '
    b'"children": [[["ae770c56-32fe-48c2-bb50-1a56ae625a22", null], null]], '
    b'"date_done": "2026-11-22T01:30:54.472084+00:00", "name": "app1.add", "args": [1, 2], "kwargs": {}, '
    b'"worker": "vm", "retries": 0, "queue": "celery", "task_id": "f5fc7281-8fa5-4bf9-890b-722e2d070cf6"}'
)


# -- keys -----------------------------------------------------------------------------------------------------


def test_dynamodb_id_is_the_bytes_repr_celery_writes() -> None:
    assert R.dynamodb_id("celery-task-meta-abc") == "b'celery-task-meta-abc'"
    assert R.from_dynamodb_id("b'celery-task-meta-abc'") == "celery-task-meta-abc"
    assert R.from_dynamodb_id("celery-task-meta-abc") == "celery-task-meta-abc"  # written by hand, no wrapper
    assert R.from_dynamodb_id(R.dynamodb_id("it's-é")) == "it's-é"


@pytest.mark.parametrize(
    ("prefix", "spellings"),
    [
        (None, ("",)),
        ("app", ("app_",)),  # no separator: 5.5+ and <=5.4 agree
        ("app:", ("app:", "app:_")),  # 5.5+ keeps the separator, <=5.4 always adds '_'
        ("app-", ("app-", "app-_")),
    ],
)
def test_global_keyprefix_in_both_celery_spellings(prefix: str | None, spellings: tuple[str, ...]) -> None:
    keys = R.KeyScheme(prefix)
    assert keys.prefixes == spellings
    assert keys.task_keys("x") == [f"{p}celery-task-meta-x" for p in spellings]
    parsed = keys.parse(f"{spellings[-1]}chord-unlock-g1")
    assert parsed is not None and (parsed.kind, parsed.id) == ("chord-counter", "g1")
    assert keys.parse(f"{spellings[0]}celery-taskset-meta-g2") == R.ParsedKey("group", "g2", spellings[0])
    assert keys.parse("unrelated") is None


# -- decoding -------------------------------------------------------------------------------------------------


def test_json_meta_with_children_and_extended_fields() -> None:
    d = R.decode_payload(CHAIN_A, "json")
    meta = R.parse_task_meta(d.value, "f5fc7281-8fa5-4bf9-890b-722e2d070cf6")
    assert d.serializer == "json" and meta is not None
    assert meta.status == "SUCCESS" and meta.result == 3 and meta.name == "app1.add" and meta.retries == 0
    assert meta.child_ids == ["ae770c56-32fe-48c2-bb50-1a56ae625a22"]


def test_children_mixing_tasks_groups_and_chains() -> None:
    children = [
        [["19dc2eb9", None], None],
        [["e1ff3c33", None], [[["3f58f1c2", None], None], [["55857057", None], None]]],
        [["d9bf2388", [["a9b7e512", None], None]], None],  # a chain: last task with its first as parent
    ]
    refs = [R.parse_result_tuple(c) for c in children]
    assert refs[0] == R.TaskRef("19dc2eb9")
    assert isinstance(refs[1], R.GroupRef) and R.flatten_ids([refs[1]]) == ["3f58f1c2", "55857057"]
    assert refs[2] == R.TaskRef("d9bf2388", R.TaskRef("a9b7e512"))
    assert R.parse_result_tuple("plain-id") == R.TaskRef("plain-id")
    assert R.parse_result_tuple([1, 2, 3]) is None


def test_kombu_type_wrappers() -> None:
    raw = json.dumps(
        {
            "b": {"__type__": "bytes", "__value__": "abc"},
            "b64": {"__type__": "base64", "__value__": "/wA="},
            "dt": {"__type__": "datetime", "__value__": "2024-05-06T07:08:09.123456+00:00"},
            "d": {"__type__": "date", "__value__": "2024-05-06"},
            "t": {"__type__": "time", "__value__": "01:02:03"},
            "dec": {"__type__": "decimal", "__value__": "1.10"},
            "u": {"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678"}},
            "unknown": {"__type__": "nope", "__value__": 1},
            "extra": {"__type__": "bytes", "__value__": "x", "more": 1},
        }
    ).encode()
    v = R.decode_payload(raw, "json").value
    assert v["b"] == b"abc" and v["b64"] == b"\xff\x00"
    assert v["dt"] == dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    assert v["d"] == dt.date(2024, 5, 6) and v["t"] == dt.time(1, 2, 3) and v["dec"] == Decimal("1.10")
    assert v["u"] == uuid.UUID("12345678123456781234567812345678")
    assert v["unknown"] == {"__type__": "nope", "__value__": 1} and v["extra"]["more"] == 1


@pytest.mark.parametrize(
    ("codec", "compress"),
    [("gzip", zlib.compress), ("bzip2", bz2.compress), ("lzma", lzma.compress)],
)
def test_celery_57_compressed_values(codec: str, compress: Any) -> None:
    ctype = R.COMPRESSIONS[codec]
    raw = R.COMPRESSED_MAGIC + ctype.encode() + b"\x00" + compress(CHAIN_A)
    d = R.decode_payload(raw, "json")
    assert d.ok and d.compression == ctype and d.value["result"] == 3
    assert R.encode_payload(d.value, "json", codec).startswith(b"\x00celery-compressed\x00" + ctype.encode() + b"\x00")


def test_observed_gzip_header_is_zlib() -> None:
    raw = b"\x00celery-compressed\x00application/x-gzip\x00" + zlib.compress(b'{"status": "SUCCESS", "result": 1}')
    assert R.decode_payload(raw).value == {"status": "SUCCESS", "result": 1}


@pytest.mark.parametrize("serializer", ["json", "msgpack", "yaml", "pickle"])
def test_every_serializer_round_trips_and_is_sniffed(serializer: str) -> None:
    meta = {"status": "SUCCESS", "result": {"a": [1, 2]}, "traceback": None, "children": [], "date_done": None}
    raw = R.encode_payload(meta, serializer)
    assert R.sniff(raw) == serializer
    for configured in (serializer, None):
        d = R.decode_payload(raw, configured)
        assert d.ok and d.serializer == serializer and not d.sniffed
        assert R.to_plain(d.value)["result"] == {"a": [1, 2]}


def test_wrong_configured_serializer_falls_back_to_sniffing() -> None:
    raw = R.encode_payload({"status": "SUCCESS", "result": 1}, "msgpack")
    d = R.decode_payload(raw, "json")
    assert d.ok and d.serializer == "msgpack" and d.sniffed


def test_undecodable_values_are_reported_not_raised() -> None:
    d = R.decode_payload(b"\x00celery-compressed\x00application/x-gzip\x00not zlib", "json")
    assert not d.ok and d.error is not None and d.error.startswith("cannot decompress")
    assert d.undecodable() == {"error": d.error, "size": 46, "head": d.head, "compression": None}
    d = R.decode_payload(b"\xc1\xc1\xc1", "msgpack")
    assert not d.ok and d.size == 3 and d.head == "\\xc1\\xc1\\xc1"
    assert R.decode_payload(b"x" * 100).head.endswith("…")
    assert not R.decode_payload(b"{}", "toml").ok


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (
            {"exc_type": "ValueError", "exc_message": ["bad 2"], "exc_module": "builtins"},
            ("ValueError", "bad 2", "builtins"),
        ),
        (
            {"exc_type": "KeyError", "exc_message": ["missing-7"], "exc_module": "builtins"},
            ("KeyError", "'missing-7'", "builtins"),
        ),
        (
            {"exc_type": "MyErr", "exc_message": ["custom", 42], "exc_module": "app1"},
            ("MyErr", "('custom', 42)", "app1"),
        ),
        ({"exc_type": "Outer.Inner", "exc_message": [], "exc_module": "m"}, ("Outer.Inner", "", "m")),
        (
            {"exc_type": "TaskRevokedError", "exc_message": ["expired"], "exc_module": "celery.exceptions"},
            ("TaskRevokedError", "expired", "celery.exceptions"),
        ),
    ],
)
def test_exceptions_as_str_shows_them(stored: dict[str, Any], expected: tuple[str, str, str]) -> None:
    info = R.exception_info(stored)
    assert info is not None and (info.type, info.message, info.module) == expected


def test_pickled_exceptions_without_unpickling() -> None:
    info = R.exception_info(safe_loads(pickle.dumps(ValueError("bad 2"), protocol=4)))
    assert info == R.ExceptionInfo("ValueError", "bad 2", "builtins")
    wrapped = R._CeleryException(
        "celery.utils.serialization", "UnpickleableExceptionWrapper", ("app1", "Weird", ("x",), "Weird('x')")
    )
    wrapper = R.encode_payload({"status": "FAILURE", "result": wrapped}, "pickle")
    meta = R.parse_task_meta(safe_loads(wrapper), "t")
    assert meta is not None and meta.exception == R.ExceptionInfo("Weird", "x", "app1")


def test_revoked_meta_is_what_a_worker_writes() -> None:
    prev = R.parse_task_meta(json.loads(CHAIN_A), "f5fc7281-8fa5-4bf9-890b-722e2d070cf6")
    meta = R.revoked_meta("f5fc7281-8fa5-4bf9-890b-722e2d070cf6", previous=prev, date_done="2026-11-22T00:00:00+00:00")
    raw = R.encode_payload(meta, "json")
    assert raw.startswith(
        b'{"status": "REVOKED", "result": {"exc_type": "TaskRevokedError", "exc_message": ["revoked"], '
        b'"exc_module": "celery.exceptions"}, "traceback": null, "children": [[["ae770c56'
    )
    assert raw.endswith(b'"task_id": "f5fc7281-8fa5-4bf9-890b-722e2d070cf6"}')
    for ser in R.SERIALIZERS:
        got = R.parse_task_meta(R.decode_payload(R.encode_payload(meta, ser), ser).value, "x")
        assert got is not None and got.status == "REVOKED" and str(got.exception) == "TaskRevokedError: revoked"


def test_revoked_meta_is_readable_by_celery(tmp_path: Path) -> None:
    celery = pytest.importorskip("celery")
    for ser in R.SERIALIZERS:
        app = celery.Celery(backend=f"file://{tmp_path}", set_as_current=False)
        app.conf.update(result_serializer=ser, accept_content=[ser], result_accept_content=[ser])
        (tmp_path / f"celery-task-meta-id-{ser}").write_bytes(
            R.encode_payload(R.revoked_meta(f"id-{ser}", "expired"), ser)
        )
        r = app.AsyncResult(f"id-{ser}")
        assert r.state == "REVOKED" and type(r.result).__name__ == "TaskRevokedError" and str(r.result) == "expired"


def test_to_plain_never_recurses_without_bound() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert R.to_plain(loop) == [{"__cycle__": True}]
    assert R.to_plain(10**20000) == {"__int_hex__": hex(10**20000)}
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    out = R.to_plain(deep)
    depth = 0
    while isinstance(out, list) and out:
        out, depth = out[0], depth + 1
    assert out == {"__truncated__": True} and depth == 201
    assert R.to_plain({(1, 2): {3}}) == {"[1, 2]": [3]}


def test_date_done_in_every_celery_spelling() -> None:
    utc = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    assert R.parse_date_done("2024-05-06T07:08:09") == utc  # <=5.3: naive UTC
    assert R.parse_date_done("2024-05-06T07:08:09+00:00") == utc  # 5.4
    assert R.parse_date_done("2024-05-06T02:08:09-05:00") == utc  # 5.5+: app timezone
    assert R.parse_date_done("nonsense") is None


# -- safe pickle ----------------------------------------------------------------------------------------------


class Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_malicious_pickle_is_shown_never_run(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    data = pickle.dumps({"status": "SUCCESS", "result": Evil(str(marker))}, protocol=protocol)
    value = safe_loads(data)
    assert value["result"] == {"__pickle_global__": f"{os.system.__module__}.system", "args": [f"touch {marker}"]}
    assert isinstance(value["result"], PickledObject)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_decodes_to_itself(protocol: int) -> None:
    values = [
        None,
        True,
        False,
        0,
        -1,
        2**70,
        1.5,
        "é",
        b"\x00\xff",
        [1, [2]],
        (1, (2,)),
        {"a": {"b": None}},
        {1, 2},
        frozenset({3}),
        bytearray(b"ab"),
        Decimal("1.10"),
        uuid.UUID(int=7),
        dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC),
        dt.date(2024, 5, 6),
        dt.timedelta(3, 4),
    ]
    for v in values:
        got = safe_loads(pickle.dumps(v, protocol=protocol))
        if isinstance(v, bytearray):
            assert got == bytes(v)
        elif protocol < 2 and isinstance(v, uuid.UUID):
            assert got["__pickle_global__"] == "copyreg._reconstructor"  # old protocols: shown, not rebuilt
        else:
            assert got == v, (protocol, v)


def test_corrupt_pickles_raise_a_value_error() -> None:
    good = pickle.dumps({"a": [1, 2, 3]}, protocol=4)
    for bad in (b"", good[:-1], good[:10], b"\x80\x04\xff."):
        with pytest.raises(PickleDecodeError):
            safe_loads(bad)
    # a stack left with two items at STOP: pickle.loads returns the top one, and so does the reader
    assert safe_loads(b"\x80\x04K\x01K\x02.") == pickle.loads(b"\x80\x04K\x01K\x02.") == 2
    assert issubclass(PickleDecodeError, ValueError)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([None, "json", "msgpack", "yaml", "pickle"]))
def test_fuzz_arbitrary_bytes_never_raise(data: bytes, serializer: str | None) -> None:
    d = R.decode_payload(data, serializer)
    assert d.ok or d.error
    if d.ok:
        json.dumps(R.to_plain(d.value), default=str)
        R.parse_task_meta(d.value, "x")
        R.parse_group_meta(d.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_pickle_prefixed_bytes(data: bytes) -> None:
    for blob in (b"\x80\x04" + data, b"\x80\x02" + data + b".", R.COMPRESSED_MAGIC + b"application/x-gzip\x00" + data):
        try:
            safe_loads(blob)
        except PickleDecodeError:
            pass
        d = R.decode_payload(blob, "pickle")
        assert d.ok or d.error


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text() | st.binary(max_size=20),
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4),
        max_leaves=20,
    )
)
def test_fuzz_mutated_real_pickles(value: Any) -> None:
    data = bytearray(pickle.dumps({"status": "SUCCESS", "result": value}, protocol=4))
    assert safe_loads(bytes(data))["result"] == value
    for i in range(0, len(data), max(1, len(data) // 7)):
        mutated = bytearray(data)
        mutated[i] ^= 0x5A
        d = R.decode_payload(bytes(mutated), "pickle")
        assert d.ok or d.error
