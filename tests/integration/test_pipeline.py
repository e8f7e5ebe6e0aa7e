"""End to end on real components: bundled tansu broker, a real worker process, chDB (and
the ClickHouse server named by CXPULSE_TEST_CLICKHOUSE_URL, which CI always sets)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from cxpulse.streams.admin import ensure_topics, read_records
from cxpulse.streams.app import TABLE_NAMES
from cxpulse.streams.dev.demo import WorkerProcess, free_port, scrape, sink_rows
from cxpulse.streams.partitioning import partition_for
from cxpulse.streams.pipeline.records import decode_events
from cxpulse.streams.publisher import Publisher
from cxpulse.streams.settings import Settings, load_settings
from cxpulse.streams.topics import all_topics, touchpoints, touchpoints_dlq
from cxpulse.streams.topics import events as events_topic

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

SERVER_URL = os.environ.get("CXPULSE_TEST_CLICKHOUSE_URL")


def clickhouse_url(kind: str, tmp_path: Path, name: str) -> str:
    if kind == "chdb":
        return f"chdb://{tmp_path / 'chdb'}"
    if not SERVER_URL:
        if os.environ.get("CI"):
            pytest.fail("CXPULSE_TEST_CLICKHOUSE_URL is not set in CI: .ci/run must set it")
        pytest.skip("set CXPULSE_TEST_CLICKHOUSE_URL to run against a ClickHouse server")
    base = SERVER_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def counted(metrics: dict[Any, float], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric, by labels, leaving out zeros."""
    return {labels: v for (n, labels), v in metrics.items() if n == name and v}


def progress(metrics: dict[Any, float]) -> str:
    """The worker's own counters, to say which stage a stalled test stopped at."""
    lines = [
        f"{name}{dict(labels) if labels else ''} = {value:g}"
        for (name, labels), value in sorted(metrics.items())
        if name.startswith("cxpulse_") and not name.endswith(("_bucket", "_created"))
    ]
    return "worker metrics:\n" + "\n".join(lines)


@dataclass
class Pipeline:
    settings: Settings
    tmp_path: Path
    workers: list[WorkerProcess]

    def start_worker(self, module: str = "cxpulse.streams.cli", **env: str) -> WorkerProcess:
        argv = [sys.executable, "-m", module] + (
            ["worker"] if module == "cxpulse.streams.cli" else []
        )
        worker = WorkerProcess(
            self.settings, self.tmp_path / f"worker-{len(self.workers)}.log", extra_env=env
        )
        worker.start(argv)
        self.workers.append(worker)
        return worker

    def wait_rows(self, worker: WorkerProcess, table: str, n: int, timeout: float = 90) -> int:
        deadline = time.monotonic() + timeout
        got = 0
        while time.monotonic() < deadline:
            assert worker.alive(), f"worker died:\n{worker.log_tail(40)}"
            got = sink_rows(scrape(self.settings.web_port), table)
            if got >= n:
                return got
            time.sleep(0.2)
        raise AssertionError(
            f"{table}: {got}/{n} rows after {timeout}s\n{worker.log_tail(40)}\n"
            f"{progress(scrape(self.settings.web_port))}\n{self.kafka_positions()}\n"
            f"{worker.dump_stacks()}"
        )

    def kafka_positions(self) -> str:
        """Where the input is and where the group stands: the source topic's records by
        partition and offset, and the group's committed offsets (for a stall that the
        worker's own counters cannot explain)."""
        from kafka import KafkaAdminClient

        lines = ["source records (partition@offset: events):"]
        try:
            for topic in (touchpoints(self.settings), events_topic(self.settings)):
                lines.append(f"{topic}:")
                for r in read_records(self.settings.bootstrap_servers, topic):
                    batch = decode_events(r.value)[0]
                    who = sorted({e.customer_id for e in batch})
                    lines.append(f"  {r.partition}@{r.offset}: {len(batch)} {who}")
            admin = KafkaAdminClient(bootstrap_servers=self.settings.bootstrap_servers)
            try:
                app_id = self.settings.app_id
                committed = admin.list_group_offsets({app_id: None}).get(app_id, {})
            finally:
                admin.close()
            lines.append("committed offsets of the group:")
            for tp, meta in sorted(committed.items()):
                lines.append(f"  {tp.topic}[{tp.partition}] = {meta.offset}")
        except Exception as exc:  # diagnostics must not hide the real failure
            lines.append(f"  (could not read: {exc!r})")
        return "\n".join(lines)

    def wait_ready(self, worker: WorkerProcess, timeout: float = 60) -> None:
        """Until the worker has joined its group and recovered its tables (Faust Ready)."""
        deadline = time.monotonic() + timeout
        while scrape(self.settings.web_port).get(("cxpulse_worker_ready_seconds", ()), 0) <= 0:
            assert worker.alive(), f"worker died:\n{worker.log_tail(40)}"
            assert time.monotonic() < deadline, f"not ready after {timeout}s\n{worker.log_tail(40)}"
            time.sleep(0.2)

    def wait_scores(self, worker: WorkerProcess, timeout: float = 60) -> None:
        """Until every score update this worker emitted is in ``customer_scores``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            metrics = scrape(self.settings.web_port)
            emitted = metrics.get(("cxpulse_score_updates_total", ()), -1)
            if emitted >= 0 and sink_rows(metrics, "customer_scores") >= emitted:
                return
            time.sleep(0.2)
        raise AssertionError(f"score updates not all inserted\n{worker.log_tail(40)}")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Read ClickHouse directly (workers stopped: chDB is single-process)."""
        from cxpulse.sinks.clickhouse import open_backend

        for worker in self.workers:
            worker.stop()
        backend = open_backend(self.settings.clickhouse_url, self.settings.clickhouse_password)
        try:
            _, rows = backend.query(sql)
        finally:
            backend.close()
        return [tuple(r) for r in rows]


@pytest.fixture(params=["chdb", "server"])
def pipeline(
    request: pytest.FixtureRequest, kafka_broker: Any, tmp_path: Path
) -> Iterator[Pipeline]:
    name = f"t{uuid.uuid4().hex[:10]}"
    settings = load_settings(
        kafka_url=kafka_broker.url,
        clickhouse_url=clickhouse_url(request.param, tmp_path, f"cxpulse_{name}"),
        app_id=f"cxpulse-{name}",
        topic_prefix=name,
        partitions=4,
        web_port=free_port(),
        data_dir=tmp_path / "var",
        sink_flush_seconds=0.3,
    )
    ensure_topics(settings, all_topics(settings, TABLE_NAMES))
    p = Pipeline(settings, tmp_path, [])
    yield p
    for worker in p.workers:
        worker.stop()


def make_events(n: int, customers: int = 7) -> list[dict[str, Any]]:
    start = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    channels = [
        ("web", "web.login", {"kind": "web", "latency_ms": 850.0, "http_status": 200}),
        ("app", "app.transfer", {"kind": "app", "latency_ms": 400.0, "os": "ios"}),
        ("call_center", "call.card_hotline", {"kind": "call_center", "wait_seconds": 300.0}),
        ("store", "store.counter", {"kind": "store", "queue_seconds": 600.0}),
        ("atm", "atm.withdrawal", {"kind": "atm", "error_code": "E-CASH-JAM"}),
    ]
    events = []
    for i in range(n):
        channel, touchpoint, details = channels[i % len(channels)]
        events.append(
            {
                "event_id": str(uuid.UUID(int=i + 1)),
                "occurred_at": (start + timedelta(minutes=i)).isoformat(),
                "customer_id": f"C-{i % customers:04d}",
                "channel": channel,
                "touchpoint": touchpoint,
                "journey_stage": "post_purchase",
                "outcome": "failure" if i % 4 == 0 else "success",
                "details": details,
                "tier": "ABC"[i % 3],
            }
        )
    return events


def publish(settings: Settings, events: list[dict[str, Any]], batch_size: int = 50) -> None:
    with Publisher(settings, batch_size=batch_size) as publisher:
        publisher.publish_many(events)
        publisher.flush()


def send_raw(settings: Settings, messages: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    for message in messages:
        producer.send(touchpoints(settings), message)
    producer.flush()
    producer.close()


def test_single_and_batched_events_reach_clickhouse(pipeline: Pipeline) -> None:
    events = make_events(120)
    worker = pipeline.start_worker()
    publish(pipeline.settings, events[:100], batch_size=25)  # batches of 25
    send_raw(pipeline.settings, [json.dumps(e).encode() for e in events[100:]])  # one each
    pipeline.wait_rows(worker, "touchpoint_events", len(events))

    rows = pipeline.query("SELECT toString(event_id), channel FROM touchpoint_events FINAL")
    assert sorted(r[0] for r in rows) == sorted(e["event_id"] for e in events)
    by_channel: dict[str, int] = {}
    for _, channel in rows:
        by_channel[channel] = by_channel.get(channel, 0) + 1
    assert by_channel == {c: 24 for c in ("web", "app", "call_center", "store", "atm")}
    # The SDK sent each event to its customer's partition: scored from there, no hop. The
    # unkeyed ones went to any partition: those that are not in their customer's took the
    # hop through the events topic, and only they.
    customer_of = {e["event_id"]: e["customer_id"] for e in events}
    bootstrap, partitions = pipeline.settings.bootstrap_servers, pipeline.settings.partitions
    elsewhere = {
        str(e["event_id"])
        for r in read_records(bootstrap, touchpoints(pipeline.settings))
        if not r.value.startswith(b"[")
        for e in [json.loads(r.value)]
        if partition_for(customer_of[e["event_id"]], partitions) != r.partition
    }
    hopped = [
        str(e.event_id)
        for r in read_records(bootstrap, events_topic(pipeline.settings))
        for e in decode_events(r.value)[0]
    ]
    assert elsewhere and sorted(hopped) == sorted(elsewhere)
    # it ran on uvloop, the default event loop (CXPULSE_EVENT_LOOP), and said so at start
    import uvloop

    log = worker.log_path.read_text()
    assert f"event loop: uvloop {uvloop.__version__};" in log
    # on chDB its rows were made into Arrow batches in the rows process (its own process);
    # a ClickHouse server takes rows, and there is none
    on_chdb = pipeline.settings.clickhouse_url.startswith("chdb:")
    assert ("rows are made into Arrow batches in their own process" in log) == on_chdb
    # and its customers were scored in the scoring process (a state store on disk)
    assert "customers are scored in their own process" in log


def test_invalid_events_reach_dlq_topic_and_table_with_reasons(pipeline: Pipeline) -> None:
    good = make_events(3)
    bad_item = dict(good[0], event_id=str(uuid.uuid4()), channel="fax")
    spawned = time.monotonic()
    worker = pipeline.start_worker()
    send_raw(
        pipeline.settings,
        [
            json.dumps([good[0], bad_item, good[1]]).encode(),  # one bad among good
            b"{not json",
            json.dumps({k: v for k, v in good[2].items() if k != "customer_id"}).encode(),
        ],
    )
    pipeline.wait_rows(worker, "dead_letters", 3)
    pipeline.wait_rows(worker, "touchpoint_events", 2)

    # the worker counted what it saw: messages, valid events by channel, invalid by kind, lag
    metrics = scrape(pipeline.settings.web_port)
    assert metrics[("cxpulse_messages_in_total", ())] == 3
    assert counted(metrics, "cxpulse_events_in_total") == {
        (("channel", good[0]["channel"]),): 1,
        (("channel", good[1]["channel"]),): 1,
    }
    invalid = counted(metrics, "cxpulse_events_invalid_total")
    assert sum(invalid.values()) == 3
    assert {(("reason", "not_json"),), (("reason", "missing"),)} <= set(invalid)
    assert metrics[("cxpulse_event_lag_seconds_count", ())] == 2
    # start-up time, counted from the process's own start: after it, before this scrape
    assert 0 < metrics[("cxpulse_worker_ready_seconds", ())] < time.monotonic() - spawned
    # garbage collections are timed from the start: the whole-heap one before the heap is
    # frozen (at the first rebalance) at least
    assert counted(metrics, "cxpulse_gc_collections_total")[(("generation", "2"),)] >= 1
    assert counted(metrics, "cxpulse_gc_seconds_total")[(("generation", "2"),)] > 0
    assert 0 < metrics[("cxpulse_gc_longest_pause_seconds", ())] < 60
    # the sentiment models were loaded during the group join (its first rebalance), once
    deadline = time.monotonic() + 60
    while "sentiment models loaded" not in worker.log_path.read_text():
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.2)
    assert worker.log_path.read_text().count("sentiment models loaded") == 1

    records = read_records(
        pipeline.settings.bootstrap_servers, touchpoints_dlq(pipeline.settings), timeout=10
    )
    assert len(records) == 3
    reasons = sorted(dict(r.headers)["cxpulse.reason"].decode() for r in records)
    assert any(r.startswith("channel") for r in reasons), reasons
    assert any(r.startswith("not JSON") for r in reasons), reasons
    assert any(r.startswith("customer_id: Field required") for r in reasons), reasons

    rows = pipeline.query(
        "SELECT source_index, reason, payload FROM dead_letters FINAL ORDER BY source_offset"
    )
    assert len(rows) == 3
    assert any(r[0] == 1 and json.loads(r[2]) == bad_item for r in rows)
    assert {r[0] for r in rows} == {1, -1}
    events = pipeline.query("SELECT toString(event_id) FROM touchpoint_events FINAL")
    assert sorted(r[0] for r in events) == sorted([good[0]["event_id"], good[1]["event_id"]])


#: Per table, what must not change when input is replayed: (rows, distinct keys) after FINAL.
REPLAY_COUNTS = {
    "touchpoint_events": "SELECT count(), uniqExact(event_id) FROM touchpoint_events FINAL",
    "moments": "SELECT count(), uniqExact(event_id) FROM moments FINAL",
    "moment_factors": "SELECT count(), uniqExact(event_id, factor) FROM moment_factors FINAL",
    "customer_scores": "SELECT count(), uniqExact(customer_id) FROM customer_scores FINAL",
    "dead_letters": "SELECT count(), uniqExact(dead_letter_id) FROM dead_letters FINAL",
}


def test_replaying_the_same_input_adds_no_duplicate_rows(pipeline: Pipeline) -> None:
    """Upstream sends everything twice; later the whole topic is re-read by a worker with
    a fresh state (a new app id: the consumer group and table changelog start empty). Every
    table keeps one row per key, and the latest scores are the same."""
    events = make_events(60)
    invalid = [b"{not json", json.dumps(dict(events[0], channel="fax")).encode()]
    worker = pipeline.start_worker()
    publish(pipeline.settings, events)
    publish(pipeline.settings, events)  # the same events again, as a careless producer would
    send_raw(pipeline.settings, invalid)
    pipeline.wait_rows(worker, "touchpoint_events", 2 * len(events))
    pipeline.wait_rows(worker, "dead_letters", len(invalid))
    pipeline.wait_rows(worker, "moments", len(events))
    pipeline.wait_scores(worker)
    assert scrape(pipeline.settings.web_port)[("cxpulse_duplicate_events_total", ())] == len(events)

    def snapshot() -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, float]]:
        counts = {table: pipeline.query(sql) for table, sql in REPLAY_COUNTS.items()}
        scores = dict(pipeline.query("SELECT customer_id, score FROM customer_scores FINAL"))
        return counts, scores

    counts, scores = snapshot()
    assert counts["touchpoint_events"] == counts["moments"] == [(len(events), len(events))]
    assert counts["dead_letters"] == [(len(invalid), len(invalid))]
    assert scores.keys() == {e["customer_id"] for e in events}

    replay = pipeline.start_worker(CXPULSE_APP_ID=f"{pipeline.settings.app_id}-replay")
    # the fresh state sees each event twice more (the raw topic holds it twice; the SDK
    # sent each to its customer's partition, so the first worker sent none on through
    # the events topic): scored once, the rest duplicates
    pipeline.wait_rows(replay, "touchpoint_events", 2 * len(events))
    pipeline.wait_rows(replay, "moments", len(events))
    pipeline.wait_rows(replay, "dead_letters", len(invalid))
    pipeline.wait_scores(replay)
    assert snapshot() == (counts, scores)
    # history: one row per (customer, version), and a version always has the same score
    history = pipeline.query(
        "SELECT customer_id, version, count(), uniqExact(score) FROM score_history FINAL "
        "GROUP BY customer_id, version"
    )
    assert history and all(n == 1 and distinct == 1 for _, _, n, distinct in history)


def assert_scores_are_the_cores(pipeline: Pipeline, events: list[dict[str, Any]]) -> None:
    """ClickHouse holds, for every customer, the score the pure core gives their events."""
    scores = dict(pipeline.query("SELECT customer_id, score FROM customer_scores FINAL"))
    expected = expected_scores(events)
    assert scores.keys() == expected.keys()
    for customer, score in scores.items():
        assert score == pytest.approx(expected[customer], abs=0.05), customer


def test_failed_inserts_are_retried_and_nothing_is_lost(pipeline: Pipeline) -> None:
    """Inserts fail, the worker is killed while they fail, a new worker finishes the job."""
    events = make_events(80)
    settings = pipeline.settings
    flaky = pipeline.start_worker(
        "tests.integration.flaky_worker", CXPULSE_TEST_FAIL_INSERTS="1000000"
    )
    publish(settings, events)
    deadline = time.monotonic() + 90
    failures = 0.0
    while time.monotonic() < deadline and failures < 2:
        assert flaky.alive(), flaky.log_tail(40)
        failures = scrape(settings.web_port).get(
            ("cxpulse_sink_failures_total", (("table", "touchpoint_events"),)), 0.0
        )
        time.sleep(0.2)
    assert failures >= 2, flaky.log_tail(40)
    assert sink_rows(scrape(settings.web_port), "touchpoint_events") == 0
    assert flaky.proc is not None
    flaky.proc.kill()  # crash while the batch is unacknowledged
    flaky.proc.wait()

    recovering = pipeline.start_worker(
        "tests.integration.flaky_worker", CXPULSE_TEST_FAIL_INSERTS="3"
    )
    pipeline.wait_rows(recovering, "touchpoint_events", len(events))
    metrics = scrape(settings.web_port)
    assert metrics[("cxpulse_sink_failures_total", (("table", "touchpoint_events"),))] >= 1
    pipeline.wait_rows(recovering, "moments", 1)
    pipeline.wait_scores(recovering)

    rows = pipeline.query("SELECT toString(event_id) FROM touchpoint_events FINAL")
    assert sorted(r[0] for r in rows) == sorted(e["event_id"] for e in events)
    # The crash lost no state and double-counted no event: scores are the core's.
    assert_scores_are_the_cores(pipeline, events)


@pytest.mark.parametrize("scored", ["in the scoring process", "on the event loop"])
def test_scores_moments_and_views_land_in_clickhouse(pipeline: Pipeline, scored: str) -> None:
    from cxpulse.schemas.events import TouchpointEvent
    from cxpulse.streams.core import apply_events
    from cxpulse.streams.dev.sample_events import sample_events
    from cxpulse.streams.model_check import load_model
    from cxpulse.streams.sentiment import DefaultSentimentAnalyzer, sentiments_for

    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    docs = sample_events(seed=3, now=now)
    in_process = scored == "in the scoring process"
    worker = pipeline.start_worker(CXPULSE_SCORE_PROCESS=str(in_process).lower())
    publish(pipeline.settings, docs, batch_size=20)
    pipeline.wait_rows(worker, "moments", len(docs))
    customers = {d["customer_id"] for d in docs}
    pipeline.wait_rows(worker, "customer_scores", len(customers))
    log = worker.log_path.read_text()
    assert ("customers are scored in their own process" in log) == in_process

    events = [TouchpointEvent.model_validate(d) for d in docs]
    model = load_model()
    sentiments = sentiments_for(events, DefaultSentimentAnalyzer())  # as the worker does
    expected = {}
    for customer in customers:
        mine = [e for e in events if e.customer_id == customer]
        state, _ = apply_events(None, mine, model, now, sentiments)
        expected[customer] = state.score

    scores = dict(pipeline.query("SELECT customer_id, score FROM customer_scores FINAL"))
    assert scores.keys() == expected.keys()
    for customer, score in scores.items():
        # Float32 in ClickHouse; the worker's batches split differently than one call.
        assert score == pytest.approx(expected[customer], abs=0.05), customer

    moments = pipeline.query("SELECT count(), uniqExact(event_id) FROM moments FINAL")
    assert moments == [(len(docs), len(docs))]
    # Each text's sentiment is on its moment, and only texts have one, although the take
    # scored the customers without text while the sentiment process read the texts.
    read = dict(pipeline.query("SELECT toString(event_id), sentiment FROM moments FINAL"))
    with_text = {str(i): s for i, s in sentiments.items() if s is not None}
    assert with_text, "the sample has feedback texts"
    assert {i: s for i, s in read.items() if s is not None} == pytest.approx(with_text, abs=1e-6)
    factors = pipeline.query("SELECT count(DISTINCT event_id) FROM moment_factors FINAL")
    assert factors == [(len(docs),)]
    emotion = pipeline.query("SELECT sum(moments) FROM emotion_map")
    assert emotion[0][0] == sum(1 for d in docs)  # the sample has no late events
    bands = pipeline.query("SELECT sum(customers) FROM score_distribution WHERE channel = 'all'")
    assert bands == [(len(customers),)]
    key = pipeline.query("SELECT factor FROM key_experiences WHERE key_negative > 0")
    assert ("service",) in key  # the sample's ATM-0042 keeps failing withdrawals


def expected_scores(docs: list[dict[str, Any]]) -> dict[str, float]:
    """Scores the pure core gives for all of ``docs`` at once (no feedback text in them)."""
    from cxpulse.schemas.events import TouchpointEvent
    from cxpulse.streams.core import apply_events
    from cxpulse.streams.model_check import load_model

    events = [TouchpointEvent.model_validate(d) for d in docs]
    model = load_model()
    now = datetime.now(UTC)
    out = {}
    for customer in sorted({e.customer_id for e in events}):
        state, _ = apply_events(None, [e for e in events if e.customer_id == customer], model, now)
        out[customer] = state.score
    return out


def test_a_dead_scoring_process_loses_nothing(pipeline: Pipeline) -> None:
    """The scoring process is killed between two takes: the next take is scored on the
    event loop (counted), the one after in a new child, and every customer's score is
    the core's."""
    from cxpulse.streams.pipeline.score_process import NAME

    events = make_events(90, customers=6)
    worker = pipeline.start_worker()
    publish(pipeline.settings, events[:40])
    pipeline.wait_rows(worker, "moments", 40)
    assert worker.proc is not None
    [child] = [p for p in _children(worker.proc.pid) if _comm(p) == NAME]
    os.kill(child, signal.SIGKILL)
    publish(pipeline.settings, events[40:70])
    pipeline.wait_rows(worker, "moments", 70)
    publish(pipeline.settings, events[70:])
    pipeline.wait_rows(worker, "moments", len(events))
    pipeline.wait_scores(worker)
    metrics = scrape(pipeline.settings.web_port)
    assert metrics[("cxpulse_score_process_fallbacks_total", ())] >= 1
    assert [p for p in _children(worker.proc.pid) if _comm(p) == NAME] != [child]
    assert "the scoring process ended" in worker.log_path.read_text()
    assert_scores_are_the_cores(pipeline, events)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def test_customer_state_survives_a_restart(pipeline: Pipeline) -> None:
    """Table state is recovered from its changelog: scores continue, not restart."""
    events = make_events(70, customers=5)
    first = pipeline.start_worker()
    publish(pipeline.settings, events[:40])
    pipeline.wait_rows(first, "moments", 40)
    assert first.stop() == 0  # graceful: offsets committed, changelog written

    second = pipeline.start_worker()
    # Published while the worker starts (joins, recovers its table, seeks): input that
    # arrives then, also on partitions the group never committed, must not be skipped
    # (streams/kafka_consumer.py; the chaos suite repeats this 30 times).
    publish(pipeline.settings, events[40:55])
    pipeline.wait_ready(second)
    publish(pipeline.settings, events[55:])
    pipeline.wait_rows(second, "moments", 30)  # this worker's counter starts at 0
    pipeline.wait_scores(second)

    assert_scores_are_the_cores(pipeline, events)


def test_customer_state_recovers_from_the_changelog_alone(pipeline: Pipeline) -> None:
    """A worker whose local disk is lost (a new node) rebuilds every customer's state
    from the changelog: the records a checkpoint sends are the bytes it wrote to disk."""
    import shutil

    from cxpulse.streams.app import tables_dir

    events = make_events(60, customers=5)
    first = pipeline.start_worker()
    publish(pipeline.settings, events[:40])
    pipeline.wait_rows(first, "moments", 40)
    assert first.stop() == 0
    shutil.rmtree(tables_dir(pipeline.settings))  # nothing on disk: the changelog only

    second = pipeline.start_worker()
    pipeline.wait_ready(second)
    publish(pipeline.settings, events[40:])
    pipeline.wait_rows(second, "moments", 20)
    pipeline.wait_scores(second)

    assert_scores_are_the_cores(pipeline, events)


def test_customer_state_lives_on_local_disk(pipeline: Pipeline) -> None:
    """The customer table is on disk (RocksDB per partition, cxpulse.streams.state.store): after a
    graceful stop every customer's state is there, and each partition records the
    changelog offset it holds, so a restart reads only the changelog's tail."""
    from rocksdict import AccessType, Options, Rdict

    from cxpulse.streams.state.customer import decode
    from cxpulse.streams.state.store import ROCKSDB_OPTIONS

    events = make_events(35, customers=7)
    worker = pipeline.start_worker()
    publish(pipeline.settings, events)
    pipeline.wait_rows(worker, "moments", len(events))
    pipeline.wait_scores(worker)
    assert worker.stop() == 0

    dbs = sorted(pipeline.settings.data_dir.glob("faust/**/*customer_state*.db"))
    assert dbs, sorted(str(p) for p in pipeline.settings.data_dir.rglob("*"))[:50]
    on_disk: dict[str, int] = {}
    persisted = 0
    for path in dbs:
        options = Options(raw_mode=True)
        db = Rdict(str(path), options=options, access_type=AccessType.read_only())
        try:
            for key, value in db.items():
                if key.startswith(b"__faust"):
                    persisted += 1
                    continue
                state = decode(value)
                assert key.decode() == state.customer_id
                on_disk[state.customer_id] = state.version
        finally:
            db.close()
    per_customer: dict[str, int] = {}
    for e in events:
        per_customer[e["customer_id"]] = per_customer.get(e["customer_id"], 0) + 1
    assert on_disk == per_customer  # every event applied once, every state written
    assert persisted == len(dbs)  # each partition knows how far its disk goes
    # opened with the store's bounded memtables, not Faust's 3 × 64 MiB (RocksDB writes
    # the options a database was opened with into its directory)
    for path in dbs:
        [latest] = sorted(path.glob("OPTIONS-*"))[-1:]
        written = latest.read_text()
        assert f"write_buffer_size={ROCKSDB_OPTIONS['write_buffer_size']}" in written
        assert f"max_write_buffer_number={ROCKSDB_OPTIONS['max_write_buffer_number']}" in written


def failing_atm_journey(
    customer: str, instance: str, n: int, start: datetime
) -> list[dict[str, Any]]:
    """``n`` failed withdrawals, two minutes apart, for one tier-A customer."""
    return [
        {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{customer}/{i}")),
            "occurred_at": (start + timedelta(minutes=2 * i)).isoformat(),
            "customer_id": customer,
            "channel": "atm",
            "touchpoint": "atm.withdrawal",
            "touchpoint_instance": instance,
            "journey_stage": "post_purchase",
            "outcome": "failure",
            "details": {"kind": "atm", "error_code": "E-CASH-JAM"},
            "tier": "A",
            "segment": "retail_banking",
        }
        for i in range(n)
    ]


def atm_attempts(instance: str, outcomes: list[str], start: datetime) -> list[dict[str, Any]]:
    """One withdrawal a minute at ``instance``, each by another customer."""
    return [
        {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{instance}/{start}/{i}")),
            "occurred_at": (start + timedelta(minutes=i)).isoformat(),
            "customer_id": f"C-{instance}-{start.minute}-{i}",
            "channel": "atm",
            "touchpoint": "atm.withdrawal",
            "touchpoint_instance": instance,
            "journey_stage": "post_purchase",
            "outcome": outcome,
            "details": {"kind": "atm", "response_ms": 900.0},
        }
        for i, outcome in enumerate(outcomes)
    ]


def test_touchpoint_health_survives_a_restart(pipeline: Pipeline) -> None:
    """The health step's states reach its changelog at checkpoints (as the customers'
    do): 9 attempts before a restart and 4 after are one window of 13, which is degraded
    (10 attempts at least, docs/alerts.md), though neither run alone would be."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    docs = atm_attempts("ATM-0777", ["success", *["failure"] * 12], start)
    first = pipeline.start_worker()
    publish(pipeline.settings, docs[:9])
    pipeline.wait_rows(first, "moments", 9)
    time.sleep(2 * pipeline.settings.sink_flush_seconds)  # a health checkpoint after them
    assert first.stop() == 0
    assert degraded(pipeline) == []

    second = pipeline.start_worker()
    pipeline.wait_ready(second)
    publish(pipeline.settings, docs[9:])
    pipeline.wait_rows(second, "moments", 4)
    # The alert comes from another step (touchpoint health) and reaches ClickHouse through
    # cx.alerts: wait for it in the worker's own counters, since reading ClickHouse stops
    # the workers (chDB is single-process). The moments alone say nothing of it.
    deadline = time.monotonic() + 60
    while True:
        metrics = scrape(pipeline.settings.web_port)
        raised = counted(metrics, "cxpulse_alerts_total")
        emitted = sum(raised.values())
        if (
            any(("rule", "touchpoint_degraded") in labels for labels in raised)
            and sink_rows(metrics, "alerts") >= emitted
        ):
            break
        assert time.monotonic() < deadline, (
            f"no touchpoint_degraded alert in ClickHouse after the restart\n{progress(metrics)}"
        )
        time.sleep(0.2)
    assert degraded(pipeline) == ["ATM-0777"]


def degraded(pipeline: Pipeline) -> list[str]:
    rows = pipeline.query(
        "SELECT DISTINCT instance FROM alerts FINAL WHERE rule = 'touchpoint_degraded'"
    )
    return [r[0] for r in rows]


def test_alerts_reach_the_topic_clickhouse_and_the_live_tail(pipeline: Pipeline) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    docs = failing_atm_journey("C-alert-1", "ATM-0999", 4, start)
    worker = pipeline.start_worker()
    publish(pipeline.settings, docs)
    pipeline.wait_rows(worker, "moments", len(docs))
    deadline = time.monotonic() + 60
    while True:
        metrics = scrape(pipeline.settings.web_port)
        emitted = sum(v for (name, _), v in metrics.items() if name == "cxpulse_alerts_total")
        if emitted and sink_rows(metrics, "alerts") >= emitted:
            break
        assert time.monotonic() < deadline, f"alerts not all inserted\n{progress(metrics)}"
        time.sleep(0.2)

    env = dict(os.environ, CXPULSE_KAFKA_URL=pipeline.settings.kafka_url)
    env["CXPULSE_TOPIC_PREFIX"] = pipeline.settings.topic_prefix
    tail = subprocess.run(
        [
            *(
                sys.executable,
                "-m",
                "cxpulse.streams.cli",
                "alerts",
                "--follow",
                "--from-beginning",
            ),
            *("--json", "--rule", "repeated_failure", "--idle-timeout", "5"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tail.returncode == 0, tail.stderr
    printed = [json.loads(line) for line in tail.stdout.splitlines() if line.strip()]
    assert printed, tail.stderr
    assert {a["rule"] for a in printed} == {"repeated_failure"}
    alert = printed[-1]
    assert alert["customer_id"] == "C-alert-1" and alert["tier"] == "A"
    assert alert["severity"] == "critical"  # tier A raises the base severity
    assert "ATM-0999" in alert["explanation"]
    assert set(alert["event_ids"]) <= {d["event_id"] for d in docs}

    rows = pipeline.query(
        "SELECT toString(alert_id), rule, customer_id, explanation FROM alerts FINAL"
    )
    by_rule = {r[1]: r for r in rows}
    assert "repeated_failure" in by_rule
    assert by_rule["repeated_failure"][0] == alert["alert_id"]
    assert by_rule["repeated_failure"][3] == alert["explanation"]
