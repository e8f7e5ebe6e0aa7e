"""/readyz's answer: ClickHouse through a real failing run of the sink writer, Kafka
through the probe's answers (the worker-level test, with a broker really stopped, is
tests/integration/test_readiness.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from cxpulse.sinks.errors import SinkUnavailable
from cxpulse.sinks.writer import SinkWriter
from cxpulse.streams.readiness import KafkaProbe, probe_interval
from cxpulse.streams.settings import load_settings
from cxpulse.streams.web import ready, worker_started


class FlakyClickHouse:
    """Refuses every insert (ClickHouse down) until ``up`` is set."""

    def __init__(self) -> None:
        self.up = False
        self.rows: list[Any] = []

    def insert(self, table: str, rows: Sequence[Any]) -> int:
        if not self.up:
            raise SinkUnavailable("Connection refused (127.0.0.1:9000)")
        self.rows.extend(rows)
        return len(rows)


class Admin:
    def __init__(self, answers: bool) -> None:
        self.answers = answers

    async def describe_cluster(self) -> dict[str, Any]:
        if not self.answers:
            raise ConnectionRefusedError("Connect call failed ('127.0.0.1', 9092)")
        return {"cluster_id": "c"}


def runtime(writer: SinkWriter) -> Any:
    return SimpleNamespace(writer=writer, settings=load_settings(ready_unreachable_seconds=30))


def test_clickhouse_failing_longer_than_the_threshold_is_unready_until_an_insert_works() -> None:
    ch = FlakyClickHouse()
    writer = SinkWriter(lambda: ch, retry_max_seconds=0.02, retry_initial_seconds=0.001)
    rt = runtime(writer)
    probe = KafkaProbe(["127.0.0.1:9092"], interval=1)

    async def scenario() -> list[tuple[dict[str, Any], int]]:
        answers = [ready(rt, probe, started=True)]
        write = asyncio.create_task(writer.write("touchpoint_events", [("e1", 1)]))
        failing = writer.failing()
        while failing is None:  # until the first attempt has failed: the run begins
            await asyncio.sleep(0.005)
            failing = writer.failing()
        table, seconds, _ = failing
        since = time.monotonic() - seconds
        answers.append(ready(rt, probe, now=since + 10, started=True))  # failing, not for long yet
        answers.append(ready(rt, probe, now=since + 31, started=True))  # longer than the threshold
        ch.up = True
        await write
        answers.append(ready(rt, probe, started=True))
        await writer.aclose()
        assert table == "touchpoint_events"
        return answers

    fine, short, long_, again = asyncio.run(scenario())
    assert fine == ({"status": "ready", "app": "cxpulse", "threshold_seconds": 30.0}, 200)
    body, status = short
    assert status == 200 and body["clickhouse"]["table"] == "touchpoint_events"
    assert body["clickhouse"]["failing_seconds"] == 10.0
    body, status = long_
    assert status == 503 and body["status"] == "unready"
    assert body["reason"].startswith("inserts into touchpoint_events have failed for 31s")
    assert "Connection refused" in body["reason"] and "\n" not in body["reason"]
    assert again == fine and ch.rows == [("e1", 1)]


def test_kafka_silent_longer_than_the_threshold_is_unready() -> None:
    writer = SinkWriter(FlakyClickHouse)
    rt = runtime(writer)
    probe = KafkaProbe(["127.0.0.1:9092"], interval=probe_interval(30))
    assert probe.interval == 5.0 and probe_interval(3) == 1.0 and probe_interval(0.3) == 0.5

    async def scenario() -> None:
        assert await probe.probe_once(Admin(answers=True))
        assert probe.unreachable() is None and probe.unreachable_seconds() == 0
        assert not await probe.probe_once(Admin(answers=False))
        assert not await probe.probe_once(Admin(answers=False))

    asyncio.run(scenario())
    _, error = probe.unreachable() or (0.0, "")
    assert error == "ConnectionRefusedError: Connect call failed ('127.0.0.1', 9092)"
    body, status = ready(rt, probe, now=probe.last_ok + 20, started=True)
    assert status == 200 and body["kafka"]["unreachable_seconds"] == 20.0
    body, status = ready(rt, probe, now=probe.last_ok + 45, started=True)
    assert status == 503 and body["status"] == "unready"
    assert body["reason"] == (
        "Kafka at kafka://127.0.0.1:9092 has not answered for 45s (ConnectionRefusedError: "
        "Connect call failed ('127.0.0.1', 9092)): check the brokers and CXPULSE_KAFKA_URL"
    )
    asyncio.run(probe.probe_once(Admin(answers=True)))
    assert ready(rt, probe, started=True)[1] == 200 and probe.unreachable() is None
    writer.close()


def test_a_worker_not_yet_ready_is_not_ready() -> None:
    """Its web server answers while it still joins its group and recovers its tables:
    /readyz says it is starting, whatever Kafka and ClickHouse say, until Ready."""
    writer = SinkWriter(FlakyClickHouse)
    rt = runtime(writer)
    probe = KafkaProbe(["127.0.0.1:9092"], interval=1)
    assert not worker_started()  # nothing in this process reached Ready
    for started in (None, False):
        body, status = ready(rt, probe, started=started)
        assert status == 503 and body["status"] == "starting", body
        assert body["reason"].startswith("the worker is starting") and "\n" not in body["reason"]
    assert ready(rt, probe, started=True) == (
        {"status": "ready", "app": "cxpulse", "threshold_seconds": 30.0},
        200,
    )
    writer.close()


def test_a_probe_that_hangs_counts_as_no_answer() -> None:
    class Hanging:
        async def describe_cluster(self) -> dict[str, Any]:
            await asyncio.sleep(3600)
            return {}

    probe = KafkaProbe(["127.0.0.1:9092"], interval=0.05)
    assert not asyncio.run(probe.probe_once(Hanging()))
    assert probe.unreachable() is not None and probe.error == "TimeoutError"
