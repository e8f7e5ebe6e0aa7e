"""The customer state's changelog codec (cxpulse.streams.state.customer): every state the core
makes on simulated traffic comes back equal and writes the same JSON; records of every
earlier version (2, 1, the JSON) still read; the record is far smaller than the JSON; the
compression dictionary is the one of the format."""

from __future__ import annotations

import hashlib
import math
import statistics
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.scoring import CustomerState, Episode, KeyMoment
from cxpulse.streams.core import apply_events
from cxpulse.streams.dev.state_dictionary import replayed_states
from cxpulse.streams.model_check import load_model
from cxpulse.streams.pipeline.records import record_of
from cxpulse.streams.state import customer as codec
from cxpulse.streams.state.customer import DICTIONARY, FORMAT, decode, encode, pack, seal_many

V2_RECORDS = Path(__file__).parents[1] / "data" / "customer-state-v2.tsv"
V3_RECORDS = Path(__file__).parents[1] / "data" / "customer-state-v3.tsv"
V4_RECORDS = Path(__file__).parents[1] / "data" / "customer-state-v4.tsv"


@pytest.fixture(scope="module")
def states() -> list[CustomerState]:
    """The states of a few hundred simulated customers after a day of their traffic (not
    the dictionary's training traffic: another seed and size)."""
    return list(replayed_states(300, 11, 4000).values())


def test_every_simulated_state_comes_back_the_same(states: list[CustomerState]) -> None:
    assert len(states) > 100
    assert any(s.key_moments and s.episodes and s.contacts for s in states)
    for state in states:
        record = encode(state)
        assert record[:2] == FORMAT
        back = decode(record)
        assert back == state
        assert repr(back) == repr(state)  # same types too (2.0 is not 2)


def test_a_state_of_the_earlier_json_changelog_reads(states: list[CustomerState]) -> None:
    for state in states[:50]:
        assert decode(state.to_bytes()) == state


def _records_read(path: Path, prefix: bytes) -> list[CustomerState]:
    """Each record of ``path`` (beside its state's JSON form of then) has ``prefix``,
    reads as its JSON form reads, and writes back in this format to the same state."""
    states = []
    for line in path.read_text().splitlines():
        record, json_form = line.split("\t")
        data = bytes.fromhex(record)
        assert data[:2] == prefix
        state = CustomerState.from_bytes(json_form.encode())
        back = decode(data)
        assert back == state
        assert repr(back) == repr(state)
        assert encode(back)[:2] == FORMAT
        assert decode(encode(back)) == state
        states.append(state)
    return states


def test_version_2_records_read() -> None:
    """Records the version 2 encoder wrote (simulated customers with episodes, candidates,
    contacts, failures, tries, alert memory and an NPS answer; one with names outside the
    vocabulary, -0.0 and ids not lowercase hex), each beside its state's JSON form."""
    assert len(_records_read(V2_RECORDS, b"\xc1\x02")) == 8


def test_version_3_records_read() -> None:
    """Records the version 3 encoder wrote (episodes' memories as dicts, under the version
    3 dictionary): simulated customers, and one with a journey, -0.0, names outside the
    vocabulary and an id not hex; each beside its state's JSON form of then. They read
    as the JSON reads, and write back as version 4."""
    states = _records_read(V3_RECORDS, b"\xc1\x03")
    assert len(states) == 8
    (odd,) = [s for s in states if s.customer_id == "C-odd"]
    # the episode's memories of names the vocabulary has are kept; the others (which no
    # core ever made) have no slot; the folded sums keep every name
    (ep,) = odd.episodes
    assert ep.factors == {"service": (-0.0, ep.start, 2.0)}
    assert math.copysign(1.0, ep.factors["service"][0]) < 0
    assert ep.channels == {"web": (0.5, ep.start + 5, 1e-9)}
    assert odd.folded.factors["ambience"] == (0.5, 1.0)


def test_version_4_records_that_kept_derived_values_read() -> None:
    """Records the version 4 encoder wrote while a state kept its candidates'
    contributions (``c``) and its sub-scores (``fs``, ``cs``), each beside the score
    update that worker made of the state: they read, the score update worked out from
    the state read is that very one, and they write back without those values."""
    import msgspec

    from cxpulse.streams.core import score_update
    from cxpulse.streams.state.customer import unseal

    model = load_model()
    kept_contributions = 0
    lines = V4_RECORDS.read_text().splitlines()
    assert len(lines) == 8
    for line in lines:
        record, then = line.split("\t")
        data = bytes.fromhex(record)
        raw = msgspec.msgpack.decode(unseal(data))
        assert "fs" in raw and "cs" in raw
        kept_contributions += any("c" in (e.get("pm") or {}) for e in raw.get("ep", []))
        state = decode(data)
        assert msgspec.json.encode(score_update(state, model)).decode() == then
        again = msgspec.msgpack.decode(unseal(encode(state)))
        assert "fs" not in again and "cs" not in again
        candidates = [e.get(k) or {} for e in again.get("ep", []) for k in ("pm", "em")]
        assert not any("c" in k for k in candidates + again.get("km", []))
    assert kept_contributions >= 4  # the case this is about


@pytest.mark.parametrize(
    ("name", "fmt", "sha256"),
    [
        (
            DICTIONARY,
            FORMAT,
            "69df1233c73c0e56bd9c34888efacba96a2f376ba9bf493746a06160bec2a4ff",
        ),
        (
            codec.DICTIONARY_V3,
            codec.FORMAT_V3,
            "01a6ed2e6a01b8c9885da0ff0c39bc2fd2ab72e160d9ea0a79a2dfa681d14c7b",
        ),
    ],
)
def test_the_dictionaries_are_those_of_their_formats(name: str, fmt: bytes, sha256: str) -> None:
    """A zstandard dictionary is part of the record format: a changed file would make
    every record of its version in a changelog unreadable. A new one needs a new version
    (version 4 has its own, trained on records with the episodes' packed memories)."""
    from importlib import resources

    raw = (resources.files("cxpulse.streams") / "data" / name).read_bytes()
    assert fmt == {DICTIONARY: b"\xc1\x04", codec.DICTIONARY_V3: b"\xc1\x03"}[name]
    assert hashlib.sha256(raw).hexdigest() == sha256


def test_states_encoded_together_are_the_records_of_each(states: list[CustomerState]) -> None:
    """A checkpoint seals its cut in one call (one compression call for all, see
    ``seal_many``): the records are byte for byte those of ``encode``, in order."""
    assert seal_many([pack(s) for s in states]) == [encode(s) for s in states]
    assert seal_many([pack(states[0])]) == [encode(states[0])]
    assert seal_many([]) == []


def test_without_the_batch_call_each_state_is_compressed_on_its_own(
    states: list[CustomerState], monkeypatch: pytest.MonkeyPatch
) -> None:
    """zstandard's CFFI backend has no ``multi_compress_to_buffer``: the same records,
    one compression each."""

    class NoBatch:
        def multi_compress_to_buffer(self, *_: object, **__: object) -> None:
            raise NotImplementedError

    monkeypatch.setattr(codec._codecs, "compressor", NoBatch())
    assert seal_many([pack(s) for s in states[:50]]) == [encode(s) for s in states[:50]]


def test_threads_encode_and_decode_at_once(states: list[CustomerState]) -> None:
    """The disk writer encodes while the agent encodes too (the size metric): each thread
    has its own compressor, so records from both are whole."""
    results: dict[int, list[bytes]] = {}

    def work(n: int) -> None:
        out = []
        for _ in range(5):
            for state in states:
                record = encode(state)
                assert decode(record) == state
                out.append(record)
        results[n] = out

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == results[1] == results[2]
    assert len(results[0]) == 5 * len(states)


def test_the_record_is_much_smaller_than_json(states: list[CustomerState]) -> None:
    json_mean = statistics.mean(len(s.to_bytes()) for s in states)
    record_mean = statistics.mean(len(encode(s)) for s in states)
    assert record_mean < 0.5 * json_mean


def test_values_outside_the_compact_forms_keep_their_own() -> None:
    """-0.0, NaN, infinity, more than 3 decimals, names outside the vocabulary (outside the
    open episodes, which hold the vocabulary's series only), ids not hex."""
    t0 = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp())
    state = CustomerState(
        customer_id="C-1",
        score=41.123456,
        confidence=-0.0,
        score_trail=[(t0, float("nan")), (t0 + 3600, 3.5)],
        episodes=[
            Episode.of(
                journey=None,
                start=t0,
                count=2,
                overall=(-1.25, t0 - 5, 1e-9),
                factors={"service": (-0.0, t0, float("inf")), "brand": (2.0, t0, 2.0)},
                channels={"web": (0.001, t0 + 60, -7.0)},
            )
        ],
        key_moments=[
            KeyMoment(
                event_id="not-a-hex-id",
                t=t0,
                touchpoint="kiosk.checkin",
                channel="kiosk",
                factor="ambience",
                impact=-12.345,
            )
        ],
        alert_memory={"low_score": 1, "x": 0.5, "y": "z"},
    )
    back = decode(encode(state))
    assert math.isnan(back.score_trail[0][1])
    assert math.copysign(1.0, back.confidence) < 0
    back.score_trail[0] = state.score_trail[0] = (t0, 0.0)
    assert back == state
    assert repr(back) == repr(state)


def test_a_version_1_record_reads() -> None:
    """Records of workers before the explanation's contributions: episodes without their
    peak and end moments, candidates without shares. They read; the core drops the old
    candidates (they cannot say what they contribute) and keeps the score."""
    import msgspec

    from cxpulse.streams.core import score_update
    from cxpulse.streams.state.customer import FORMAT_V1

    t0 = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp())
    eid = "0123456789abcdef0123456789abcdef"
    record = FORMAT_V1 + msgspec.msgpack.encode(
        (
            "C-1", 3, "B", "retail", t0, t0 + 60, 0, b"",
            [[None, t0, 2, -7000, 60, -7000, [], [3, -7000, 60, -7000]]],
            [0, 0, 0, 0, [], []],
            [bytes.fromhex(eid), t0, "app.payment", 1, 3, -63000],
            [], [], [], [], 15000, [], [], 250, 1, {},
        )
    )  # fmt: skip
    state = decode(record)
    assert state.episodes[0].peak_m is None and state.episodes[0].end_m is None
    assert state.key_moments[0].event_id == eid and state.key_moments[0].share == 0
    assert state.score == 15.0
    event = TouchpointEvent.model_validate(
        {
            "event_id": "00000000-0000-4000-8000-000000000001",
            "occurred_at": datetime.fromtimestamp(t0 + 120, UTC),
            "customer_id": "C-1",
            "channel": "app",
            "touchpoint": "app.payment",
            "journey_stage": "post_purchase",
            "outcome": "success",
        }
    )
    model = load_model()
    after, _ = apply_events(state, [record_of(event)], model, datetime.now(UTC))
    assert after.key_moments == []
    up = score_update(after, model)
    assert sum(x.contribution for x in up.explanation) + up.explanation_rest == pytest.approx(
        up.score - 50
    )
