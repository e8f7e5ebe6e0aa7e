"""The core's working forms give what the plain definitions give.

``dedup.Seen`` (the packed id set searched in place, the added ids kept aside) against
the dict it replaces (``remember``, ``kept``, ``pack_ids``), and ``trail.add_score``
against the definition in its docstring, over many random calls, in and out of order.
"""

from __future__ import annotations

import random

from cxpulse.schemas.scoring import pack_ids, unpack_ids
from cxpulse.streams.core import dedup, trail

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
            plain_floor = dedup.remember(plain, h, t, cap, plain_floor)
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


def test_a_full_set_in_steady_flow_forgets_like_the_dict() -> None:
    """Call after call of one or two events, mostly in order, a set at its cap: the oldest
    ids go off the front of the bytes, and the floor follows them."""
    r = random.Random(5)
    packed, plain, floor, plain_floor, t = b"", {}, 0, 0, 10_000
    for _ in range(2000):
        seen = dedup.Seen(packed)
        for _ in range(r.choice((1, 1, 1, 2))):
            t += r.randint(0, 30)
            at = t - r.randint(0, 400) if r.random() < 0.1 else t  # now and then out of order
            h = r.randbytes(6)
            assert h not in seen and h not in plain
            plain_floor = dedup.remember(plain, h, at, 32, plain_floor)
            floor = seen.remember(h, at, 32, floor)
            assert floor == plain_floor
        packed = seen.stored(t - 2000)
        assert packed == pack_ids(dedup.kept(plain, t - 2000))
        plain = dict(unpack_ids(packed))
    assert plain_floor > 10_000 and len(plain) == 32


def test_a_hash_found_across_entries_is_not_a_member() -> None:
    a, b = bytes.fromhex("0102030405AA"), bytes.fromhex("BBCCDDEEFF00")
    packed = pack_ids([(a, 0x06070809), (b, 5)])
    straddling = bytes.fromhex("AA06070809BB")  # a's last byte, a's time, b's first byte
    assert packed.find(straddling) > 0
    assert straddling not in dedup.Seen(packed)
    assert a in dedup.Seen(packed) and b in dedup.Seen(packed)


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
