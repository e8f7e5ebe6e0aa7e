# ruff: noqa: RUF001  (Chinese feedback is written with full-width punctuation, on purpose)
"""Feedback topics end to end: an event whose Chinese feedback is about a blocked card
becomes a moments row with ``card_blocked`` in ``topics``, the topic_sentiment view counts
it, and its detractor alert names the topic (real broker, worker process, ClickHouse)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cxpulse.streams.admin import read_records
from cxpulse.streams.topics import alerts as alerts_topic
from tests.integration.test_pipeline import Pipeline, pipeline, publish

__all__ = ["pipeline"]  # the fixture, shared with test_pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]


def _events() -> list[dict[str, Any]]:
    base = {
        "occurred_at": "2026-11-20T08:00:00+00:00",
        "journey_stage": "post_purchase",
        "tier": "B",
    }
    return [
        {
            **base,
            "event_id": str(uuid.UUID(int=101)),
            "customer_id": "C-ZH-1",
            "channel": "call_center",
            "touchpoint": "call.card_hotline",
            "outcome": "failure",
            "details": {"kind": "call_center", "wait_seconds": 900.0},
            "feedback": {
                "text": "我的银行卡被冻结了，打了三次电话都没解决，太糟糕了",
                "language": "zh",
            },
        },
        {  # no text: no topics, and the worker never analyses it
            **base,
            "event_id": str(uuid.UUID(int=102)),
            "customer_id": "C-ZH-2",
            "channel": "atm",
            "touchpoint": "atm.withdrawal",
            "outcome": "success",
            "details": {"kind": "atm", "response_ms": 900.0},
        },
        {
            **base,
            "event_id": str(uuid.UUID(int=103)),
            "customer_id": "C-EN-3",
            "channel": "store",
            "touchpoint": "store.counter",
            "outcome": "success",
            "details": {"kind": "store", "queue_seconds": 2400.0},
            "feedback": {"text": "The teller was lovely but the queue was awful."},
        },
    ]


def test_chinese_feedback_about_a_blocked_card_lands_in_moments_topics(
    pipeline: Pipeline,
) -> None:
    events = _events()
    worker = pipeline.start_worker()
    publish(pipeline.settings, events, batch_size=10)
    pipeline.wait_rows(worker, "moments", len(events))
    pipeline.wait_rows(worker, "alerts", 1)

    rows = dict(
        pipeline.query("SELECT customer_id, topics FROM moments FINAL ORDER BY customer_id")
    )
    assert rows == {
        "C-EN-3": ["queue", "staff_attitude"],
        "C-ZH-1": ["card_blocked"],
        "C-ZH-2": [],
    }
    [(sentiment,)] = pipeline.query(
        "SELECT sentiment FROM moments FINAL WHERE customer_id = 'C-ZH-1'"
    )
    assert sentiment < -0.5
    view = pipeline.query(
        "SELECT topic, touchpoint, channel, moments, negative_share FROM topic_sentiment "
        "ORDER BY topic"
    )
    assert view[0] == ("card_blocked", "call.card_hotline", "call_center", 1, 1.0)
    assert [r[0] for r in view] == ["card_blocked", "queue", "staff_attitude"]

    alerts = [
        r.value.decode()
        for r in read_records(pipeline.settings.bootstrap_servers, alerts_topic(pipeline.settings))
    ]
    detractor = [a for a in alerts if '"detractor"' in a and "C-ZH-1" in a]
    assert detractor, alerts
    assert "negative feedback about card blocked" in detractor[0]
    assert "冻结" not in detractor[0]  # the words stay in the tables
