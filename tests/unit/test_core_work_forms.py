"""The core's working forms give what the plain definitions give.

``dedup.Seen`` (the packed id set searched in place, the added ids kept aside) against
the dict it replaces (``tests.plain_ids``, ``kept``, ``pack_ids``), ``trail.add_score``
against the definition in its docstring, and an episode's packed memories (``mask`` and
``series``: one memory per vocabulary slot) against the dicts of tuples they replace
(one episode, merges, folding and the sub-scores, to the last bit), over many random
calls, in and out of order; a touchpoint's reading plan against the model's spec it is
made from.
"""

from __future__ import annotations

import math
import random

from cxpulse.schemas.scoring import (
    SERIES,
    Episode,
    Folded,
    PeakEnd,
    memories_of,
    pack_ids,
    unpack_ids,
)
from cxpulse.schemas.vocabulary import CHANNELS, FACTORS
from cxpulse.streams.core import dedup, episodes, score, trail
from cxpulse.streams.core.apply import PLANS_KEPT, _Params
from cxpulse.streams.model_check import load_model
from tests import plain_ids

HOUR = 3600


def _state_ids(r: random.Random, n: int, lo: int, hi: int) -> list[tuple[bytes, int]]:
    ids = {r.randbytes(6): r.randint(lo, hi) for _ in range(n)}
    return sorted(ids.items(), key=lambda e: (e[1], e[0]))


def test_the_packed_id_set_answers_and_stores_like_the_dict() -> None:
    r = random.Random(18)
    evictions = late_ids = aged_out = 0
    for _ in range(3000):
        cap = r.randint(8, 16)
        stored = _state_ids(r, r.randint(0, cap), 1000, 1100)
        seen, plain = dedup.Seen(pack_ids(stored)), dict(stored)
        floor = plain_floor = 0
        for _ in range(r.randint(1, 6)):
            redelivery = stored and r.random() < 0.25
            h = r.choice(stored)[0] if redelivery else r.randbytes(6)
            t = r.randint(990, 1200)  # in order, and out of order among the state's ids
            assert (h in seen) == (h in plain)
            if h in plain:
                continue
            late_ids += t < stored[-1][1] if stored else 0
            plain_floor = plain_ids.remember(plain, h, t, cap, plain_floor)
            floor = seen.remember(h, t, cap, floor)
            assert floor == plain_floor
        evictions += plain_floor > 0
        horizon = r.randint(990, 1150)
        aged_out += any(t < horizon for t in plain.values())
        packed = seen.stored(horizon)
        assert packed == pack_ids(dedup.kept(plain, horizon))
        assert unpack_ids(packed) == dedup.kept(plain, horizon)
    # every path was taken: evictions, ids older than the state's, ids aging out
    assert evictions > 100 and late_ids > 100 and aged_out > 100


def _calls_against_the_definition(
    r: random.Random,
    *,
    calls: int,
    events: tuple[int, ...],
    cap: int,
    keep_s: int,
    late: tuple[float, int],
    known: float = 0.0,
    step_s: int = 30,
) -> tuple[dict[bytes, int], int, int]:
    """Call after call on one set, as a customer's or an instance's are made: each call
    of ``r.choice(events)`` events (told to ``Seen``), now and then one ``late[1]`` s
    older (share ``late[0]``), now and then one already known (share ``known``); every
    answer, floor and stored set compared with the plain definition. Returns the set as
    stored last, the floor, and how many calls indexed their set."""
    packed, plain, floor, plain_floor, t, indexed = b"", {}, 0, 0, 10_000, 0
    for _ in range(calls):
        n = r.choice(events)
        seen = dedup.Seen(packed, n)
        indexed += seen.index is not None
        for _ in range(n):
            t += r.randint(0, step_s)
            at = t - r.randint(0, late[1]) if r.random() < late[0] else t
            h = r.choice(list(plain)) if plain and r.random() < known else r.randbytes(6)
            assert (h in seen) == (h in plain)
            if h in plain:
                continue
            plain_floor = plain_ids.remember(plain, h, at, cap, plain_floor)
            floor = seen.remember(h, at, cap, floor)
            assert floor == plain_floor
        packed = seen.stored(t - keep_s)
        assert packed == pack_ids(dedup.kept(plain, t - keep_s))
        plain = dict(unpack_ids(packed))
    return plain, plain_floor, indexed


def test_a_full_set_in_steady_flow_forgets_like_the_dict() -> None:
    """Call after call of one or two events, mostly in order, a set at its cap: the oldest
    ids go off the front of the bytes, and the floor follows them."""
    plain, floor, indexed = _calls_against_the_definition(
        random.Random(5), calls=2000, events=(1, 1, 1, 2), cap=32, keep_s=2000, late=(0.1, 400)
    )
    assert floor > 10_000 and len(plain) == 32 and indexed == 0


def test_a_call_adding_many_ids_indexes_the_set_and_keeps_the_same_ids() -> None:
    """Calls of up to three times ``INDEX_AFTER`` events on a set at its cap, mostly in
    order, some older than every id kept, some already known: the set, indexed for the
    larger calls, answers, evicts and stores as the dict does."""
    plain, floor, indexed = _calls_against_the_definition(
        random.Random(11),
        calls=300,
        events=tuple(range(1, 3 * dedup.INDEX_AFTER + 1)),
        cap=128,
        keep_s=4000,
        late=(0.15, 3000),
        known=0.05,
        step_s=20,
    )
    assert 50 < indexed < 300 and len(plain) == 128 and floor > 10_000


def test_a_hash_found_across_entries_is_not_a_member() -> None:
    a, b = bytes.fromhex("0102030405AA"), bytes.fromhex("BBCCDDEEFF00")
    packed = pack_ids([(a, 0x06070809), (b, 5)])
    straddling = bytes.fromhex("AA06070809BB")  # a's last byte, a's time, b's first byte
    assert packed.find(straddling) > 0
    assert straddling not in dedup.Seen(packed)
    assert a in dedup.Seen(packed) and b in dedup.Seen(packed)


def test_ids_out_of_order_are_spliced_in_their_places_ties_by_hash() -> None:
    """A call whose ids sort among the stored ones (an instance's events from many
    customers) is stored as the plain definition sorts it: by event time, then hash, the
    ties included, at the front, in the middle and at the end of the set."""
    r = random.Random(38)
    spliced = 0
    for _ in range(2000):
        times = [r.randint(100, 110) for _ in range(r.randint(1, 40))]
        stored = sorted({r.randbytes(6): t for t in times}.items(), key=lambda e: (e[1], e[0]))
        seen, plain = dedup.Seen(pack_ids(stored)), dict(stored)
        for _ in range(r.randint(1, 12)):
            h, t = r.randbytes(6), r.randint(99, 111)  # often a stored time: a tie
            if h in plain:
                continue
            plain[h] = t
            seen.remember(h, t, 64, 0)
        spliced += min(t for t in plain.values()) < stored[-1][1]
        assert seen.stored(0) == pack_ids(dedup.kept(plain, 0))
    assert spliced > 1000


def _add_score_by_definition(
    highs: list[tuple[int, float]], t: int, score: float
) -> list[tuple[int, float]]:
    """add_score's docstring, written plainly: keep the last 24 hours' highs, one per hour
    (the higher score, the later time on a tie), sorted."""
    bucket = t - t % HOUR
    out = [(b, s) for b, s in highs if b - b % HOUR > bucket - trail.SCORE_TRAIL_S]
    for i, (b, s) in enumerate(out):
        if b - b % HOUR == bucket:
            if score > s or (score == s and t > b):
                out[i] = (t, score)
            return out
    return sorted([*out, (t, score)])


def test_add_score_keeps_the_hourly_highs_in_and_out_of_order() -> None:
    r = random.Random(7)
    earlier_hours = 0
    for _ in range(500):
        highs: list[tuple[int, float]] = []
        t0 = r.randint(0, 10**6)
        for _ in range(r.randint(1, 60)):
            t = t0 + r.randint(-3 * HOUR, 30 * HOUR)
            score = float(r.choice((40, 50, 55, 60, r.randint(0, 100))))
            prev, snapshot = highs, list(highs)
            expected = _add_score_by_definition(highs, t, score)
            earlier_hours += bool(highs) and t - t % HOUR < highs[-1][0] - highs[-1][0] % HOUR
            highs = trail.add_score(prev, t, score)
            assert highs == expected
            assert prev == snapshot  # the state's list is left as it is
            t0 = max(t0, t - HOUR)
    assert earlier_hours > 1000  # moments out of order, into an earlier hour


# -- an episode's memories: packed per slot, against dicts of tuples ---------------------


def _value(r: random.Random) -> float:
    """Gaps and valences as the core makes them (3 decimals), ties, 0, -0.0, and now and
    then a value no rounding makes."""
    roll = r.random()
    if roll < 0.05:
        return -0.0
    if roll < 0.1:
        return r.choice([-2.0, 2.0, 0.0])  # equal |peak|: the negative one is kept
    if roll < 0.13:
        return r.uniform(-10, 10)
    return round(r.uniform(-10, 10), 3)


def _memories(r: random.Random, names: tuple[str, ...], k: int) -> dict[str, PeakEnd]:
    t = r.randint(1000, 1010)  # few times: equal end times are common
    return {n: (_value(r), t + r.randint(0, 3), _value(r)) for n in r.sample(names, k)}


def _plain_combine_maps(a: dict[str, PeakEnd], b: dict[str, PeakEnd]) -> dict[str, PeakEnd]:
    """The merge of two dicts of memories, as episodes merged them before ``series``."""
    out = dict(a)
    for k, pe in b.items():
        cur = out.get(k)
        out[k] = pe if cur is None else episodes.combine(cur, pe)
    return out


def _episode(r: random.Random) -> tuple[Episode, dict[str, PeakEnd], dict[str, PeakEnd]]:
    factors = _memories(r, FACTORS, r.randint(0, len(FACTORS)))
    channels = _memories(r, CHANNELS, r.randint(1, 2))
    t = r.randint(1000, 1010)
    ep = Episode.of(start=t, count=1, overall=(1.0, t, 1.0), factors=factors, channels=channels)
    return ep, factors, channels


def _same(a: dict[str, PeakEnd], b: dict[str, PeakEnd]) -> bool:
    """Equal to the bit: the same names, and each number the same float (-0.0 is not 0.0)."""
    return a.keys() == b.keys() and all(
        repr(tuple(map(float, a[k]))) == repr(tuple(map(float, b[k]))) for k in a
    )


def test_one_moment_gives_the_memories_of_its_factors_and_channel_in_any_order() -> None:
    r = random.Random(23)
    for _ in range(2000):
        names = r.sample(FACTORS, r.randint(0, len(FACTORS)))  # a touchpoint's own order
        gaps = {f: _value(r) for f in names}
        channel, t, v = r.choice(CHANNELS), r.randint(1000, 2000), _value(r)
        ep = episodes.single(None, t, v, gaps, channel)
        assert _same(ep.factors, {f: (g, t, g) for f, g in gaps.items()})
        assert _same(ep.channels, {channel: (v, t, v)})
        assert [SERIES[i] for i, _ in ep.memories()] == [
            n for n in SERIES if n in gaps or n == channel
        ]


def test_merged_memories_are_the_merged_dicts() -> None:
    r = random.Random(24)
    same_mask = 0
    for _ in range(5000):
        a, fa, ca = _episode(r)
        b, fb, cb = _episode(r) if r.random() < 0.7 else (a, fa, ca)
        same_mask += a.mask == b.mask
        merged = episodes.merge(a, b)
        assert _same(merged.factors, _plain_combine_maps(fa, fb))
        assert _same(merged.channels, _plain_combine_maps(ca, cb))
        assert merged.mask == a.mask | b.mask
    assert same_mask > 1000  # the usual case has its own path


def _plain_sub_scores(
    folded: Folded,
    eps: list[Episode],
    as_of: int,
    half_life_s: float,
    weights: list[float],
    extra: dict[str, tuple[float, float]],
) -> tuple[dict[str, float], dict[str, float]]:
    """The sub-scores as they were computed on dicts of tuples, before ``series``."""
    fac: dict[str, list[float]] = {}
    chan: dict[str, list[float]] = {}
    if folded.count:
        k = score.weight(folded.ref, as_of, half_life_s)
        for f, d in folded.factors.items():
            fac[f] = [d[0] * k, d[1] * k]
        for c, d in folded.channels.items():
            chan[c] = [d[0] * k, d[1] * k]

    def add(acc: dict[str, list[float]], key: str, w: float, value: float) -> None:
        cur = acc.get(key)
        if cur is None:
            acc[key] = [w, w * value]
        else:
            cur[0] += w
            cur[1] += w * value

    for ep, w in zip(eps, weights, strict=True):
        for acc, series in ((fac, ep.factors), (chan, ep.channels)):
            for key, pe in series.items():
                add(acc, key, w, (pe[0] + pe[2]) / 2.0)
    for key, (w, value) in extra.items():
        add(fac, key, w, value)
    return (
        {k: score.to_score(s / w) for k, (w, s) in fac.items() if w > 0},
        {k: score.to_score(s / w) for k, (w, s) in chan.items() if w > 0},
    )


def test_sub_scores_and_folding_are_those_of_the_dicts() -> None:
    r = random.Random(25)
    half_life_s = 30 * 86400.0
    for _ in range(3000):
        eps = [_episode(r)[0] for _ in range(r.randint(0, 16))]
        as_of = 1020 + r.randint(0, 10**6)
        weights = score.episode_weights(eps, as_of, half_life_s)
        folded = Folded()
        if r.random() < 0.6:  # the folded sums of earlier episodes, an old name now and then
            closed = [_episode(r)[0] for _ in range(r.randint(1, 4))]
            folded = score.fold(Folded(), closed, half_life_s)
            if r.random() < 0.2:
                folded = Folded(
                    ref=folded.ref,
                    count=folded.count,
                    overall=folded.overall,
                    factors={**folded.factors, "ambience": (0.5, -1.0)},
                    channels=folded.channels,
                )
        extra = {"relationship": (r.uniform(0, 2), _value(r))} if r.random() < 0.3 else {}
        got = score.sub_scores(folded, eps, as_of, half_life_s, weights, extra)
        want = _plain_sub_scores(folded, eps, as_of, half_life_s, weights, extra)
        assert got == want  # every float equal (NaN never arises: values are finite)
        assert not any(math.isnan(v) for v in (*got[0].values(), *got[1].values()))


def test_folding_adds_each_series_as_the_dicts_did() -> None:
    r = random.Random(26)
    half_life_s = 30 * 86400.0
    for _ in range(2000):
        closed = [_episode(r) for _ in range(r.randint(1, 5))]
        folded = score.fold(Folded(), [e for e, _, _ in closed], half_life_s)
        ref = max(e.end for e, _, _ in closed)
        for names, got, pick in (
            (FACTORS, folded.factors, 1),
            (CHANNELS, folded.channels, 2),
        ):
            want: dict[str, list[float]] = {}
            for parts in closed:
                w = score.weight(parts[0].end, ref, half_life_s)
                for key, pe in parts[pick].items():
                    cur = want.setdefault(key, [0.0, 0.0])
                    cur[0] += w
                    cur[1] += w * episodes.remembered(pe)
            assert set(got) == set(want) <= set(names)
            for key, (w, s) in want.items():
                assert got[key] == (round(w, 9), round(s, 9))


def test_names_outside_the_vocabulary_have_no_slot() -> None:
    mask, series = memories_of({"ambience": (1.0, 5, 1.0)}, {"kiosk": (2.0, 5, 2.0)})
    assert (mask, series) == (0, b"")


def test_a_reading_plan_is_the_spec_the_model_gives_for_the_touchpoint() -> None:
    """Exact names, dotted prefixes (``atm.withdrawal.cardless``) and the channel's
    defaults: the plan's factors, effort metrics (with ``k`` and the factors resolved)
    and fallback flag are those of ``ExperienceModel.touchpoint_spec``."""
    model = load_model()
    params = _Params.of(model)
    names = [(name, spec.channel) for name, spec in model.touchpoints.items()]
    names += [(f"{name}.more.dots", channel) for name, channel in names]
    names += [("web.never.configured", "web"), ("nothing", "atm"), ("store", "store")]
    for name, channel in names:
        spec, fallback = model.touchpoint_spec(name, channel)
        plan = params.plan(name, channel)
        assert plan is params.plan(name, channel)  # made once
        assert (plan.factors, plan.fallback) == (tuple(spec.factors), fallback)
        assert [(e.metric, e.expected, e.k, e.factors) for e in plan.efforts] == [
            (
                e.metric,
                e.expected,
                e.k or model.readings.effort_k,
                tuple(e.factors or spec.factors),
            )
            for e in spec.effort
        ]


def test_reading_plans_kept_stay_bounded_whatever_touchpoint_names_come_in() -> None:
    """Touchpoint names come from the input: a flood of new ones keeps at most
    ``PLANS_KEPT`` plans a channel, and a plan made again is the same plan."""
    params = _Params.of(load_model())
    first = params.plan("web.flood.0", "web")
    for i in range(3 * PLANS_KEPT):
        params.plan(f"web.flood.{i}", "web")
        assert len(params.plans["web"]) <= PLANS_KEPT
    again = params.plan("web.flood.0", "web")
    assert (again.factors, again.fallback) == (first.factors, first.fallback)
