"""Install taskctl as a user does, and use it: the wheel and sdist built from this tree, `taskctl[all]` from the
wheel into a clean virtualenv (no test extras, no system site-packages), then one command per result store
(dynamodb, redis, file) and per broker (amqp, redis, filesystem) run by the installed `taskctl` script.

The test venv holds pytest's dependencies (`packaging` among them), which hid a missing dependency of kombu's
Redis transport from every other test; only a separate venv sees what an extra forgot. pip fetches the
dependencies from the package index: about 4 minutes here, most of it resolving. Outside CI the clean venv is
kept in build/install-check/ under a key made of the wheel's declared requirements, and reused (taskctl alone
reinstalled) while they stay the same; CI (TASKCTL_REQUIRE_SERVICES=1) always starts from an empty venv.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import RABBITMQ_URL, REDIS_URL, REQUIRE_SERVICES, ROOT, port_open, service_missing

pytestmark = [pytest.mark.install, pytest.mark.timeout(1200)]

#: installed by the test extra only; none may reach a user's `pip install 'taskctl[all]'`
TEST_ONLY = {"pytest", "pytest-timeout", "hypothesis", "ruff", "mypy", "build", "boto3-stubs", "types-pyyaml"}

#: not copied into the build tree: local state, caches and earlier builds
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".tools", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


@dataclass
class Installed:
    bin: Path
    dist: list[str]

    def taskctl(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """The installed console script, with nothing of this checkout on its path."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(
            [str(self.bin / "taskctl"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
        )


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1000)
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def _requirements_key(wheel: Path) -> str:
    """What pip installs besides taskctl: the wheel's Requires-Dist lines (and this Python)."""
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = sorted(x for x in zf.read(meta).decode().splitlines() if x.startswith("Requires-Dist:"))
    return hashlib.sha256("\n".join([sys.version, *lines]).encode()).hexdigest()[:16]


def _clean_venv(venv: Path, wheel: Path) -> None:
    """A virtualenv with nothing but `taskctl[all]` from the wheel (and what pip resolves for it)."""
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"taskctl[all] @ {wheel.as_uri()}"])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE, symlinks=True)
    dist = base / "dist"
    # what `make dist` runs: an sdist, then the wheel built from that sdist (so the sdist is proven complete)
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)])
    built = sorted(p.name for p in dist.iterdir())
    wheels = [p for p in dist.iterdir() if p.suffix == ".whl"]
    assert len(wheels) == 1, built
    if REQUIRE_SERVICES:
        venv = base / "venv"
        _clean_venv(venv, wheels[0])
    else:
        cache = ROOT / "build" / "install-check"
        cache.mkdir(parents=True, exist_ok=True)
        venv = cache / _requirements_key(wheels[0])
        with (cache / f"{venv.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be building the same venv
            if (venv / "complete").is_file():
                pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
                _run([*pip, "--no-deps", "--force-reinstall", f"taskctl[all] @ {wheels[0].as_uri()}"])
            else:
                _clean_venv(venv, wheels[0])
                (venv / "complete").write_text(wheels[0].name)
    _run([str(venv / "bin" / "python"), "-m", "pip", "check"])
    yield Installed(venv / "bin", built)


def test_make_dist_builds_a_wheel_and_an_sdist(installed: Installed) -> None:
    assert [n for n in installed.dist if n.endswith(".whl")] == ["taskctl-0.1.0-py3-none-any.whl"]
    assert [n for n in installed.dist if n.endswith(".tar.gz")] == ["taskctl-0.1.0.tar.gz"]


def test_installed_from_the_wheel_without_test_dependencies(installed: Installed, tmp_path: Path) -> None:
    out = _run([str(installed.bin / "python"), "-m", "pip", "list", "--format=json"])
    names = {p["name"].lower().replace("_", "-") for p in json.loads(out)}
    assert not names & TEST_ONLY, f"test dependencies in a user install: {sorted(names & TEST_ONLY)}"
    # every extra's imports are there: redis (with kombu's `packaging`), msgpack, yaml, moto's server, celery
    assert {"taskctl", "redis", "packaging", "msgpack", "pyyaml", "moto", "celery"} <= names
    where = _run([str(installed.bin / "python"), "-c", "import taskctl; print(taskctl.__file__)"], cwd=tmp_path)
    assert where.startswith(str(installed.bin.parent)), where
    r = installed.taskctl("--help", cwd=tmp_path)
    assert r.returncode == 0 and "Usage: taskctl" in r.stdout, r.stderr


# -- one command per result store ------------------------------------------------------------------------------


def _meta(task_id: str) -> bytes:
    """Task meta as Celery writes it (JSON serializer)."""
    return json.dumps(
        {
            "status": "SUCCESS",
            "result": 42,
            "traceback": None,
            "children": [],
            "date_done": "2026-11-22T01:30:54.472084+00:00",
            "task_id": task_id,
        }
    ).encode()


@pytest.fixture(params=["dynamodb", "redis", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[tuple[str, str, bool]]:
    """(backend URL, a stored task id, whether the store holds only this test's results)."""
    from taskctl import config
    from taskctl.backends import result_store

    own = True
    if request.param == "dynamodb":
        endpoint = request.getfixturevalue("dynamodb_endpoint")
        port = endpoint.rsplit(":", 1)[1]
        # the dummy credentials `local:local`, as `taskctl local up` writes them: no AWS credentials needed
        url = f"dynamodb://local:local@127.0.0.1:{port}/{unique_name}"
        import boto3

        boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1").create_table(
            TableName=unique_name,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    elif request.param == "redis":
        if not port_open("127.0.0.1", 6379):
            service_missing("Redis on 127.0.0.1:6379")
        url, own = REDIS_URL, False
    else:
        folder = tmp_path / "results"
        folder.mkdir()
        url = f"file://{folder}"
    task_id = f"install-{uuid.uuid4()}"
    s = result_store(config.resolve({"backend": url}))
    s.put(f"celery-task-meta-{task_id}", _meta(task_id))
    yield url, task_id, own
    s.delete_many([f"celery-task-meta-{task_id}"])
    s.close()
    if request.param == "dynamodb":
        boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1").delete_table(TableName=unique_name)


def test_installed_result_show_and_list(
    installed: Installed, store: tuple[str, str, bool], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, task_id, own = store
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # a fresh machine has none
        monkeypatch.delenv(key)
    r = installed.taskctl("--backend", url, "result", "show", task_id, "-o", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert [(g["task_id"], g["state"], g["result"]) for g in got] == [(task_id, "SUCCESS", 42)]
    if own:
        r = installed.taskctl("--backend", url, "result", "list", "-o", "json", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert [g["task_id"] for g in json.loads(r.stdout)] == [task_id]


# -- one command per broker ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["amqp", "redis", "filesystem"])
def test_installed_queue_stats(installed: Installed, scheme: str, tmp_path: Path, unique_name: str) -> None:
    from taskctl import backends
    from taskctl.formats.message import build_task_message

    opts: dict[str, str] = {}
    if scheme == "amqp":
        if not port_open("127.0.0.1", 5672):
            service_missing("RabbitMQ on 127.0.0.1:5672")
        url = RABBITMQ_URL
    elif scheme == "redis":
        if not port_open("127.0.0.1", 6379):
            service_missing("Redis on 127.0.0.1:6379")
        url = REDIS_URL
    else:
        folder = tmp_path / "queues"
        folder.mkdir()
        url, opts = "filesystem://", {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    config = tmp_path / "taskctl.toml"
    lines = ["[default]", f'broker = "{url}"', "[default.transport_options]"]
    config.write_text("\n".join([*lines, *(f'{k} = "{v}"' for k, v in opts.items())]) + "\n")
    broker = backends.load(backends.BROKER)(url, opts)
    if scheme == "amqp":
        broker.declare_queue(unique_name)
    try:
        with broker.publisher() as pub:
            for i in range(3):
                msg = build_task_message("app.add", [i, i], {}, task_id=f"{unique_name}-{i}", queue=unique_name)
                pub.publish(msg, "", unique_name)
            pub.flush()
        r = installed.taskctl("--config", str(config), "queue", "stats", unique_name, "-o", "json", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        assert [(g["queue"], g["messages"]) for g in got] == [(unique_name, 3)]
    finally:
        if scheme == "amqp":
            broker.delete_queue(unique_name)
        else:
            broker.purge(unique_name)


def test_installed_queue_stats_on_sqs(installed: Installed, sqs_url: str, tmp_path: Path, unique_name: str) -> None:
    """sqs:// from the installed wheel: boto3 only, no pycurl (only a Celery worker on SQS needs it)."""
    from taskctl import backends
    from taskctl.formats.message import build_task_message

    opts = {"region": "us-east-1"}
    config = tmp_path / "taskctl.toml"
    config.write_text(f'[default]\nbroker = "{sqs_url}"\n[default.transport_options]\nregion = "us-east-1"\n')
    broker = backends.broker_class(sqs_url).from_url(sqs_url, transport_options=opts)
    broker.declare_queue(unique_name)
    try:
        with broker.publisher() as pub:
            for i in range(3):
                msg = build_task_message("app.add", [i, i], {}, task_id=f"{unique_name}-{i}", queue=unique_name)
                pub.publish(msg, "", unique_name)
            pub.flush()
        r = installed.taskctl("--config", str(config), "queue", "stats", unique_name, "-o", "json", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        assert [(g["queue"], g["messages"]) for g in got] == [(unique_name, 3)]
        assert "testing@" not in r.stdout + r.stderr
    finally:
        broker.delete_queue(unique_name)
