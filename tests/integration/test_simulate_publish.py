"""The simulator publishes through the Publisher SDK onto a real (tansu) broker.

Counts are proven by consuming (``count_records``/``read_records``), never from end
offsets, which tansu under-reports for multi-record batches.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from cxpulse.schemas.envelope import decode_message
from cxpulse.streams.admin import count_records, ensure_topics, read_records
from cxpulse.streams.dev.broker import EmbeddedBroker
from cxpulse.streams.dev.simulate import generate, print_summary, simulate
from cxpulse.streams.settings import Settings, load_settings
from cxpulse.streams.topics import all_topics, touchpoints

pytestmark = pytest.mark.kafka

START = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)


@pytest.fixture
def settings(kafka_broker: EmbeddedBroker, unique_topic: Callable[[str], str]) -> Settings:
    settings = load_settings(
        kafka_url=kafka_broker.url, topic_prefix=unique_topic("sim"), partitions=3
    )
    ensure_topics(settings, all_topics(settings))
    return settings


def test_simulate_publishes_2000_events(kafka_broker: EmbeddedBroker, settings: Settings) -> None:
    incidents = ["atm_outage:ATM-0001@+2h/1h", "call_center_backlog@+3h/1h"]
    summary = simulate(
        settings,
        customers=1_000,
        events=2_000,
        seed=21,
        start=START,
        incidents=incidents,
        batch_size=250,
        progress=False,
    )
    assert (summary.events, summary.sent, summary.rejected) == (2_000, 2_000, 0)
    # 250-event batches per partition: each of the 3 partitions' ~670 events in two or
    # three full batches and a remainder (10 messages with this seed)
    assert summary.messages == 10
    topic = touchpoints(settings)
    assert summary.destination == f"topic {topic} at {settings.kafka_url}"
    assert count_records(kafka_broker.bootstrap, topic, expected=10) == 10

    records = read_records(kafka_broker.bootstrap, topic, expected=10)
    published = []
    for record in records:
        events, rejected = decode_message(record.value)
        assert rejected == []
        published.extend(events)
    assert len(published) == 2_000
    # Exactly the events the pure generator makes from the same arguments.
    expected = list(generate(1_000, 21, events=2_000, start=START, incidents=incidents))
    assert sorted(str(e.event_id) for e in published) == sorted(e["event_id"] for e in expected)
    assert {e.channel for e in published} == {"web", "app", "call_center", "store", "atm"}

    report = io.StringIO()
    print_summary(summary, file=report)
    assert f"sent      2,000 events in 10 messages to topic {topic}" in report.getvalue()


def test_simulate_one_event_per_message_at_a_capped_rate(
    kafka_broker: EmbeddedBroker, settings: Settings
) -> None:
    summary = simulate(
        settings,
        customers=200,
        duration=timedelta(hours=2),
        seed=3,
        start=START + timedelta(hours=4),
        rate=400,
        batch_size=1,
        progress=False,
    )
    assert summary.sent == summary.messages == summary.events > 0
    assert summary.events_per_second <= 440
    topic = touchpoints(settings)
    assert count_records(kafka_broker.bootstrap, topic, expected=summary.events) == summary.events
