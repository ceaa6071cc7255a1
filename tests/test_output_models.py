"""Every model's JSON has one schema: the same keys whether a value is fully populated or mostly empty.

Instances are built from each dataclass's type hints, so a field added later is covered without editing this file.
"""

from __future__ import annotations

import dataclasses
import io
import json
import types
import typing
from typing import Any, Union

import pytest

import taskctl.models as models
from taskctl import output
from taskctl.models import Model

MODEL_CLASSES = sorted(
    (c for c in vars(models).values() if isinstance(c, type) and issubclass(c, Model) and c is not Model),
    key=lambda c: c.__name__,
)


def sample(tp: Any, full: bool, depth: int = 0) -> Any:
    """A value of type TP: something in every field when FULL, else None/empty wherever the type allows."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if not full and len(args) < len(typing.get_args(tp)):
            return None
        return sample(args[0], full, depth)
    if tp is Any:
        return {"value": [1, "two"]} if full else None
    if tp is str:
        return "text" if full else ""
    if tp is bool:
        return full
    if tp is int:
        return 3 if full else 0
    if tp is float:
        return 1.5 if full else 0.0
    if origin is dict:
        return {"deleted": True, "k": "v"} if full else {}
    if origin is tuple:
        args = typing.get_args(tp)
        if not full or depth > 1:
            return ()
        return (sample(args[0], full, depth + 1),)
    if isinstance(tp, type) and issubclass(tp, Model):
        return build(tp, full, depth + 1)
    raise AssertionError(f"no sample for {tp!r}")


def build(cls: type[Model], full: bool, depth: int = 0) -> Model:
    hints = typing.get_type_hints(cls)
    kwargs = {f.name: sample(hints[f.name], full, depth) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**kwargs)


def as_json(value: Any) -> Any:
    buf = io.StringIO()
    output.Renderer("json", out=buf).render(value)
    return json.loads(buf.getvalue())


def shape(doc: Any) -> Any:
    """The keys of an object and of the objects directly inside it (a declared nested object such as ttl)."""
    if not isinstance(doc, dict):
        return type(doc).__name__
    return [(k, sorted(v) if isinstance(v, dict) and k in ("ttl",) else None) for k in doc for v in [doc[k]]]


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_json_keys_do_not_depend_on_the_values(cls: type[Model]) -> None:
    full, empty = as_json(build(cls, True)), as_json(build(cls, False))
    if cls.json_value is not None and cls.json_value != "root":
        # the JSON is the value of one field (a drained line is its record), passed through unchanged
        assert full == getattr(build(cls, True), cls.json_value)
        return
    assert isinstance(full, dict) and isinstance(empty, dict)
    assert list(full) == list(empty), cls.__name__
    assert shape(full) == shape(empty), cls.__name__
    # no model leaks its Python shape: no key is a dataclass field that the layout replaced
    if cls.json_fields is not None:
        assert list(full) == list(cls.json_fields)


def test_documented_layouts_are_kept() -> None:
    table = as_json(build(models.TableInfo, True))
    assert table["ttl"] == {"status": "text", "attribute": "text"} and table["deleted"] is True
    assert "ttl_status" not in table and "extra" not in table
    assert list(as_json(build(models.ResultNode, True))) == [
        "task_id", "state", "name", "found", "result", "exception", "via", "cycle", "repeat", "children",
    ]  # fmt: skip
    stack = as_json(build(models.LocalStack, True))
    assert {"kind", "pid", "alive", "address", "log"} <= set(stack["dynamodb"])
    tree = build(models.ResultTree, True)
    assert as_json(tree)["task_id"] == tree.root.task_id  # type: ignore[union-attr]


def test_dry_run_and_note_are_always_present() -> None:
    """They used to appear only when set: a script reading .dry_run got no key instead of false."""
    rows = as_json(models.Listing(models.PurgedQueue, iter([models.PurgedQueue("q", 3)])))
    assert rows == [{"queue": "q", "purged": 3, "dry_run": False, "note": None}]
    summary = as_json(models.TransferSummary("drain", "q", "f", 1))
    assert summary["dry_run"] is False and summary["problems"] == []


def test_models_hold_no_rendering() -> None:
    for cls in MODEL_CLASSES:
        for name in ("to_json", "cells", "flat_rows", "tree_lines", "label"):
            assert not hasattr(cls, name), f"{cls.__name__}.{name}"
    assert not hasattr(models, "Segment")
