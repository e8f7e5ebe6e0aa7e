"""/livez and /readyz of a real worker whose Kafka goes away and comes back.

The test runs its own bundled broker (not the session's ``kafka_broker``): stopping it
must not affect other tests. Nothing here is timed: the worker says how long Kafka has
been silent, and the test waits (with a generous limit) for the answer to change.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cxpulse.streams.dev.broker import EmbeddedBroker
from cxpulse.streams.dev.demo import WorkerProcess, free_port, scrape
from tests.integration.workers import worker_settings

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

THRESHOLD = 3.0
PATIENCE = 120.0  # a limit for a stuck test, not a measurement


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(
    what: str, check: Callable[[], bool], worker: WorkerProcess, timeout: float = PATIENCE
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert worker.alive(), f"worker died:\n{worker.log_tail(40)}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s\n{worker.log_tail(40)}"
        time.sleep(0.25)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(port=free_port(), log_dir=tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_readyz_turns_red_while_kafka_is_gone_and_green_when_it_is_back(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = worker_settings(own_broker.url, tmp_path)
    worker = WorkerProcess(
        settings,
        tmp_path / "worker.log",
        extra_env={"CXPULSE_READY_UNREACHABLE_SECONDS": str(THRESHOLD)},
    )
    worker.start([sys.executable, "-m", "cxpulse.streams.cli", "worker"])
    port = settings.web_port
    try:
        # Until Ready (its web server answers seconds before), /readyz says it is starting:
        # a 200 is only ever followed by a Ready worker's metrics.
        answers: list[tuple[int, str]] = []

        def ready_answer() -> bool:
            try:
                status, body = get(port, "/readyz")
            except OSError:
                return False  # not listening yet
            answers.append((status, body["status"]))
            if status == 200:
                assert scrape(port)[("cxpulse_worker_ready_seconds", ())] > 0, answers
            else:
                assert body["status"] == "starting" and "\n" not in body["reason"], body
            return status == 200

        wait_for("/readyz green once Ready", ready_answer, worker)
        assert get(port, "/livez") == (200, {"status": "alive", "app": settings.app_id})
        status, body = get(port, "/readyz")
        assert (status, body["status"]) == (200, "ready"), body
        assert scrape(port)[("cxpulse_ready", ())] == 1

        own_broker.stop()
        wait_for("/readyz red", lambda: get(port, "/readyz")[0] == 503, worker)
        status, body = get(port, "/readyz")
        assert status == 503 and body["status"] == "unready", body
        assert body["kafka"]["unreachable_seconds"] >= THRESHOLD  # rounded to 0.1 s in the body
        reason = body["reason"]
        assert reason.startswith(f"Kafka at {settings.kafka_url} has not answered for "), reason
        assert "\n" not in reason and "CXPULSE_KAFKA_URL" in reason
        assert "clickhouse" not in body  # nothing was being inserted
        assert get(port, "/livez")[0] == 200  # alive: no reason to restart it
        metrics = scrape(port)
        assert metrics[("cxpulse_ready", ())] == 0
        assert metrics[("cxpulse_kafka_unreachable_seconds", ())] > THRESHOLD

        own_broker.start()  # the same port; an empty in-memory broker, but it answers
        wait_for("/readyz green again", lambda: get(port, "/readyz")[0] == 200, worker)
        status, body = get(port, "/readyz")
        assert body["status"] == "ready" and "kafka" not in body, body
        assert scrape(port)[("cxpulse_kafka_unreachable_seconds", ())] == 0
    finally:
        worker.stop()
