"""The experience agent under Faust's test_context(): table state, moments and scores.

Expected values come from the pure core applied to the same events, so this checks the
agent's wiring (grouping, table assignment, what is sent where, replays), not the
formulas (tests/unit covers those against hand-worked numbers).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.envelope import encode_batch
from schemas.events import TouchpointEvent
from streams.app import create_app
from streams.core import apply_events
from streams.model_check import load_model
from streams.settings import load_settings

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def events_for(customer: str, outcomes: list[str], tier: str = "A") -> list[TouchpointEvent]:
    return [
        TouchpointEvent.model_validate(
            {
                "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{customer}/{i}")),
                "occurred_at": (START + timedelta(minutes=5 * i)).isoformat(),
                "customer_id": customer,
                "channel": "atm",
                "touchpoint": "atm.withdrawal",
                "touchpoint_instance": "ATM-0042",
                "journey_stage": "post_purchase",
                "outcome": outcome,
                "details": {"kind": "atm", "response_ms": 900.0},
                "tier": tier,
                "segment": "retail_banking",
            }
        )
        for i, outcome in enumerate(outcomes)
    ]


async def run_experience(messages: list[bytes]) -> dict[str, Any]:
    settings = load_settings(kafka_url="kafka://127.0.0.1:1", partitions=4)
    app = create_app(settings, connect=lambda: None)  # type: ignore[arg-type,return-value]
    app.finalize()
    app.flow_control.resume()
    table = app.tables["customer_state"]
    async with app.agents["experience"].test_context() as agent:
        for message in messages:
            await agent.put(message)
    return {k.decode(): v for k, v in table.items()}


def test_batch_updates_each_customer_once_with_the_core_result(
    sent: list[dict[str, Any]],
) -> None:
    alice = events_for("C-alice", ["failure", "failure", "success"], tier="A")
    bob = events_for("C-bob", ["success", "success"], tier="C")
    message = encode_batch([alice[0], bob[0], alice[1], bob[1], alice[2]])

    states = asyncio.run(run_experience([message]))

    model = load_model()
    for customer, evs in (("C-alice", alice), ("C-bob", bob)):
        expected, _ = apply_events(None, evs, model, datetime.now(UTC))
        assert states[customer].score == pytest.approx(expected.score)
        assert states[customer].episode_count == expected.episode_count
    assert states["C-alice"].score < 50 < states["C-bob"].score

    moments = [m for s in sent if s["topic"] == "cx.moments" for m in json.loads(s["value"])]
    assert sorted(m["event_id"] for m in moments) == sorted(str(e.event_id) for e in [*alice, *bob])
    updates = [u for s in sent if s["topic"] == "cx.scores" for u in json.loads(s["value"])]
    assert sorted(u["customer_id"] for u in updates) == ["C-alice", "C-bob"]  # once each
    by_customer = {u["customer_id"]: u for u in updates}
    assert by_customer["C-alice"]["score"] == pytest.approx(states["C-alice"].score)


def test_replayed_batch_changes_nothing_and_sends_nothing(sent: list[dict[str, Any]]) -> None:
    alice = events_for("C-alice", ["failure", "abandoned"])
    message = encode_batch(alice)

    once = asyncio.run(run_experience([message]))
    sent_once = len(sent)
    twice = asyncio.run(run_experience([message, message]))

    assert twice["C-alice"].score == pytest.approx(once["C-alice"].score)
    assert twice["C-alice"].version == once["C-alice"].version
    assert len(sent) - sent_once == sent_once  # the replay itself sent nothing more
