"""What an operator sees of a real worker: its start-up log, its consumer lag, its log and
its stop while Kafka is gone, a second worker on a busy web port, and a killed worker
leaving no sentiment process behind.

The worker runs against a bundled broker of the test's own (stopping it must not affect
other tests). Nothing is timed: waits have generous limits that only catch a hang (the
SIGTERM target of 10 s, compose's default grace period, is documented in
docs/operations.md; ``proc.wait(timeout=20)`` fails the test if a stop hangs).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cxpulse.streams.admin import ensure_topics
from cxpulse.streams.app import TABLE_NAMES
from cxpulse.streams.dev.broker import EmbeddedBroker
from cxpulse.streams.dev.demo import WorkerProcess, free_port, scrape, sink_rows
from cxpulse.streams.dev.sample_events import sample_events
from cxpulse.streams.publisher import Publisher
from cxpulse.streams.topics import all_topics, touchpoints
from tests.integration.workers import worker_settings

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

PATIENCE = 120.0  # a limit for a stuck test, not a measurement
STOP_GUARD = 20.0  # a SIGTERM must end the worker before this (target: 10 s)
LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\] \[\d+\] \[([A-Z]+)\] (.*)$")


def wait_for(what: str, check: Callable[[], bool], worker: WorkerProcess) -> None:
    deadline = time.monotonic() + PATIENCE
    while not check():
        assert worker.alive(), f"worker died:\n{worker.log_tail(40)}"
        assert time.monotonic() < deadline, f"{what}: not within {PATIENCE}s\n{worker.log_tail(40)}"
        time.sleep(0.25)


def log_lines(path: Path) -> list[tuple[str, str]]:
    """(level, message) of each log line the worker wrote (continuation lines of a
    multi-line record come as level '')."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = LINE.match(line)
        out.append((m.group(1), m.group(2)) if m else ("", line))
    return out


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(port=free_port(), log_dir=tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_a_worker_says_what_it_does_shows_its_lag_and_stops_quietly_without_kafka(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = worker_settings(own_broker.url, tmp_path, create_topics=False)
    ensure_topics(settings, all_topics(settings, TABLE_NAMES))
    docs = sample_events(seed=5)
    with Publisher(settings, batch_size=50) as publisher:  # a backlog before the start
        publisher.publish_many(docs)
    worker = WorkerProcess(
        settings, tmp_path / "worker.log", extra_env={"CXPULSE_READY_UNREACHABLE_SECONDS": "3"}
    )
    worker.start([sys.executable, "-m", "cxpulse.streams.cli", "worker"])
    port = settings.web_port
    try:
        wait_for(
            "every event in ClickHouse",
            lambda: sink_rows(scrape(port), "touchpoint_events") >= len(docs),
            worker,
        )

        # -- the start-up log: one line says it all; no ERROR, no tables at INFO
        lines = log_lines(worker.log_path)
        summary = [m for _, m in lines if m.startswith(f"worker {settings.app_id}: consumes ")]
        assert len(summary) == 1, lines[:40]
        for part in (
            touchpoints(settings),
            settings.kafka_url,
            f"chdb://{tmp_path / 'chdb'}",
            f"customer table on local disk (RocksDB) in {tmp_path / 'var' / 'faust'}",
            f"web port {port}",
        ):
            assert part in summary[0], (part, summary[0])
        assert not [m for level, m in lines if level in ("ERROR", "CRITICAL")], lines
        tables = [m for _, m in lines if m.startswith(("+---", "| topic", "+Topic", "+Final"))]
        assert not tables, tables[:5]

        # -- consumer lag: a gauge per partition, 0 once the backlog is done
        def lags() -> dict[tuple[str, str], float]:
            return {
                (dict(labels)["topic"], dict(labels)["partition"]): value
                for (name, labels), value in scrape(port).items()
                if name == "cxpulse_consumer_lag"
            }

        wanted = {(touchpoints(settings), str(p)) for p in range(settings.partitions)}
        wait_for(
            "consumer lag 0 on every touchpoints partition",
            lambda: wanted <= lags().keys() and all(lags()[k] == 0 for k in wanted),
            worker,
        )
        assert all(value >= 0 for value in lags().values())

        # -- Kafka gone: /readyz red, the client errors counted rather than repeated
        before = len(log_lines(worker.log_path))
        own_broker.stop()
        wait_for("/readyz red", lambda: _status(port, "/readyz") == 503, worker)
        wait_for(
            "a count of repeated connection errors",
            lambda: any("[repeated " in m for _, m in log_lines(worker.log_path)[before:]),
            worker,
        )
        during = log_lines(worker.log_path)[before:]
        noisy = [m for level, m in during if level in ("ERROR", "WARNING")]
        # ~30-80 a second before; now one of each kind, then one count per kind per 10 s
        assert len(noisy) <= 30, "\n".join(noisy)
        assert not [m for level, m in during if level == "" and "Traceback" in m]

        # -- SIGTERM: the worker stops (with Kafka gone, it used to take 61 s)
        assert worker.proc is not None
        started = time.monotonic()
        worker.proc.terminate()
        code = worker.proc.wait(timeout=STOP_GUARD)  # a hang fails here
        print(f"SIGTERM to exit with Kafka gone: {time.monotonic() - started:.1f}s")
        assert code == 0, worker.log_tail(40)
        stopped = [m for _, m in log_lines(worker.log_path) if m.startswith("worker stopped")]
        assert stopped, worker.log_tail(40)
        assert not [m for _, m in log_lines(worker.log_path) if "Exception in thread" in m]
    finally:
        worker.stop()


def test_a_stop_that_does_not_finish_ends_at_its_deadline(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """With Kafka gone, Faust may wait without end for messages it cannot commit (seen
    under load: the stop above hung past its guard). A stop that has not finished after
    STOP_DEADLINE_SECONDS ends the process, which loses nothing."""
    from cxpulse.streams.worker import STOP_DEADLINE_SECONDS

    assert STOP_DEADLINE_SECONDS < 10 < STOP_GUARD
    settings = worker_settings(own_broker.url, tmp_path, create_topics=False)
    ensure_topics(settings, all_topics(settings, TABLE_NAMES))
    worker = WorkerProcess(
        settings, tmp_path / "worker.log", extra_env={"PYTHONPATH": _env()["PYTHONPATH"]}
    )
    worker.start([sys.executable, "-m", "tests.integration.stuck_stop_worker"])
    try:
        wait_for(
            "the worker Ready",
            lambda: any(m.startswith("ready ") for _, m in log_lines(worker.log_path)),
            worker,
        )
        assert worker.proc is not None
        worker.proc.terminate()
        code = worker.proc.wait(timeout=STOP_GUARD)  # a hang fails here
        assert code == 0, worker.log_tail(40)
        lines = log_lines(worker.log_path)
        overdue = [m for level, m in lines if level == "WARNING" and "has not finished" in m]
        assert overdue and "nothing is lost" in overdue[0], worker.log_tail(40)
        assert lines[-1][1].startswith("worker stopped "), worker.log_tail(40)
    finally:
        worker.stop()


def test_a_second_worker_on_a_busy_web_port_exits_2_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "cxpulse.streams.cli", "worker"],
            env={
                **_env(),
                "CXPULSE_WEB_HOST": "127.0.0.1",
                "CXPULSE_WEB_PORT": str(port),
                "CXPULSE_KAFKA_URL": f"kafka://127.0.0.1:{free_port()}",  # never reached
                "CXPULSE_DATA_DIR": str(tmp_path / "var"),
            },
            capture_output=True,
            text=True,
            timeout=PATIENCE,
        )
    out = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, out
    assert out.splitlines() == [
        f"cxpulse: port {port} on 127.0.0.1 is already in use (another worker?): stop it or "
        "set CXPULSE_WEB_PORT to a free port"
    ]


def test_a_killed_worker_leaves_no_sentiment_process_behind(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """SIGKILL (or an OOM kill) gives the worker no chance to close its sentiment child:
    the child (SnowNLP's ~400 MiB) and multiprocessing's resource tracker must end by
    themselves instead of waiting for ever on a queue nobody writes to."""
    settings = worker_settings(own_broker.url, tmp_path, create_topics=False)
    ensure_topics(settings, all_topics(settings, TABLE_NAMES))
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start([sys.executable, "-m", "cxpulse.streams.cli", "worker"])
    try:
        wait_for(
            "the sentiment models loaded in their child",
            lambda: "sentiment models loaded" in worker.log_path.read_text(errors="replace"),
            worker,
        )
        assert worker.proc is not None
        children = _children(worker.proc.pid)
        assert children, "the worker has no child process"
        assert any(b"spawn_main" in _cmdline(pid) for pid in children), children

        worker.proc.kill()
        worker.proc.wait(timeout=STOP_GUARD)
        deadline = time.monotonic() + PATIENCE  # a limit for a leak, not a measurement
        while left := [pid for pid in children if _running(pid)]:
            assert time.monotonic() < deadline, [_cmdline(pid) for pid in left]
            time.sleep(0.25)
    finally:
        worker.stop()


def _children(parent: int) -> list[int]:
    """The ids of the running processes whose parent is ``parent`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited orphan may wait a while for init to reap it)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def _env() -> dict[str, str]:
    import os

    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root}


def _status(port: int, path: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return -1
