"""The publisher keeps each customer's events in one partition of the topic, in the order
published (docs/alerts.md, "What is guaranteed": the alert rules need each customer's
events in event-time order, and Kafka orders a partition only). A fake producer stands
in for Kafka; the round trip through a broker is in tests/integration."""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxpulse.streams.partitioning import partition_for
from cxpulse.streams.publisher import Publisher
from cxpulse.streams.settings import load_settings

PARTITIONS = 4


class FakeFuture:
    def add_callback(self, fn: Any, *args: Any) -> None:
        fn(*args, None)

    def add_errback(self, fn: Any, *args: Any) -> None:
        pass


class FakeProducer:
    DEFAULT_CONFIG: dict[str, Any] = {}

    def __init__(self, **config: Any) -> None:
        self.sent: list[tuple[bytes | None, int | None, bytes]] = []

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))

    def send(
        self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> FakeFuture:
        self.sent.append((key, partition, value))
        return FakeFuture()

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def publisher(monkeypatch: pytest.MonkeyPatch) -> Publisher:
    monkeypatch.setattr("cxpulse.streams.admin.wait_for_kafka", lambda *a, **k: "127.0.0.1:9092")
    monkeypatch.setattr("cxpulse.streams.publisher.KafkaProducer", FakeProducer)
    return Publisher(load_settings(), batch_size=7, create_topic=False)


def event(customer: str, t: datetime) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": t.isoformat(),
        "customer_id": customer,
        "channel": "web",
        "touchpoint": "web.login",
        "journey_stage": "post_purchase",
        "outcome": "success",
    }


def test_each_customer_stays_in_its_partition_in_order(publisher: Publisher) -> None:
    rng = random.Random(5)
    t0 = datetime(2026, 11, 16, tzinfo=UTC)
    published = [event(f"C-{rng.randrange(12)}", t0 + timedelta(seconds=i)) for i in range(300)] + [
        event("C-solo", t0 + timedelta(seconds=301 + i)) for i in range(7)
    ]
    for e in published:
        assert publisher.publish(e)
    publisher.flush()
    producer: Any = publisher._producer
    where: dict[str, set[int]] = defaultdict(set)
    arrived: dict[str, list[str]] = defaultdict(list)
    for key, partition, value in producer.sent:
        items = json.loads(value)
        customers = {item["customer_id"] for item in items}
        if key is not None:  # one customer: keyed, Kafka puts it on that key's partition
            assert customers == {key.decode()} and partition is None
            partition = partition_for(key.decode(), PARTITIONS)
        assert partition is not None
        for item in items:
            where[item["customer_id"]].add(partition)
            arrived[item["customer_id"]].append(item["event_id"])
    assert all(len(p) == 1 for p in where.values())
    assert {c: next(iter(p)) for c, p in where.items()} == {
        c: partition_for(c, PARTITIONS) for c in where
    }
    for customer, ids in arrived.items():
        assert ids == [e["event_id"] for e in published if e["customer_id"] == customer]
    assert publisher.summary.sent == len(published)
    assert any(key is not None for key, _, _ in producer.sent)  # C-solo's own message
