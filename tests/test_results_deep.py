"""Deep result trees without recursion: a 10,000-task chain stored as Celery stores chains, and a 10,000-deep
nesting of result tuples in one meta's ``children``, through every command that reads trees.

The file:// store (Celery's own filesystem backend layout) keeps seeding fast; filesystem:// is the broker for
`task revoke` and `task requeue` (no worker: the revoke broadcast is sent and nobody answers). Every command
runs in this process at Python's default recursion limit, which must be the same afterwards.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_task_cli import fs_config

from taskctl import config
from taskctl.backends import result_store

N = 10_000


def chain_meta(i: int, ids: list[str], status: str) -> bytes:
    """Link I of a chain as Celery stores it: the next link is its child, the previous one its parent."""
    value = {
        "status": status,
        "result": None,
        "traceback": None,
        "children": [[[ids[i + 1], None], None]] if i + 1 < len(ids) else [],
        "date_done": None,
        "parent_id": ids[i - 1] if i else None,
        "name": "app.link",
        "args": [i],
        "kwargs": {},
        "queue": "celery",
        "task_id": ids[i],
    }
    return json.dumps(value).encode()


@pytest.fixture
def results_dir(tmp_path: Path) -> Iterator[Path]:
    """In memory (/dev/shm) where there is one: 10,000 small files on a busy disk take minutes to write."""
    shm = Path("/dev/shm")
    d = Path(tempfile.mkdtemp(prefix="taskctl-deep-", dir=shm if shm.is_dir() else tmp_path))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def chain(tmp_path: Path, results_dir: Path) -> tuple[str, list[str]]:
    """A 10,000-link chain, every link RETRY (unfinished: revoke --tree marks it), seeded through store.put."""
    d = results_dir
    url = f"file://{d}"
    ids = [str(uuid.uuid4()) for _ in range(N)]
    store = result_store(config.resolve({"backend": url}))
    for i, t in enumerate(ids):
        store.put(f"celery-task-meta-{t}", chain_meta(i, ids, "RETRY"))
    store.close()
    fs_config(tmp_path, url)
    return url, ids


def rows(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_a_10000_link_chain_works_everywhere(run: Any, chain: tuple[str, list[str]]) -> None:
    limit = sys.getrecursionlimit()
    url, ids = chain
    root, last = ids[0], ids[-1]

    r = run("result", "tree", root, "-o", "jsonl")
    assert r.exit_code == 0, r.stderr
    got = rows(r.stdout)
    assert [(x["depth"], x["id"]) for x in got] == list(enumerate(ids))
    assert all(x["parent"] == ids[i - 1] for i, x in enumerate(got) if i)

    r = run("result", "tree", last, "--up", "-o", "plain")
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.splitlines()) == N + 1  # header + one row per link

    r = run("result", "show", root, last, "-o", "json")
    assert r.exit_code == 0 and [x["children"] for x in r.json] == [[ids[1]], []]
    r = run("result", "wait", last, "--timeout", "0.1", "-o", "json")
    assert r.exit_code == 124 and r.json["state"] == "RETRY"

    r = run("result", "list", "-o", "jsonl")
    assert r.exit_code == 0 and sorted(x["task_id"] for x in rows(r.stdout)) == sorted(ids)

    r = run("result", "forget", root, "--tree", "--dry-run", "-o", "json")
    assert r.exit_code == 0 and r.json["forgotten"] == ids

    r = run("task", "revoke", root, "--tree", "--yes", "--reply-timeout", "0", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json["revoked"] == ids and r.json["marked"] == ids
    r = run("result", "tree", root, "--check", "-o", "jsonl")
    assert r.exit_code == 1 and {x["state"] for x in rows(r.stdout)} == {"REVOKED"}

    r = run("task", "requeue", "-", "--from-results", "--dry-run", "-o", "jsonl", input="\n".join(ids))
    assert r.exit_code == 0, r.stderr
    assert [x["action"] for x in rows(r.stdout)] == ["would-requeue"] * N

    r = run("result", "forget", root, "--tree", "--yes", "-o", "json")
    assert r.exit_code == 0 and len(r.json["forgotten"]) == N
    assert list(Path(url[7:]).iterdir()) == []
    assert sys.getrecursionlimit() == limit


def _unicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def deep_children_pickle(holder: str, status: str, chain_ids: list[str]) -> bytes:
    """Pickled meta (protocol 2) whose one child is a chain recorded by its last task: each link's tuple holds
    its predecessor's, 10,000 deep. Written opcode by opcode (pickle.dumps itself would recurse)."""
    out = [b"\x80\x02}("]  # PROTO 2, EMPTY_DICT, MARK
    for key, value in (("status", status), ("task_id", holder)):
        out += [_unicode(key), _unicode(value)]
    out += [_unicode("result"), b"N", _unicode("traceback"), b"N", _unicode("date_done"), b"N"]
    out += [_unicode("children"), b"]"]  # EMPTY_LIST
    out += [_unicode(t) for t in reversed(chain_ids[1:])]  # pushed first: each TUPLE2 pairs one with the tail
    out += [_unicode(chain_ids[0]), b"N\x86N\x86"]  # ((first, None), None)
    out += [b"\x86N\x86"] * (len(chain_ids) - 1)  # ((id, previous), None), one link at a time
    out += [b"a", b"u."]  # APPEND, SETITEMS, STOP
    return b"".join(out)


def test_children_nested_10000_deep_in_one_meta(run: Any, tmp_path: Path, results_dir: Path) -> None:
    limit = sys.getrecursionlimit()
    d = results_dir
    url = f"file://{d}"
    fs_config(tmp_path, url)
    holder, as_json = str(uuid.uuid4()), str(uuid.uuid4())
    links = [str(uuid.uuid4()) for _ in range(N)]
    (d / f"celery-task-meta-{holder}").write_bytes(deep_children_pickle(holder, "RETRY", links))
    (d / f"celery-task-meta-{links[0]}").write_bytes(chain_meta(0, links[:2], "SUCCESS"))
    # the same nesting as JSON: Python's json module cannot read it; the row says so and nothing stops
    text = json.dumps({"status": "SUCCESS", "task_id": as_json, "children": [None]})
    deep = "".join(f'[["{t}", ' for t in reversed(links[1:])) + f'[["{links[0]}", null], null]'
    deep += "], null]" * (N - 1)
    (d / f"celery-task-meta-{as_json}").write_text(text.replace("[null]", f"[{deep}]"))

    r = run("result", "show", holder, "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json[0]["state"] == "RETRY" and r.json[0]["children"] == [links[-1]]

    r = run("result", "tree", holder, "-o", "jsonl")
    assert r.exit_code == 0, r.stderr
    # the chain starts at its first link; its last is added where the walk did not reach it
    assert [(x["depth"], x["id"], x["found"]) for x in rows(r.stdout)] == [
        (0, holder, True),
        (1, links[0], True),
        (2, links[1], False),
        (1, links[-1], False),
    ]

    r = run("result", "list", "-o", "json")
    assert r.exit_code == 0, r.stderr
    by_id = {x["task_id"]: x for x in r.json}
    assert by_id[holder]["problem"] is None and by_id[links[0]]["state"] == "SUCCESS"
    assert by_id[as_json]["state"] == "UNKNOWN" and "nested too deeply" in by_id[as_json]["problem"]

    r = run("result", "tree", as_json, "-o", "jsonl")
    assert r.exit_code == 0 and rows(r.stdout)[0]["state"] == "UNKNOWN"

    r = run("task", "revoke", holder, "--yes", "--reply-timeout", "0", "-o", "json")
    assert r.exit_code == 0 and r.json["skipped_running"] == [holder]
    assert "too deeply to rewrite" in r.stderr

    r = run("task", "requeue", holder, "--from-results", "--dry-run", "-o", "json")
    assert r.exit_code == 1 and "--unsafe-pickle" in r.json[0]["note"]

    r = run("result", "forget", holder, "--tree", "--yes", "-o", "json")
    assert r.exit_code == 0 and r.json["forgotten"] == [holder, links[0]]
    assert r.json["missing"] == [links[1], links[-1]]
    assert sys.getrecursionlimit() == limit
