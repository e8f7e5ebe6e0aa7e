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

from cxpulse.schemas.envelope import encode_batch
from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.rows import TOUCHPOINT_EVENTS
from cxpulse.schemas.score_rows import MOMENTS, SCORE_HISTORY
from cxpulse.streams.app import create_app
from cxpulse.streams.core import apply_events
from cxpulse.streams.model_check import load_model
from cxpulse.streams.pipeline import checkpoint as checkpoint_module
from cxpulse.streams.pipeline.checkpoint import Checkpointer
from cxpulse.streams.pipeline.records import decode_events, record_of
from cxpulse.streams.settings import load_settings
from cxpulse.streams.state import customer as customer_codec
from cxpulse.streams.state.table_codec import encode_values
from tests.agents.fakes import Recorder, put_on

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


RECORDER = Recorder()


def moment_docs(_: Any = None) -> list[dict[str, Any]]:
    """The ``moments`` rows the agent inserted, by column name."""
    return RECORDER.docs("moments", MOMENTS)


def score_docs(_: Any = None) -> list[dict[str, Any]]:
    """The ``customer_scores`` rows the agent inserted, by column name."""
    return RECORDER.docs("customer_scores", SCORE_HISTORY)


@pytest.fixture(autouse=True)
def fresh_recorder() -> None:
    RECORDER.rows.clear()


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


async def run_experience(messages: list[bytes], **overrides: Any) -> dict[str, Any]:
    """Put the messages, then wait until every checkpoint is committed (rows inserted,
    states in the changelog, events acknowledged): every readable event's
    touchpoint_events row is in, and then nothing more happens."""
    overrides.setdefault("sink_flush_seconds", 0.05)
    overrides.setdefault("state_store", "memory")  # no partitions here: nothing on disk
    settings = load_settings(kafka_url="kafka://127.0.0.1:1", partitions=4, **overrides)
    app = create_app(settings, connect=lambda: RECORDER)
    app.finalize()
    app.flow_control.resume()
    table = app.tables["customer_state"]
    readable = sum(len(decode_events(m)[0]) for m in messages)
    async with app.agents["experience"].test_context() as agent:
        for message in messages:
            await put_on(agent, "cx.events", message)
        # every readable event's row is inserted at the checkpoint that has it (the
        # sentiment process may take seconds to start on a busy machine) ...
        base = len(RECORDER.rows.get("touchpoint_events", ()))
        for _ in range(600):
            if len(RECORDER.rows.get("touchpoint_events", ())) - base >= readable:
                break
            await asyncio.sleep(0.1)
        # ... then what follows it (alerts sent, the last states) has settled
        seen, quiet = -1, 0
        while quiet < 15:  # 15 polls in a row (1.5 s) without a new row: settled
            await asyncio.sleep(0.1)
            now = RECORDER.count()
            quiet = quiet + 1 if now == seen else 0
            seen = now
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
    # failures pull alice below 50; bob's routine successes are as expected: 50
    assert states["C-alice"].score < 50 == states["C-bob"].score

    moments = moment_docs(sent)
    assert sorted(str(m["event_id"]) for m in moments) == sorted(
        str(e.event_id) for e in [*alice, *bob]
    )
    updates = score_docs(sent)
    assert sorted(u["customer_id"] for u in updates) == ["C-alice", "C-bob"]  # once each
    by_customer = {u["customer_id"]: u for u in updates}
    assert by_customer["C-alice"]["score"] == pytest.approx(states["C-alice"].score)


@pytest.mark.parametrize("include_text", [False, True])
def test_alerts_quote_feedback_text_only_when_the_setting_allows(
    sent: list[dict[str, Any]], include_text: bool
) -> None:
    """CXPULSE_ALERTS_INCLUDE_FEEDBACK_TEXT reaches the rules: off by default, the alert
    on cx.alerts (what the alerts table and webhooks get) carries no customer words."""
    from cxpulse.schemas.alerts import Alert

    [event] = events_for("C-carol", ["failure"])
    words = "Very disappointed, awful service, nobody helped"
    event = TouchpointEvent.model_validate(
        event.model_dump() | {"feedback": {"nps": 2, "text": words}}
    )
    asyncio.run(run_experience([encode_batch([event])], alerts_include_feedback_text=include_text))

    alerts = [Alert.from_json_bytes(s["value"]) for s in sent if s["topic"] == "cx.alerts"]
    [detractor] = [a for a in alerts if a.rule == "detractor"]
    if include_text:
        assert f'said "{words}"' in detractor.explanation, detractor.explanation
    else:
        assert detractor.explanation.startswith("NPS 2, negative feedback (sentiment -")
        for s in sent:
            if s["topic"] == "cx.alerts":
                assert b"disappointed" not in s["value"]
    moments = moment_docs(sent)
    assert [m["sentiment"] < -0.5 for m in moments] == [True]


def test_replayed_batch_changes_nothing_and_sends_nothing(sent: list[dict[str, Any]]) -> None:
    alice = events_for("C-alice", ["failure", "abandoned"])
    message = encode_batch(alice)

    once = asyncio.run(run_experience([message]))
    sent_once, rows_once = len(sent), RECORDER.count(events=False)
    assert rows_once > 0
    twice = asyncio.run(run_experience([message, message]))

    assert twice["C-alice"].score == pytest.approx(once["C-alice"].score)
    assert twice["C-alice"].version == once["C-alice"].version
    assert len(sent) - sent_once == sent_once  # the replay itself sent nothing more
    # and inserted nothing more but the events' own rows, under the same event ids
    assert RECORDER.count(events=False) - rows_once == rows_once
    ids = [str(d["event_id"]) for d in RECORDER.docs("touchpoint_events", TOUCHPOINT_EVENTS)]
    assert len(ids) == 3 * len(alice) and set(ids) == {str(e.event_id) for e in alice}


def test_a_customer_whose_scoring_raises_goes_to_the_dlq_and_the_others_are_scored(
    sent: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pure core is made to raise for one customer (a stand-in for any bug or state it
    cannot handle): that customer's events go to the DLQ with the reason and their source,
    counted; every other customer of the same envelope is scored as usual."""
    from cxpulse.schemas.envelope import decode_message
    from cxpulse.streams import metrics
    from cxpulse.streams.pipeline import score_process

    real = score_process.apply_events

    def apply(before: Any, events: list[TouchpointEvent], *args: Any) -> Any:
        if events[0].customer_id == "C-bad":
            raise ValueError("cannot score this one\nsecond line")
        return real(before, events, *args)

    monkeypatch.setattr(score_process, "apply_events", apply)
    alice = events_for("C-alice", ["failure", "success"])
    bad = events_for("C-bad", ["failure", "failure"])
    bob = events_for("C-bob", ["success"])
    envelope = [alice[0], bad[0], bob[0], bad[1], alice[1]]
    failed = metrics.REGISTRY.get_sample_value("cxpulse_scoring_failed_events_total") or 0.0

    states = asyncio.run(run_experience([encode_batch(envelope)]))

    assert sorted(states) == ["C-alice", "C-bob"]
    updates = score_docs(sent)
    assert sorted(u["customer_id"] for u in updates) == ["C-alice", "C-bob"]
    moments = moment_docs(sent)
    assert sorted(str(m["event_id"]) for m in moments) == sorted(
        str(e.event_id) for e in [*alice, *bob]
    )
    # every event has its touchpoint_events row, those set aside too, with its source
    events = RECORDER.docs("touchpoint_events", TOUCHPOINT_EVENTS)
    assert sorted(str(d["event_id"]) for d in events) == sorted(str(e.event_id) for e in envelope)
    assert {(d["source_partition"], d["source_offset"]) for d in events} == {(0, 0)}
    dlq = [s for s in sent if s["topic"] == "cx.touchpoints.dlq"]
    assert [decode_message(s["value"])[0] for s in dlq] == [[bad[0]], [bad[1]]]
    headers = [dict(s["headers"]) for s in dlq]
    assert {h["cxpulse.reason"] for h in headers} == {
        b"scoring failed: ValueError: cannot score this one"
    }
    assert {h["cxpulse.reason_kind"] for h in headers} == {b"scoring_failed"}
    assert {h["cxpulse.source.topic"] for h in headers} == {b"cx.events"}
    assert [h["cxpulse.source.index"] for h in headers] == [b"1", b"3"]  # in the envelope
    assert all(
        h["cxpulse.source.bytes"] == str(len(s["value"])).encode()
        for h, s in zip(headers, dlq, strict=True)
    )
    assert metrics.REGISTRY.get_sample_value("cxpulse_scoring_failed_events_total") == failed + 2


def test_an_event_no_longer_valid_on_the_events_topic_goes_to_the_dlq_not_nowhere(
    sent: list[dict[str, Any]],
) -> None:
    """An event validated by an older worker before the occurred_at bound (1969) cannot be
    read by this one: it is dead-lettered with the reason, the rest of the envelope scored."""
    [alice] = events_for("C-alice", ["failure"])
    old = alice.model_dump(mode="json", exclude_none=True)
    old.update(event_id=str(uuid.uuid4()), occurred_at="1969-07-20T20:17:00+00:00")
    envelope = b"[" + json.dumps(old).encode() + b"," + encode_batch([alice])[1:]

    states = asyncio.run(run_experience([envelope]))

    assert list(states) == ["C-alice"]
    [dead] = [s for s in sent if s["topic"] == "cx.touchpoints.dlq"]
    headers = dict(dead["headers"])
    assert headers["cxpulse.reason"].startswith(b"occurred_at: Input should be greater than")
    assert headers["cxpulse.source.index"] == b"0"
    assert json.loads(dead["value"])["event_id"] == old["event_id"]


def _customer_table(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[int]]:
    """The customer table of a memory-store app, and the sizes of the state codec's
    compression calls from now on."""
    compressor = customer_codec._codecs.compressor
    calls: list[int] = []

    class Counted:
        compress = compressor.compress

        def multi_compress_to_buffer(self, data: list[bytes], threads: int = 0) -> Any:
            calls.append(len(data))
            return compressor.multi_compress_to_buffer(data, threads=threads)

    settings = load_settings(kafka_url="kafka://127.0.0.1:1", partitions=4, state_store="memory")
    app = create_app(settings, connect=lambda: RECORDER)
    app.finalize()
    table = app.tables["customer_state"]
    monkeypatch.setattr(customer_codec._codecs, "compressor", Counted())
    return table, calls


def _states(*customers: str) -> list[Any]:
    model, now = load_model(), datetime.now(UTC)
    return [
        apply_events(
            None, [record_of(e) for e in events_for(c, ["failure", "success"])], model, now
        )[0]
        for c in customers
    ]


def test_the_customer_table_encodes_a_cut_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint encodes the states of a cut with ``encode_values``: for the
    customer table that is the state codec's ``pack`` then ``seal_many`` (one compression
    call for all, see cxpulse.streams.state.customer), and the bytes are those the
    table's own codec gives one state at a time, whether the states come packed or not."""
    table, calls = _customer_table(monkeypatch)
    store = table.data
    states = _states("C-one", "C-two", "C-three")
    one_by_one = [store._encode_value(s) for s in states]
    assert encode_values(store, states) == one_by_one
    assert encode_values(store, states, [customer_codec.pack(s) for s in states]) == one_by_one
    assert calls == [3, 3]
    with pytest.raises(ValueError, match="2 packed values for 3 objects"):
        encode_values(store, states, [customer_codec.pack(s) for s in states[:2]])


def test_a_state_is_packed_when_set_and_sealed_at_the_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The checkpoint packs a customer's state as the step sets it (its objects are
    fresh then), keeps the latest when the customer is set again in the same cut, and at
    the commit sends records equal to the codec's own, sealed in one call."""
    table, calls = _customer_table(monkeypatch)
    sent: list[dict[int, list[tuple[bytes, bytes]]]] = []

    async def send_records(_table: Any, records: dict[int, list[tuple[bytes, bytes]]]) -> None:
        sent.append(records)

    monkeypatch.setattr(checkpoint_module, "send_records", send_records)
    one, two, one_later = _states("C-one", "C-two", "C-one-later")
    sizes: list[list[int]] = []
    cp = Checkpointer(table, every_rows=10, every_seconds=60.0, record_sizes=sizes.append)
    cp.set(b"C-one", 1, one)
    cp.set(b"C-two", 3, two)
    assert cp.current.packed
    assert cp.current.states == {
        b"C-one": (1, customer_codec.pack(one)),
        b"C-two": (3, customer_codec.pack(two)),
    }
    cp.set(b"C-one", 1, one_later)
    assert cp.current.states[b"C-one"] == (1, customer_codec.pack(one_later))
    assert calls == []  # nothing compressed before the commit
    asyncio.run(cp.flush())
    assert calls == [2]
    key = table.data._encode_key
    assert sent == [
        {
            1: [(key(b"C-one"), customer_codec.encode(one_later))],
            3: [(key(b"C-two"), customer_codec.encode(two))],
        }
    ]
    # the records' sizes, for the state size metric: what was sent, not encoded again
    assert sizes == [[len(customer_codec.encode(one_later)), len(customer_codec.encode(two))]]
