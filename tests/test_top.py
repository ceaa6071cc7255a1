"""`taskctl top`: the aggregation behind it (fed real events from real Celery workers), the keys, and the live
view in a real terminal (tmux) against RabbitMQ with workers running tasks.

Two workers started with -E (prefork, solo), each on a queue of its own and with a control and event exchange
of its own (taskctl.toml), so other workers on the shared broker never show in these events.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import test_worker as tw
from conftest import REDIS_URL, ROOT, port_open, service_missing

from taskctl import backends, config, monitor
from taskctl.formats.control import CeleryEvent
from taskctl.models import TopRow
from taskctl.topview import BACKSPACE, ENTER, ESCAPE, Monitor, ViewState, parse_keys

RETRYING_TASK = """

@app.task(name="wk.flaky", bind=True, max_retries=1)
def flaky(self):
    if self.request.retries < 1:
        raise self.retry(countdown=0)
    return "ok"
"""


# -- keys and sections, no server ---------------------------------------------------------------------------


def test_keys_from_one_read() -> None:
    """Arrow keys (escape sequences) are dropped; a lone Esc, Enter and Backspace are keys of their own."""
    assert parse_keys("s/wk\x7f\r") == ["s", "/", "w", "k", BACKSPACE, ENTER]
    assert parse_keys("\x1b[A\x1bOPq") == ["q"]
    assert parse_keys("\x1b") == [ESCAPE]
    assert parse_keys("\x1b[1;5Cs") == ["s"]


def test_view_state_sort_filter_and_quit() -> None:
    v = ViewState()
    assert v.press("s") and v.sort == "received"
    assert v.press("S") and v.sort == "name"
    assert v.press("S") and v.sort == "runtime_p95"  # cycles both ways
    assert v.press("/") and v.prompt == ""
    for k in "wk.x":
        v.press(k)
    v.press(BACKSPACE)
    v.press("a")
    assert v.prompt == "wk.a" and v.filter is None
    v.press("q")  # typed into the prompt, not quitting
    assert not v.quit and v.prompt == "wk.aq"
    v.press(ENTER)
    assert v.filter == "wk.aq" and v.prompt is None
    v.press("/")
    v.press("z")
    v.press(ESCAPE)  # cancels typing, keeps the filter
    assert v.filter == "wk.aq" and v.prompt is None
    v.press(ESCAPE)  # clears the filter
    assert v.filter is None
    assert not v.press("x")  # unknown key: nothing to redraw
    assert v.press("q") and v.quit


def _row(kind: str, name: str, **values: object) -> TopRow:
    return TopRow(kind, name, "", dict(values))


def test_sort_and_filter_rows() -> None:
    rows = [
        _row("task", "b.two", received=5.0, failed=0.0, runtime_p95=None),
        _row("queue", "q-big", ready=900, unacked=0),
        _row("worker", "w2@h", active=0),
        _row("task", "a.one", received=1.0, failed=3.0, runtime_p95=0.5),
        _row("failure", "a.one", task_id="2"),
        _row("queue", "q-small", ready=3, unacked=1),
        _row("worker", "w1@h", active=2),
        _row("failure", "b.two", task_id="1"),
    ]
    names = lambda rs: [(r.kind, r.name) for r in rs]  # noqa: E731
    assert names(monitor.sort_rows(rows)) == [
        ("worker", "w1@h"),
        ("worker", "w2@h"),
        ("queue", "q-big"),
        ("queue", "q-small"),
        ("task", "a.one"),
        ("task", "b.two"),
        ("failure", "a.one"),  # failures keep their order: newest first
        ("failure", "b.two"),
    ]
    assert [r.name for r in monitor.sort_rows(rows, "received") if r.kind == "task"] == ["b.two", "a.one"]
    assert [r.name for r in monitor.sort_rows(rows, "failed") if r.kind == "task"] == ["a.one", "b.two"]
    # missing values last
    assert [r.name for r in monitor.sort_rows(rows, "runtime_p95") if r.kind == "task"] == ["a.one", "b.two"]
    # a key of another section sorts that section; the rest stay by name
    by_active = monitor.sort_rows(rows, "active")
    assert [r.name for r in by_active if r.kind == "worker"] == ["w1@h", "w2@h"]
    assert [r.name for r in monitor.sort_rows(rows, "ready") if r.kind == "queue"] == ["q-big", "q-small"]
    assert names(monitor.filter_rows(rows, "a.*")) == [("task", "a.one"), ("failure", "a.one")]
    assert names(monitor.filter_rows(rows, "big")) == [("queue", "q-big")]  # no wildcard: anywhere in the name
    assert monitor.filter_rows(rows, None) == rows
    with pytest.raises(Exception, match="unknown sort key"):
        monitor.sort_rows(rows, "colour")


def _event(type_: str, uuid_: str | None = None, **fields: object) -> CeleryEvent:
    return CeleryEvent(type=type_, hostname="w@h", timestamp=1.0, uuid=uuid_, fields=dict(fields))


def test_aggregate_bounds_what_untrusted_events_can_grow() -> None:
    """Hand-made events (no worker sends these): endless task names and a heartbeat's loadavg as text."""
    agg = monitor.Aggregate(clock=lambda: 100.0)
    for i in range(monitor.MAX_TASK_NAMES + 50):
        agg.add(_event("task-received", f"id{i}", name=f"t{i}"))
    tasks = [r for r in agg.rows() if r.kind == "task"]
    assert len(tasks) == monitor.MAX_TASK_NAMES + 1
    other = next(r for r in tasks if r.name == monitor.OTHER)
    assert other.values["received"] == 50 * 60.0  # span: at least 1 s
    agg.add(_event("worker-heartbeat", loadavg="[4.04, 1.7, 0.7]", active=3, processed=9))
    w = next(r for r in agg.rows() if r.kind == "worker")
    assert w.values == {"state": "up", "active": 3, "processed": 9, "load": 4.04}
    agg.add(_event("worker-heartbeat", loadavg="junk", active="x"))
    assert next(r for r in agg.rows() if r.kind == "worker").values["load"] == 4.04
    for i in range(monitor.MAX_WORKERS + 10):
        agg.add(CeleryEvent("worker-heartbeat", f"h{i}", 1.0, None, {}))
    assert len([r for r in agg.rows() if r.kind == "worker"]) == monitor.MAX_WORKERS


# -- real workers --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ev_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tw.Workers]:
    """A prefork and a solo worker with task events on (-E), knowing one more task: one that retries once."""
    if not port_open("127.0.0.1", 5672):
        service_missing("RabbitMQ on 127.0.0.1:5672")
    if not port_open("127.0.0.1", 6379):
        service_missing("Redis on 127.0.0.1:6379")
    source = tw.APP_SOURCE
    tw.APP_SOURCE = source + RETRYING_TASK
    try:
        w = tw.start_workers(
            tmp_path_factory.mktemp("top-workers"),
            tw.BROKER,
            {"prefork": ["-P", "prefork", "-c", "2", "-E"], "solo": ["-P", "solo", "-E"]},
        )
    finally:
        tw.APP_SOURCE = source
    try:
        yield w
    finally:
        tw.stop_workers(w)


def _settings(w: tw.Workers) -> config.Settings:
    return config.resolve({"broker": w.broker}, config=str(w.root / "taskctl.toml"))


def record(
    w: tw.Workers, send: Callable[[], None], done: Callable[[list[CeleryEvent]], bool], timeout: float = 60
) -> list[CeleryEvent]:
    """The events the workers send while SEND's tasks run, until DONE says enough (the queue is bound first)."""
    source = backends.open_control(_settings(w)).events(tick=0.2)
    got: list[CeleryEvent] = []
    sent = False
    deadline = time.monotonic() + timeout
    try:
        for ev in source:
            if ev is not None:
                got.append(ev)
            elif not sent:  # the first tick: our queue is bound, nothing sent from now on is missed
                send()
                sent = True
            if sent and done(got):
                return got
            assert time.monotonic() < deadline, f"not all events within {timeout}s: {[e.type for e in got]}"
    finally:
        source.close()
    raise AssertionError("event stream ended")


def test_aggregate_of_real_events(ev_workers: tw.Workers) -> None:
    """Ten sleeps of 0.05..0.5 s on the solo worker, two failures and one retry on the prefork worker: the
    per-minute rates, p50/p95, failures, sort and filter of the rows those real events make."""
    w = ev_workers
    sleep_ids: list[str] = []
    fail_ids: list[str] = []
    flaky_ids: list[str] = []

    def send() -> None:
        for i in range(1, 11):
            sleep_ids.append(w.send("wk.sleep", [0.05 * i], w.queue_solo))
        fail_ids.extend(w.send("wk.fail", [f"why-{n}"], w.queue_prefork) for n in range(2))
        flaky_ids.append(w.send("wk.flaky", [], w.queue_prefork))

    def done(evs: list[CeleryEvent]) -> bool:
        ok = {e.uuid for e in evs if e.type == "task-succeeded"}
        failed = {e.uuid for e in evs if e.type == "task-failed"}
        # worker rows come from worker events (heartbeats every 2 s): wait for one of each worker too
        beats = {e.hostname for e in evs if e.type.startswith("worker-")}
        return (
            set(sleep_ids) <= ok and set(fail_ids) <= failed and set(flaky_ids) <= ok and {w.prefork, w.solo} <= beats
        )

    evs = record(w, send, done)
    agg = monitor.Aggregate(window=60.0, clock=lambda: 1000.0)
    for ev in evs:
        agg.add(ev, now=1030.0)  # all within the last 30 s: per minute is twice the count
    rows = monitor.sort_rows(agg.rows(now=1030.0))
    mine = [r for r in rows if r.kind != "worker" or r.name in (w.prefork, w.solo)]
    assert [(r.kind, r.name) for r in mine] == [
        ("worker", w.prefork),
        ("worker", w.solo),
        ("task", "wk.fail"),
        ("task", "wk.flaky"),
        ("task", "wk.sleep"),
        ("failure", "wk.fail"),
        ("failure", "wk.fail"),
    ]
    by = {(r.kind, r.name): r.values for r in mine}
    for name in (w.prefork, w.solo):
        assert by[("worker", name)]["state"] == "up" and isinstance(by[("worker", name)]["processed"], int)
    sleep = by[("task", "wk.sleep")]
    assert (sleep["received"], sleep["succeeded"], sleep["failed"], sleep["retried"]) == (20.0, 20.0, 0.0, 0.0)
    runtimes = sorted(e.fields["runtime"] for e in evs if e.type == "task-succeeded" and e.uuid in sleep_ids)
    assert sleep["runtime_p50"] == round(runtimes[5], 4) and sleep["runtime_p95"] == round(runtimes[9], 4)
    assert 0.3 <= sleep["runtime_p50"] < 0.4 and 0.5 <= sleep["runtime_p95"] < 0.6  # the 0.3 s and 0.5 s sleeps
    fail = by[("task", "wk.fail")]
    assert (fail["received"], fail["failed"], fail["runtime_p50"]) == (4.0, 4.0, None)
    flaky = by[("task", "wk.flaky")]
    assert (flaky["retried"], flaky["succeeded"]) == (2.0, 2.0)
    failures = [r for r in mine if r.kind == "failure"]
    order = [e.uuid for e in evs if e.type == "task-failed"][::-1]  # newest first
    assert [f.values["task_id"] for f in failures] == order
    assert {f.values["exception"] for f in failures} == {"ValueError('why-0')", "ValueError('why-1')"}
    assert all(f.values["worker"] == w.prefork and f.values["time"].endswith("Z") for f in failures)

    tasks = lambda rs: [r.name for r in rs if r.kind == "task"]  # noqa: E731
    assert tasks(monitor.sort_rows(rows, "failed"))[0] == "wk.fail"
    assert tasks(monitor.sort_rows(rows, "runtime_p95"))[0] == "wk.sleep"
    assert tasks(monitor.sort_rows(rows, "retried"))[0] == "wk.flaky"
    assert [(r.kind, r.name) for r in monitor.filter_rows(rows, "wk.f*")] == [
        ("task", "wk.fail"),
        ("task", "wk.flaky"),
        ("failure", "wk.fail"),
        ("failure", "wk.fail"),
    ]
    # 65 s later the events are out of the one-minute window; workers unheard of for 10 s show no reply
    later_rows = agg.rows(now=1095.0)
    later = {(r.kind, r.name): r.values for r in later_rows}
    assert later[("task", "wk.sleep")]["received"] == 0.0 and later[("task", "wk.sleep")]["runtime_p50"] is None
    assert later[("worker", w.solo)]["state"] == "no reply"
    assert len([r for r in later_rows if r.kind == "failure"]) == 2  # failures stay: the latest N, not a window


def test_top_off_a_terminal_prints_one_snapshot(run, ev_workers: tw.Workers) -> None:  # type: ignore[no-untyped-def]
    """stdout is not a terminal here: `top` without --once is the snapshot, sorted and filtered as asked."""
    w = ev_workers
    r = run(*w.cli, "top", "--window", "0.5", "--filter", "wk-*", "--sort", "processed", "-o", "json")
    assert r.exit_code == 0, r.stderr
    assert {x["kind"] for x in r.json} <= {"worker", "queue"}
    names = [x["name"] for x in r.json if x["kind"] == "worker"]
    assert set(names) >= {w.prefork, w.solo}
    processed = [x["values"]["processed"] or 0 for x in r.json if x["kind"] == "worker"]
    assert processed == sorted(processed, reverse=True)
    r = run(*w.cli, "top", "--once", "--sort", "colour")
    assert r.exit_code == 2 and "unknown sort key" in r.stderr


# -- the live view in a real terminal --------------------------------------------------------------------------


class Tmux:
    """One detached tmux server of our own (its own socket), killed at the end."""

    def __init__(self, root: Path) -> None:
        self.sock = f"taskctl-top-{uuid.uuid4().hex[:12]}"
        self.root = root

    def __call__(self, *args: str) -> str:
        res = subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, timeout=10)
        assert res.returncode == 0, res.stderr
        return res.stdout

    def start(self, argv: list[str], *, width: int = 160, height: int = 50) -> None:
        """ARGV in a shell that records the terminal mode before and after, and the exit code."""
        run = shlex.join(argv)
        script = (
            # the trap keeps this shell going when Ctrl-C interrupts taskctl (the child still gets SIGINT)
            f"trap : INT; cd {shlex.quote(str(self.root))}; stty -g > before; env PYTHONPATH={shlex.quote(str(ROOT))} {run}; "
            "echo $? > rc; stty -g > after; sleep 300"
        )
        self("new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height), "sh", "-c", script)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "top")

    def wait_for(self, ok: Callable[[str], bool], timeout: float = 30, what: str = "") -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if ok(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"screen never showed {what}:\n{text}")

    def exit_code(self, timeout: float = 15) -> int:
        rc = self.root / "rc"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if rc.exists() and rc.read_text().strip():
                time.sleep(0.2)  # `stty -g > after` runs next
                return int(rc.read_text())
            time.sleep(0.1)
        raise AssertionError(f"taskctl top did not exit:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        service_missing("tmux")
    t = Tmux(tmp_path)
    try:
        yield t
    finally:
        t.kill()


def _task_line(screen: str, name: str) -> str | None:
    return next((line for line in screen.splitlines() if line.startswith(name + " ")), None)


def test_live_view_in_a_terminal(ev_workers: tw.Workers, tmux: Tmux) -> None:
    w = ev_workers
    tmux.start([sys.executable, "-m", "taskctl", *w.cli, "top", "--interval", "0.5"])
    stop = time.monotonic() + 40

    def busy(screen: str) -> bool:
        w.send("wk.add", [1, 1], w.queue_solo)
        w.send("wk.fail", ["boom-live"], w.queue_prefork)
        return time.monotonic() > stop or (
            w.prefork in screen and w.solo in screen and bool(_task_line(screen, "wk.add")) and "boom-live" in screen
        )

    screen = tmux.wait_for(busy, timeout=45, what="both workers, the wk.add row and a failure")
    assert "sort: name" in screen and "TASK ▼" in screen and "Traceback" not in screen
    assert tmux("display", "-p", "-t", "top", "#{alternate_on}").strip() == "1"

    tmux("send-keys", "-t", "top", "s")
    screen = tmux.wait_for(lambda s: "sort: received" in s, timeout=5, what="the next sort column")
    assert "RECV/min ▼" in screen and "TASK ▼" not in screen

    tmux("send-keys", "-t", "top", "/", "w", "k", ".", "f", "a", "i", "l")
    tmux.wait_for(lambda s: "/wk.fail█" in s, timeout=5, what="the filter prompt")
    tmux("send-keys", "-t", "top", "Enter")
    screen = tmux.wait_for(lambda s: "filter: wk.fail" in s, timeout=5, what="the filter applied")
    assert _task_line(screen, "wk.fail") and not _task_line(screen, "wk.add")
    assert w.prefork not in screen.split("FAILED TASK")[0]  # workers do not match the glob

    tmux("send-keys", "-t", "top", "q")
    assert tmux.exit_code() == 0
    assert (tmux.root / "before").read_text() == (tmux.root / "after").read_text()  # the terminal mode restored
    assert tmux("display", "-p", "-t", "top", "#{alternate_on}").strip() == "0"  # back on the main screen
    assert tmux("display", "-p", "-t", "top", "#{cursor_flag}").strip() == "1"  # cursor shown again


def test_live_view_ctrl_c_and_a_broken_broker(tmux: Tmux) -> None:
    """No broker on the port: a status line says so (no traceback); Ctrl-C exits 130, the terminal restored."""
    if shutil.which("tmux") is None:
        service_missing("tmux")
    broker = "amqp://guest:secret@127.0.0.1:9//"
    tmux.start([sys.executable, "-m", "taskctl", "--broker", broker, "top", "--timeout", "0.5"])
    screen = tmux.wait_for(lambda s: "events: cannot" in s and "workers: cannot" in s, what="the broker problem")
    assert "Traceback" not in screen and "secret" not in screen and "amqp://guest:****@127.0.0.1:9//" in screen
    tmux("send-keys", "-t", "top", "C-c")
    assert tmux.exit_code() == 130
    assert (tmux.root / "before").read_text() == (tmux.root / "after").read_text()
    assert tmux("display", "-p", "-t", "top", "#{alternate_on}").strip() == "0"
    assert "error: interrupted" in tmux.screen()


def test_screen_fits_the_terminal_height() -> None:
    """500 queues on a 30-line terminal: every section still shows, each cut one says how many rows are left."""
    import io

    from rich.console import Console

    from taskctl.models import TopFrame
    from taskctl.output.live import fit, top_screen

    assert fit({"worker": 2, "queue": 500, "task": 30, "failure": 10}, 38) == {
        "worker": 2,
        "failure": 10,
        "task": 13,
        "queue": 13,
    }
    rows = [_row("worker", "w@h", state="up", active=1)]
    rows += [_row("queue", f"q{i:03}", ready=i) for i in range(500)]
    rows += [_row("task", f"t{i:02}", received=1.0) for i in range(30)]
    frame = TopFrame(rows=tuple(rows), title="taskctl top", sort="name", problems=("events: cannot connect",))
    out = io.StringIO()
    Console(file=out, width=120, height=30).print(top_screen(frame, 30))
    lines = out.getvalue().splitlines()
    assert len(lines) <= 30
    text = out.getvalue()
    assert "w@h" in text and "q000" in text and "t00" in text and "events: cannot connect" in text
    assert "more (/ to filter)" in text and "q499" not in text


def test_live_view_sigterm_restores_the_terminal(tmux: Tmux) -> None:
    """`kill` (SIGTERM) unwinds like an exit: 143, the terminal mode and main screen restored."""
    tmux.start([sys.executable, "-m", "taskctl", "--broker", "amqp://guest:guest@127.0.0.1:9//", "top"])
    tmux.wait_for(lambda s: "sort: name" in s, what="the view")
    pid = int(tmux("display", "-p", "-t", "top", "#{pane_pid}").strip())
    child = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    assert len(child) == 1, child
    subprocess.run(["kill", "-TERM", child[0]], check=True)
    assert tmux.exit_code() == 143
    assert (tmux.root / "before").read_text() == (tmux.root / "after").read_text()
    assert tmux("display", "-p", "-t", "top", "#{alternate_on}").strip() == "0"


def test_live_view_usage_errors_come_before_the_screen(tmux: Tmux) -> None:
    tmux.start([sys.executable, "-m", "taskctl", "top", "--sort", "colour"])
    assert tmux.exit_code() == 2
    assert "error: unknown sort key 'colour'" in tmux.screen()
    assert (tmux.root / "before").read_text() == (tmux.root / "after").read_text()


def test_warnings_go_on_the_screen_while_it_is_shown(capsys: pytest.CaptureFixture[str]) -> None:
    """stderr lies under the full screen: a lower layer's warning becomes a status line, notes are dropped."""
    from taskctl import events

    mon = Monitor(config.resolve({"broker": tw.BROKER}))  # never started: no connection
    with events.routed(mon.warn):
        events.warn("bound workers unknown")
        events.note("detail")
    assert "warning: bound workers unknown" in mon.problems()
    assert capsys.readouterr().err == ""
    events.warn("after")
    assert "warning: after" in capsys.readouterr().err


@pytest.fixture(scope="module")
def redis_ev_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tw.Workers]:
    """A solo worker with task events on, on Redis (events travel on a fanout exchange there)."""
    if not port_open("127.0.0.1", 6379):
        service_missing("Redis on 127.0.0.1:6379")
    w = tw.start_workers(tmp_path_factory.mktemp("top-redis"), REDIS_URL, {"solo": ["-P", "solo", "-E"]})
    try:
        yield w
    finally:
        tw.stop_workers(w)


def test_live_view_on_redis(redis_ev_worker: tw.Workers, tmux: Tmux) -> None:
    """Redis: the worker row from its replies and heartbeats, the task row from events, and the queue the worker
    consumes from kombu's bindings (no management API needed)."""
    w = redis_ev_worker
    tmux.start([sys.executable, "-m", "taskctl", *w.cli, "top", "--interval", "0.5"])

    def busy(screen: str) -> bool:
        w.send("wk.add", [2, 3], w.queue_solo)
        return w.solo in screen and bool(_task_line(screen, "wk.add"))

    screen = tmux.wait_for(busy, timeout=45, what="the Redis worker and the wk.add row")
    worker_line = next(line for line in screen.splitlines() if line.startswith(w.solo))
    assert " up " in worker_line and "Traceback" not in screen and "cannot" not in screen
    # the queue section comes from kombu's bindings; other queues on a shared Redis are filtered away
    tmux("send-keys", "-t", "top", "/", *w.queue_solo)
    tmux("send-keys", "-t", "top", "Enter")
    screen = tmux.wait_for(
        lambda s: any(ln.startswith(w.queue_solo) for ln in s.splitlines()), timeout=30, what="the Redis queue row"
    )
    tmux("send-keys", "-t", "top", "q")
    assert tmux.exit_code() == 0
