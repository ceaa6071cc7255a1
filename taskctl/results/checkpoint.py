"""``--checkpoint FILE``: where a long command stands, so the same command run again goes on where it stopped.

One format for every command (``result forget``, ``queue drain``, ``queue move``, ``task requeue``): a JSON object
``{"version": 1, "job": {...}, "positions": {...}, "done": N, "plan": ..., "state": {...}}`` rewritten atomically
(temp file, fsync, rename, fsync of the folder) at each step. ``job`` names the command and what it works on; a
checkpoint of another job is refused (exit 2), so one file cannot steer a different command. ``positions`` are a
scan's segment cursors, ``done`` counts items finished, ``plan`` is a command's fixed work list (a tree forget's
deletion order), ``state`` holds what a command needs beyond that (a queue transfer's recent message ids, the
committed length of its drain file).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskctl.errors import OperationError, UsageError

#: the format written; a file of another version is refused
VERSION = 1
#: the largest checkpoint read (a transfer's keeps a few batches of ids: tens of kilobytes)
MAX_BYTES = 64 * 1024 * 1024


@dataclass
class Checkpoint:
    """Where a job stands, in a JSON file rewritten atomically as it goes.

    ``job`` says which command it belongs to (a checkpoint of another command is refused); ``positions`` maps
    a scan segment to the cursor its next page starts at (None: finished); ``done`` counts the items finished
    so far; ``plan`` holds a fixed work list, so a rerun does not compute it again; ``state`` is the command's
    own (JSON) data.
    """

    path: Path
    job: dict[str, Any]
    positions: dict[int, str | None] = field(default_factory=dict)
    done: int = 0
    plan: dict[str, Any] | None = None
    state: dict[str, Any] = field(default_factory=dict)
    #: items finished by earlier runs (``done`` when this run loaded it)
    earlier: int = 0
    #: the file existed: this run goes on from an earlier one
    resumed: bool = False

    @classmethod
    def open(cls, path: str | Path, job: Mapping[str, Any]) -> Checkpoint:
        """The checkpoint at PATH for JOB: fresh when the file does not exist, else where the last run stopped."""
        p = Path(path)
        job = json.loads(json.dumps(job))  # as it reads back
        if p.is_dir():
            raise UsageError(f"checkpoint {p} is a directory", hint="pass a file name")
        try:
            with p.open("rb") as fh:
                raw = fh.read(MAX_BYTES + 1)
        except FileNotFoundError:
            return cls(p, dict(job))
        except OSError as exc:
            raise UsageError(f"cannot read checkpoint {p}: {exc.strerror or exc}") from None
        not_ours = UsageError(
            f"{p} is not a taskctl checkpoint", hint="pass a new file, or delete this one to start over"
        )
        if len(raw) > MAX_BYTES:
            raise not_ours
        try:
            data = json.loads(raw)
            version = data.get("version")
            positions = {int(k): v for k, v in data["positions"].items()}
            done = int(data["done"])
            stored_job = data["job"]
            plan = data.get("plan")
            state = data.get("state") or {}
            if not isinstance(state, dict) or not (plan is None or isinstance(plan, dict)):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise not_ours from None
        if version != VERSION:
            raise UsageError(
                f"checkpoint {p} is of format version {version!r}; this taskctl reads version {VERSION}",
                hint="finish the job with the taskctl that wrote it, or pass a new file to start over",
            )
        if stored_job != job:
            raise UsageError(
                f"checkpoint {p} belongs to another command ({json.dumps(stored_job, sort_keys=True)[:300]})",
                hint="run that command again with it, or pass a new file to start over",
            )
        return cls(p, dict(job), positions, done, plan, state, earlier=done, resumed=True)

    def finished(self, segments: int) -> bool:
        """Every one of SEGMENTS scanned to its end."""
        return all(s in self.positions and self.positions[s] is None for s in range(segments))

    def save(self) -> None:
        """Write it durably: after a crash the file holds this state or the one before, never half of one."""
        data = {
            "version": VERSION,
            "job": self.job,
            "positions": self.positions,
            "done": self.done,
            "plan": self.plan,
            "state": self.state,
        }
        directory = self.path.parent
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, separators=(",", ":"))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)  # the rename itself survives a crash
            finally:
                os.close(dfd)
        except OSError as exc:
            raise OperationError(f"cannot write checkpoint {self.path}: {exc.strerror or exc}") from None
