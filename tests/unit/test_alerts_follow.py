"""The live alert tail on the bundled broker: filters, JSON lines, colours, bad messages."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer

from cxpulse.schemas.alerts import Alert
from cxpulse.schemas.events import TouchpointEvent
from cxpulse.streams.admin import ensure_topics
from cxpulse.streams.alerts_follow import decode_alerts, follow_alerts, matches, render
from cxpulse.streams.core import apply_events
from cxpulse.streams.dev.broker import EmbeddedBroker
from cxpulse.streams.model_check import load_model
from cxpulse.streams.rules.customer import customer_alerts
from cxpulse.streams.settings import load_settings
from cxpulse.streams.topics import TopicSpec

M = load_model(None)
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
EMIT = T0 + timedelta(hours=1)


def ev(minutes: float, tier: str, **kw: Any) -> TouchpointEvent:
    raw: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "customer_id": f"C-{tier}",
        "channel": "atm",
        "touchpoint": "atm.withdrawal",
        "touchpoint_instance": "ATM-0042",
        "journey_stage": "post_purchase",
        "outcome": "failure",
        "tier": tier,
    }
    raw.update(kw)
    return TouchpointEvent.model_validate(raw)


def alerts_of(tier: str) -> list[Alert]:
    """A tier's customer failing three withdrawals, NPS 2 on the last: repeated_failure
    and detractor."""
    events = [ev(0, tier), ev(5, tier), ev(9, tier, feedback={"nps": 2})]
    after, moments = apply_events(None, events, M, EMIT)
    _, alerts = customer_alerts(None, after, events, moments, M, EMIT)
    return alerts


A_ALERTS = alerts_of("A")  # all critical: tier A raises severity
C_ALERTS = alerts_of("C")  # repeated_failure a warning
ALL = A_ALERTS + C_ALERTS


@pytest.fixture
def topic(kafka_broker: EmbeddedBroker, unique_topic: Callable[[str], str]) -> str:
    name = unique_topic("alerts")
    settings = load_settings(kafka_url=kafka_broker.url)
    ensure_topics(settings, [TopicSpec(name, 2, {}, "alerts under test")])
    return name


def publish(broker: EmbeddedBroker, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=[broker.bootstrap])
    try:
        for i, value in enumerate(values):
            producer.send(topic, value=value, key=f"k{i}".encode())
        producer.flush(timeout=10)
    finally:
        producer.close()


def test_decode_and_filters() -> None:
    [a] = decode_alerts(A_ALERTS[0].to_json_bytes())
    assert a == A_ALERTS[0]
    assert decode_alerts(json.dumps([x.model_dump(mode="json") for x in ALL]).encode()) == ALL
    with pytest.raises(ValueError, match="not JSON"):
        decode_alerts(b"\xff")
    with pytest.raises(ValueError, match="not an alert: alert_id: Field required"):
        decode_alerts(b'{"rule": 1}')
    crit = [x for x in ALL if matches(x, severity={"critical"})]
    assert all(x.severity == "critical" for x in crit)
    assert all(x in crit for x in A_ALERTS)  # tier A: raised a level, all critical
    assert [x for x in ALL if matches(x, tiers={"C"}, rules={"repeated_failure"})] == [
        x for x in C_ALERTS if x.rule == "repeated_failure"
    ]
    assert [x for x in ALL if matches(x, channels={"web"})] == []


def test_render_colours_by_severity() -> None:
    crit = next(x for x in A_ALERTS if x.rule == "repeated_failure")
    out = io.StringIO()
    from rich.console import Console

    Console(file=out, force_terminal=True, soft_wrap=True).print(render(crit))
    text = out.getvalue()
    assert "\x1b[1;31mCRITICAL" in text
    plain = render(crit).plain
    assert plain.startswith("2025-03-03 09:09:00Z CRITICAL repeated_failure")
    assert "customer C-A tier A score " in plain
    assert "3 failed cash withdrawals at ATM-0042 in 9 min" in plain
    assert plain.endswith("→ " + crit.recommended_action)


@pytest.mark.kafka
def test_follow_from_the_beginning_prints_json_lines_and_skips_bad_messages(
    kafka_broker: EmbeddedBroker, topic: str
) -> None:
    publish(
        kafka_broker,
        topic,
        [
            A_ALERTS[0].to_json_bytes(),
            b"this is not json",
            json.dumps([x.model_dump(mode="json") for x in A_ALERTS[1:] + C_ALERTS]).encode(),
            b'{"alert_id": "nope"}',
        ],
    )
    out, err = io.StringIO(), io.StringIO()
    n = follow_alerts(
        [kafka_broker.bootstrap],
        topic,
        as_json=True,
        from_beginning=True,
        idle_timeout=2.0,
        out=out,
        err=err,
    )
    lines = out.getvalue().splitlines()
    assert n == len(ALL) == len(lines)
    assert sorted(Alert.model_validate_json(line).model_dump_json() for line in lines) == sorted(
        x.model_dump_json() for x in ALL
    )
    warnings = err.getvalue().splitlines()
    assert len(warnings) == 2
    assert all(w.startswith(f"warning: skipped message {topic}[") for w in warnings)


@pytest.mark.kafka
def test_follow_filters_and_stops_at_max(kafka_broker: EmbeddedBroker, topic: str) -> None:
    publish(kafka_broker, topic, [x.to_json_bytes() for x in ALL])
    out = io.StringIO()
    n = follow_alerts(
        [kafka_broker.bootstrap],
        topic,
        severity={"warning"},
        tiers={"C"},
        from_beginning=True,
        idle_timeout=2.0,
        out=out,
        color=False,
    )
    wanted = [x for x in C_ALERTS if x.severity == "warning"]
    assert n == len(wanted) > 0
    assert all(" tier C " in line for line in out.getvalue().splitlines())
    assert "\x1b[" not in out.getvalue()
    assert (
        follow_alerts(
            [kafka_broker.bootstrap], topic, from_beginning=True, max_alerts=1, out=io.StringIO()
        )
        == 1
    )


@pytest.mark.kafka
def test_per_rule_keeps_one_rule_from_crowding_out_the_others(
    kafka_broker: EmbeddedBroker, topic: str
) -> None:
    publish(kafka_broker, topic, [x.to_json_bytes() for x in ALL])
    out = io.StringIO()
    n = follow_alerts(
        [kafka_broker.bootstrap],
        topic,
        as_json=True,
        from_beginning=True,
        per_rule=1,
        idle_timeout=2.0,
        out=out,
    )
    printed = [Alert.model_validate_json(line).rule for line in out.getvalue().splitlines()]
    rules = {x.rule for x in ALL}
    assert len(ALL) > len(rules) > 1  # more alerts than rules: some were held back
    assert n == len(printed) == len(rules) and set(printed) == rules


@pytest.mark.kafka
def test_live_tail_prints_only_new_alerts(kafka_broker: EmbeddedBroker, topic: str) -> None:
    old, new = C_ALERTS[0], A_ALERTS[0]
    publish(kafka_broker, topic, [old.to_json_bytes()])
    out = io.StringIO()
    result: list[int] = []
    tail = threading.Thread(
        target=lambda: result.append(
            follow_alerts(
                [kafka_broker.bootstrap],
                topic,
                as_json=True,
                max_alerts=1,
                idle_timeout=20,
                out=out,
            )
        )
    )
    tail.start()
    deadline = time.monotonic() + 20
    while tail.is_alive() and time.monotonic() < deadline:
        publish(kafka_broker, topic, [new.to_json_bytes()])
        tail.join(timeout=1.0)
    assert result == [1]
    assert Alert.model_validate_json(out.getvalue().splitlines()[0]) == new


@pytest.mark.kafka
def test_missing_topic_gives_up_after_idle_timeout(kafka_broker: EmbeddedBroker) -> None:
    start = time.monotonic()
    n = follow_alerts([kafka_broker.bootstrap], f"no-such-{uuid.uuid4().hex[:8]}", idle_timeout=1.0)
    assert n == 0 and time.monotonic() - start < 10
