"""How the customer state record's compression dictionary was made (format 4).

``cxpulse.streams.state.customer`` compresses each record with zstandard and a dictionary
trained on sample records: its content holds what records repeat (the field keys, the
vocabulary's channel and factor names, the default model's touchpoints, the shape of an
episode), and its entropy tables are ready-made, so a record of a few hundred bytes
neither spells those out nor builds its own Huffman and FSE tables (which, for records
this small, cost more time than the matching). The dictionary is part of the record
format: the committed file (``streams/data/customer-state-v4.zdict``) is the one in
force (``-v3.zdict`` reads version 3 records), each pinned by its hash in
``tests/unit/test_state_codec.py`` and never rebuilt in place. This module says where
its bytes came from and builds a new one when a new format version wants one:
``python -m cxpulse.streams.dev.state_dictionary OUT``.

The samples, all deterministic: one state that names every channel, factor, tier, rule
and default-model touchpoint, then the states of the 200 simulated customers of 3,000
events (seed 5, the simulator's fixed start) after their traffic, each as the msgpack
map the codec compresses; trained by zstandard's ``train_dictionary`` (32 KiB, for level
2, single-threaded; the file was made with zstandard 0.25.0, whose bundled zstd a later
version need not reproduce).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import msgspec
import zstandard

from cxpulse.schemas.scoring import (
    ContactMark,
    CustomerState,
    Episode,
    FailureMark,
    Folded,
    IntentTries,
    KeyMoment,
    TryMark,
)
from cxpulse.schemas.vocabulary import CHANNELS, FACTORS, RULES, TIERS
from cxpulse.streams.state.customer import LEVEL

SIMULATED = 200  # simulated customers' records among the samples
SIZE = 32 * 1024


def vocabulary_state(touchpoints: list[str]) -> CustomerState:
    """One state naming every channel, factor, tier, rule and touchpoint."""
    t0 = 1_790_000_000
    eid = "0123456789abcdef0123456789abcdef"
    moments = [
        KeyMoment(
            event_id=eid,
            t=t0,
            touchpoint=tp,
            channel=tp.split(".")[0],
            factor=FACTORS[i % len(FACTORS)],
            impact=-31.5,
            share=-3.5,
            end_t=t0,
        )
        for i, tp in enumerate(touchpoints)
    ]
    episode = Episode.of(
        journey="J-0123456789abcdef",
        start=t0,
        count=2,
        overall=(-3.5, t0 + 60, -3.5),
        factors={f: (-3.5, t0, -3.5) for f in FACTORS},
        channels={c: (-3.5, t0, -3.5) for c in CHANNELS},
        peak_m=moments[0],
        end_m=moments[1],
    )
    memory: dict[str, int | float | str] = {name: 0 for name in (*RULES, *TIERS)}
    return CustomerState(
        customer_id="C-000001",
        version=10,
        tier=TIERS[0],
        segment="retail",
        profile_t=t0,
        watermark=t0,
        floor=t0,
        episodes=[episode],
        folded=Folded(
            ref=t0,
            count=3,
            overall=(2.5, -6.5),
            factors={f: (1.0, -3.5) for f in FACTORS},
            channels={c: (1.0, -3.5) for c in CHANNELS},
        ),
        key_moments=moments,
        failures=[FailureMark(t0, touchpoints[0], None, eid)],
        contacts=[ContactMark(t0, None, eid)],
        intents={"intent": IntentTries(t0, {c: TryMark(t0, eid) for c in CHANNELS})},
        score_trail=[(t0, 40.5)],
        score=40.5,
        confidence=0.5,
        episode_count=5,
        alert_memory=memory,
        nps=7,
        nps_t=t0,
    )


def replayed_states(customers: int, seed: int, events: int) -> dict[str, CustomerState]:
    """Every simulated customer's state (with the rules' memory) after the simulator's
    ``events`` events of ``customers`` customers, scored 200 events at a time; in the
    order the customers first appear."""
    from cxpulse.schemas.events import TouchpointEvent
    from cxpulse.streams.core import apply_events
    from cxpulse.streams.dev.simulate.engine import Simulation
    from cxpulse.streams.model_check import load_model
    from cxpulse.streams.pipeline.records import record_of
    from cxpulse.streams.rules.customer import customer_alerts

    sim = Simulation(customers, seed, events=events)
    records = [record_of(TouchpointEvent.model_validate(e)) for e in sim]
    model = load_model()
    now = max(e.occurred_at for e in records) + timedelta(seconds=1)
    states: dict[str, CustomerState] = {}
    for i in range(0, len(records), 200):
        by_customer = defaultdict(list)
        for e in records[i : i + 200]:
            by_customer[e.customer_id].append(e)
        for cid, batch in by_customer.items():
            before = states.get(cid)
            after, produced = apply_events(before, batch, model, now)
            states[cid], _ = customer_alerts(before, after, batch, produced, model, now)
    return states


def simulated_states(n: int) -> list[CustomerState]:
    """The states of the first ``n`` simulated customers after a day of traffic."""
    states = replayed_states(200, 5, 3000)
    return [states[cid] for cid in sorted(states)[:n]]


def samples(n: int = SIMULATED) -> list[bytes]:
    """The records the dictionary is trained on."""
    from cxpulse.streams.model_check import load_model

    touchpoints = sorted(load_model().touchpoints)
    states = [vocabulary_state(touchpoints), *simulated_states(n)]
    return [msgspec.msgpack.encode(s) for s in states]


def build() -> bytes:
    """The dictionary's bytes."""
    records: list[bytes | bytearray | memoryview] = list(samples())
    trained = zstandard.train_dictionary(SIZE, records, level=LEVEL, threads=0)
    data: bytes = trained.as_bytes()
    return data


if __name__ == "__main__":
    Path(sys.argv[1]).write_bytes(build())
