# ruff: noqa: RUF001  (Chinese feedback is written with full-width commas, on purpose)
"""Sentiment of feedback text: English (VADER) and Chinese (jieba + lexicon) complaints read
negative and praise positive; language is taken from the event or detected; cached."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cxpulse.schemas.events import TouchpointEvent
from cxpulse.streams import metrics
from cxpulse.streams.model_check import load_model
from cxpulse.streams.sentiment import (
    NAME,
    DefaultSentimentAnalyzer,
    SentimentProcess,
    detect_language,
    sentiments_for,
)


@pytest.fixture(scope="module")
def analyzer() -> DefaultSentimentAnalyzer:
    return DefaultSentimentAnalyzer(cache_size=4)


@pytest.mark.parametrize(
    ("text", "language", "sign"),
    [
        ("I waited 40 minutes and nobody helped me. Terrible service.", "en", -1),
        ("The ATM ate my card, awful experience", None, -1),
        ("Great app, the payment was quick and easy!", "en", 1),
        ("Very friendly staff, thank you", None, 1),
        ("等了四十分钟，没有人帮我，服务太差了", "zh", -1),
        ("ATM吞卡了，太糟糕", None, -1),  # mixed text: detected as Chinese
        ("服务很好，办理很快，非常满意", "zh-CN", 1),
        ("态度很好", None, 1),
    ],
)
def test_complaints_negative_praise_positive(
    analyzer: DefaultSentimentAnalyzer, text: str, language: str | None, sign: int
) -> None:
    s = analyzer.score(text, language)
    assert s is not None and -1 <= s <= 1
    assert s * sign > 0.1


def test_language_detection() -> None:
    assert detect_language("hello") == "en"
    assert detect_language("你好 ATM") == "zh"


def test_unsupported_or_empty_gives_no_reading(analyzer: DefaultSentimentAnalyzer) -> None:
    assert analyzer.score("   ", "en") is None
    assert analyzer.score("Service épouvantable", "fr") is None


def test_cache_is_bounded_lru() -> None:
    a = DefaultSentimentAnalyzer(cache_size=2)
    a.score_many([("good", "en"), ("bad", "en"), ("good", "en")])
    assert (a.hits, a.misses) == (1, 2)
    a.score("fine", "en")  # evicts "bad", the least recently used
    a.score("bad", "en")
    assert a.misses == 4


def test_sentiments_for_a_batch(analyzer: DefaultSentimentAnalyzer) -> None:
    def event(text: str | None) -> TouchpointEvent:
        return TouchpointEvent.model_validate(
            {
                "event_id": uuid.uuid4(),
                "occurred_at": datetime(2024, 5, 1, tzinfo=UTC),
                "customer_id": "c1",
                "channel": "app",
                "touchpoint": "app.payment",
                "journey_stage": "purchase",
                "outcome": "success",
                "feedback": {"text": text} if text else {"csat": 4},
            }
        )

    evs = [event("terrible, it crashed"), event(None), event("太棒了")]
    out = sentiments_for(evs, analyzer)
    assert set(out) == {evs[0].event_id, evs[2].event_id}
    assert out[evs[0].event_id] < 0 < out[evs[2].event_id]  # type: ignore[operator]


def _restarts(process: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "cxpulse_child_process_restarts_total", {"process": process}
    )
    return value or 0.0


def test_the_sentiment_process_reads_as_in_process_and_outlives_a_child_that_died() -> None:
    """The worker's sentiment child reads texts as the analyzer does in process; when it
    dies (an OOM kill, say), the next call starts another and is read there: no take
    fails for it."""
    topics = {name: t.model_dump() for name, t in load_model().feedback.topics.items()}
    items = [
        ("great service, the app was fast", "en"),
        ("服务很好", "zh"),
        ("the card was blocked and nobody called back", None),
    ]
    want = DefaultSentimentAnalyzer(topics=topics).analyze_many(items)
    process = SentimentProcess(topics)
    try:
        assert process.warm_up().result(timeout=120) > 0
        assert asyncio.run(process.analyze_many(items)) == want
        (first,) = process.pids()
        assert Path(f"/proc/{first}/comm").read_text().strip() == NAME
        restarts = _restarts("sentiment process")
        os.kill(first, signal.SIGKILL)
        assert asyncio.run(process.analyze_many(items)) == want  # in a new child
        assert _restarts("sentiment process") == restarts + 1
        (second,) = process.pids()
        assert second != first
        assert asyncio.run(process.analyze_many(items[:1])) == want[:1]
        assert process.pids() == [second]
    finally:
        process.close()
