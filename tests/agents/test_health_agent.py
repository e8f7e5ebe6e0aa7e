"""The touchpoint-health agent under Faust's test_context(): table state, alerts, and an
instance whose health scoring raises.

Counts are worked out by hand from the events (an attempt is any event at the instance,
a failure is outcome ``failure``); the alert thresholds are the default model's
(docs/alerts.md): at least 10 attempts in 15 minutes, a quarter failing, three times the
5 % prior of a new instance.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxpulse.schemas.envelope import decode_message, encode_batch
from cxpulse.schemas.events import Feedback, TouchpointEvent
from cxpulse.streams.app import create_app
from cxpulse.streams.pipeline.records import encode_events, record_of
from cxpulse.streams.settings import load_settings
from tests.agents.fakes import until

#: An hour ago, on a minute: recent enough that no event is in the future (the core
#: clamps those to ``now``) and every event falls in the 15-minute window of the last.
START = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)


def events_at(instance: str, outcomes: list[str], first_minute: int = 0) -> list[TouchpointEvent]:
    """One event per minute at an ATM, each from another customer."""
    return [
        TouchpointEvent.model_validate(
            {
                "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{instance}/{first_minute + i}")),
                "occurred_at": (START + timedelta(minutes=first_minute + i)).isoformat(),
                "customer_id": f"C-{instance}-{first_minute + i}",
                "channel": "atm",
                "touchpoint": "atm.withdrawal",
                "touchpoint_instance": instance,
                "journey_stage": "post_purchase",
                "outcome": outcome,
                "details": {"kind": "atm", "response_ms": 900.0},
            }
        )
        for i, outcome in enumerate(outcomes)
    ]


def takes_handled() -> float:
    from cxpulse.streams import metrics

    count = metrics.REGISTRY.get_sample_value(
        "cxpulse_batch_seconds_count", {"agent": "touchpoint_health"}
    )
    return count or 0.0


async def run_health(messages: list[bytes], *, one_take: bool = False) -> dict[str, Any]:
    """Put the messages, each in a take of its own (the agent has handled one before the
    next is put) or, with ``one_take``, all of them before the agent takes any; returns
    the table once every take is handled."""
    settings = load_settings(kafka_url="kafka://127.0.0.1:1", partitions=4)
    app = create_app(settings, connect=lambda: None)  # type: ignore[arg-type,return-value]
    app.finalize()
    app.flow_control.resume()
    table = app.tables["touchpoint_health"]
    async with app.agents["touchpoint_health"].test_context() as agent:
        handled = takes_handled()
        for message in messages:
            await agent.put(message)
            if not one_take:
                handled += 1
                await until(lambda h=handled: takes_handled() >= h)  # type: ignore[misc]
        if one_take:
            await until(lambda: takes_handled() >= handled + 1)
            await asyncio.sleep(0.2)  # a second take would come within this
            assert takes_handled() == handled + 1, "the messages were taken more than once"
    return {k.decode(): v for k, v in table.items()}


def totals(state: Any) -> tuple[int, int]:
    """(attempts, failures) of the short-window buckets."""
    return sum(a for _, a, _ in state.fine), sum(f for _, _, f in state.fine)


def alerts_in(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(s["value"]) for s in sent if s["topic"] == "cx.alerts"]


def test_each_instance_of_a_batch_is_counted_once_and_a_degraded_one_alerts(
    sent: list[dict[str, Any]],
) -> None:
    down = events_at("ATM-0042", ["success", "success", *["failure"] * 10])
    fine = events_at("ATM-0007", ["success", "failure", "success"])
    envelope = [e for pair in zip(down, fine, strict=False) for e in pair] + down[3:]

    states = asyncio.run(run_health([encode_batch(envelope)]))

    assert sorted(states) == ["ATM-0007", "ATM-0042"]
    assert totals(states["ATM-0042"]) == (12, 10)
    assert totals(states["ATM-0007"]) == (3, 1)
    [alert] = alerts_in(sent)  # 10 of 12 failing: one alert, its repeats folded into it
    assert (alert["rule"], alert["instance"]) == ("touchpoint_degraded", "ATM-0042")


def records(events: list[TouchpointEvent]) -> bytes:
    """A batch message as the validate step sends it on cx.health: trusted records."""
    return encode_events([record_of(e) for e in events])


@pytest.mark.parametrize("wire", [records, encode_batch], ids=["records", "json"])
def test_an_instance_whose_health_scoring_raises_goes_to_the_dlq_and_the_others_count(
    sent: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, wire: Any
) -> None:
    """The pure core is made to raise for one instance (a stand-in for any bug or state it
    cannot handle): that instance's events go to the DLQ with the reason and their source,
    counted; the other instances of the same envelope are counted and alert as usual, and
    the agent goes on with the next envelope. The step reads only the records' heads: the
    dead letters are the whole events all the same (details, feedback and attributes), in
    both wire forms of the topic (records, and the JSON of earlier workers)."""
    from cxpulse.streams import metrics
    from cxpulse.streams.agents import health

    real = health.apply_health

    def apply(state: Any, events: list[TouchpointEvent], *args: Any) -> Any:
        if events[0].touchpoint_instance == "ATM-BAD":
            raise ValueError("cannot count this one\nsecond line")
        return real(state, events, *args)

    monkeypatch.setattr(health, "apply_health", apply)
    down = events_at("ATM-0042", ["success", "success", *["failure"] * 10])
    bad = [
        e.model_copy(
            update={
                "feedback": Feedback(nps=2, text="the ATM kept my card"),
                "attributes": {"branch": "Wanchai", "retries": 3},
            }
        )
        for e in events_at("ATM-BAD", ["failure", "success"])
    ]
    fine = events_at("ATM-0007", ["success"])
    envelope = [bad[0], fine[0], *down, bad[1]]  # ATM-BAD at positions 0 and 14
    later = events_at("ATM-0007", ["failure"], first_minute=5)
    failed = metrics.REGISTRY.get_sample_value("cxpulse_scoring_failed_events_total") or 0.0

    states = asyncio.run(run_health([wire(envelope), wire(later)]))

    assert sorted(states) == ["ATM-0007", "ATM-0042"]  # ATM-BAD left no trace
    assert totals(states["ATM-0042"]) == (12, 10)
    assert totals(states["ATM-0007"]) == (2, 1)  # both envelopes
    assert [a["instance"] for a in alerts_in(sent)] == ["ATM-0042"]
    dlq = [s for s in sent if s["topic"] == "cx.touchpoints.dlq"]
    assert [decode_message(s["value"])[0] for s in dlq] == [[bad[0]], [bad[1]]]
    headers = [dict(s["headers"]) for s in dlq]
    assert {h["cxpulse.reason"] for h in headers} == {
        b"health scoring failed: ValueError: cannot count this one"
    }
    assert {h["cxpulse.reason_kind"] for h in headers} == {b"scoring_failed"}
    assert {h["cxpulse.source.topic"] for h in headers} == {b"cx.health"}
    assert [h["cxpulse.source.index"] for h in headers] == [b"0", b"14"]  # in the envelope
    assert metrics.REGISTRY.get_sample_value("cxpulse_scoring_failed_events_total") == failed + 2


def test_events_beyond_the_lateness_are_counted_not_applied(sent: list[dict[str, Any]]) -> None:
    """An envelope 40 min behind what the instance has seen (allowed lateness 30 min) does
    not touch the counts, and the metric says how many events the rule could not see."""
    from cxpulse.streams import metrics

    before = metrics.REGISTRY.get_sample_value("cxpulse_health_late_events_total") or 0.0
    recent = events_at("ATM-0042", ["success"], first_minute=50)
    old = events_at("ATM-0042", ["failure", "failure", "success"], first_minute=10)

    states = asyncio.run(run_health([encode_batch(recent), encode_batch(old)]))

    assert totals(states["ATM-0042"]) == (1, 0)
    after = metrics.REGISTRY.get_sample_value("cxpulse_health_late_events_total")
    assert after == before + 3


def test_a_take_of_several_envelopes_applies_each_instance_once_in_event_time_order(
    sent: list[dict[str, Any]],
) -> None:
    """Messages taken together are one batch per instance, in event time whatever message
    an event came in: the envelope 40 min behind the other (late when it comes on its
    own, as above) is counted, and the degraded instance alerts once."""
    recent = events_at("ATM-0042", ["success"], first_minute=50)
    old = events_at("ATM-0042", ["failure", "failure", "success"], first_minute=10)
    down = events_at("ATM-0007", ["success", "success", *["failure"] * 10])

    states = asyncio.run(
        run_health(
            [encode_batch(recent), encode_batch([*old, *down[:6]]), encode_batch(down[6:])],
            one_take=True,
        )
    )

    assert totals(states["ATM-0042"]) == (4, 2)
    assert totals(states["ATM-0007"]) == (12, 10)
    assert [a["instance"] for a in alerts_in(sent)] == ["ATM-0007"]


def test_an_instance_that_raises_in_a_take_is_set_aside_with_each_message_as_its_source(
    sent: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failing instance's events of two messages of one take: each dead letter names
    the message it came in and its position in that envelope."""
    from cxpulse.streams.agents import health

    real = health.apply_health

    def apply(state: Any, events: list[TouchpointEvent], *args: Any) -> Any:
        if events[0].touchpoint_instance == "ATM-BAD":
            raise ValueError("cannot count this one")
        return real(state, events, *args)

    monkeypatch.setattr(health, "apply_health", apply)
    bad = events_at("ATM-BAD", ["failure", "success", "success"])
    fine = events_at("ATM-0007", ["success", "success"])

    states = asyncio.run(
        run_health(
            [encode_batch([fine[0], bad[0]]), encode_batch([bad[1], fine[1], bad[2]])],
            one_take=True,
        )
    )

    assert totals(states["ATM-0007"]) == (2, 0)
    assert "ATM-BAD" not in states
    dlq = [dict(s["headers"]) for s in sent if s["topic"] == "cx.touchpoints.dlq"]
    where = [(h["cxpulse.source.offset"], h["cxpulse.source.index"]) for h in dlq]
    first, second = where[0][0], where[1][0]
    assert first != second  # two messages, in the order they came
    assert where == [(first, b"1"), (second, b"0"), (second, b"2")]
