"""Episodes and the peak-end rule.

An episode is the moments that belong together: the same ``journey_id``; or, for moments
without one, no gap longer than ``episodes.gap_minutes`` between consecutive moments
(journey and non-journey moments are never mixed, so adding a moment never splits an
episode). Its remembered valence is ``r = (peak + end) / 2``.

A journey has a gap too, ``episodes.journey_gap_hours`` (a day by default): a journey
taken up again after a longer pause is remembered as a new occasion, a new episode of the
same journey. cx-model.md is silent on this; the reason is order. Without a bound, an
event of a journey could join its episode however old, so the episode could never be
closed, and the state would either grow without end or (closing it anyway) give a
different score depending on the order events arrived in. With it, both kinds of episode
are clustered the same way, by a gap, and close once no acceptable event can reach them.

Only a peak-end memory is kept per episode, not its moments: ``peak`` (largest |value|) and
``end`` (latest by event time) are both associative and commutative combinations, so an
out-of-order moment, or a moment that bridges two sessions and merges them, gives exactly
the state in-order processing would have given. The same memory is kept per factor (of the
gaps) and per channel (of the valences) for the sub-scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cxpulse.schemas.scoring import (
    CHANNEL_BIT,
    FACTOR_BIT,
    MEMORIES,
    SLOTS_OF,
    Episode,
    KeyMoment,
    PeakEnd,
)


def combine(a: PeakEnd, b: PeakEnd) -> PeakEnd:
    """Peak-end memory of the union of two sets of moments.

    Ties are broken by value, never by arrival: equal |peak| keeps the negative one, equal
    end time keeps the lower end value.
    """
    return combine_at(a, 0, b, 0)


def combine_at(fa: Sequence[Any], i: int, fb: Sequence[Any], k: int) -> tuple[Any, Any, Any]:
    """``combine`` of the memories at ``fa[i:i + 3]`` and ``fb[k:k + 3]`` of two flat
    sequences of ``(peak, end_t, end)`` triples (an episode's ``series``, unpacked).

    ``Any``, not ``float``: ``end_t`` is an int in ``Episode.overall`` and a double in
    ``series``, and the compiled core (cxpulse/native.py) makes a float of an int annotated
    ``float``."""
    pa, pb = fa[i], fb[k]
    # The comparisons ``(|pa|, -pa) >= (|pb|, -pb)`` and ``(ta, -ea) >= (tb, -eb)``,
    # written out (NaN included, they decide alike): a merge runs them for every series
    # of the episode, and building the tuples was most of their cost.
    abs_a, abs_b = abs(pa), abs(pb)
    peak = pa if abs_a > abs_b or (abs_a == abs_b and -pa >= -pb) else pb
    ta, tb = fa[i + 1], fb[k + 1]
    if ta > tb or (ta == tb and -fa[i + 2] >= -fb[k + 2]):
        return (peak, ta, fa[i + 2])
    return (peak, tb, fb[k + 2])


def remembered(pe: PeakEnd) -> float:
    """``(peak + end) / 2``."""
    return (pe[0] + pe[2]) / 2.0


def remembered_at(flat: tuple[float, ...], j: int) -> float:
    """``remembered`` of the ``j``-th memory of an unpacked series (``MEMORIES``: peak,
    end time, end, a memory after another), without making its tuple."""
    return (flat[3 * j] + flat[3 * j + 2]) / 2.0


def single(
    journey: str | None,
    t: int,
    valence: float,
    gaps: dict[str, float],
    channel: str,
    km: KeyMoment | None = None,
) -> Episode:
    """The episode of one moment; ``km`` is the moment as an explanation candidate (None
    when its valence is 0: it moves nothing)."""
    mask, order = _slot_order(tuple(gaps))
    values = list(gaps.values())
    flat: list[float] = []
    for i in order:  # the factors' memories in slot order, whatever the touchpoint's
        g = values[i]
        flat += (g, t, g)
    flat += (valence, t, valence)  # the channels' slots follow the factors'
    return Episode(
        journey=journey,
        start=t,
        count=1,
        overall=(valence, t, valence),
        mask=mask | CHANNEL_BIT[channel],
        series=MEMORIES[len(flat) // 3].pack(*flat),
        peak_m=km,
        end_m=km,
    )


def _slot_order(names: tuple[str, ...]) -> tuple[int, tuple[int, ...]]:
    """The mask of a touchpoint's factors (a moment's gaps, in the touchpoint's order) and
    their positions in slot order: worked out once per kind of touchpoint, where each
    moment sorted its gaps (most touchpoints list their factors in another order than the
    slots)."""
    found = _SLOT_ORDERS.get(names)
    if found is None:
        bits = [FACTOR_BIT[f] for f in names]
        mask = 0
        for bit in bits:
            mask |= bit
        found = (mask, tuple(sorted(range(len(bits)), key=bits.__getitem__)))
        if len(_SLOT_ORDERS) >= _SLOT_ORDERS_KEPT:
            _SLOT_ORDERS.clear()
        _SLOT_ORDERS[names] = found
    return found


#: ``_slot_order``'s answers by the factors' names (a model's touchpoints have a few
#: dozen orders; emptied when it holds this many)
_SLOT_ORDERS: dict[tuple[str, ...], tuple[int, tuple[int, ...]]] = {}
_SLOT_ORDERS_KEPT = 1024


def merge_memories(a: Episode, b: Episode) -> tuple[int, bytes]:
    """``(mask, series)`` of the union of two episodes' per-series memories: ``combine``
    of the slots both have, the others as they are."""
    slots_a, slots_b = SLOTS_OF[a.mask], SLOTS_OF[b.mask]
    fa: tuple[float, ...] = MEMORIES[len(slots_a)].unpack(a.series)
    fb: tuple[float, ...] = MEMORIES[len(slots_b)].unpack(b.series)
    flat: list[float] = []
    if a.mask == b.mask:  # the usual case: moments of the same kind of touchpoint
        for i in range(0, len(fa), 3):
            flat += combine_at(fa, i, fb, i)
        return a.mask, MEMORIES[len(slots_a)].pack(*flat)
    i = k = 0  # walk both in slot order
    end_a, end_b = len(fa), len(fb)
    while i < end_a or k < end_b:
        sa = slots_a[i // 3] if i < end_a else 1 << 30
        sb = slots_b[k // 3] if k < end_b else 1 << 30
        if sa < sb:
            flat += fa[i : i + 3]
            i += 3
        elif sb < sa:
            flat += fb[k : k + 3]
            k += 3
        else:
            flat += combine_at(fa, i, fb, k)
            i += 3
            k += 3
    mask = a.mask | b.mask
    return mask, MEMORIES[len(flat) // 3].pack(*flat)


def _first(a: KeyMoment | None, b: KeyMoment | None) -> KeyMoment | None:
    """Of two moments of equal value, the earlier (then the smaller id): which one is named
    must not depend on the order they arrived in."""
    if a is None or b is None:
        return a if b is None else b
    return a if (a.t, a.event_id) <= (b.t, b.event_id) else b


def merge(a: Episode, b: Episode) -> Episode:
    """The union of two episodes: the same ``combine`` of their peak-end memories, and the
    moments that are the union's peak and end (by the same comparisons; a tie of equal
    values names the earlier moment)."""
    overall = combine(a.overall, b.overall)
    pa, pb = a.overall[0], b.overall[0]
    peak_from_a = overall[0] == pa
    peak_m = _first(a.peak_m, b.peak_m) if pa == pb else (a.peak_m if peak_from_a else b.peak_m)
    ta, tb = a.overall[1], b.overall[1]
    end_from_a = (overall[1], overall[2]) == (ta, a.overall[2])
    same_end = ta == tb and a.overall[2] == b.overall[2]
    end_m = _first(a.end_m, b.end_m) if same_end else (a.end_m if end_from_a else b.end_m)
    mask, series = merge_memories(a, b)
    return Episode(
        journey=a.journey,
        start=min(a.start, b.start),
        count=a.count + b.count,
        overall=overall,
        mask=mask,
        series=series,
        peak_m=peak_m,
        end_m=end_m,
    )


@dataclass(frozen=True, slots=True)
class Gaps:
    """The longest pause inside an episode, in seconds: without a journey, and within one."""

    session_s: int
    journey_s: int

    def of(self, journey: str | None) -> int:
        return self.session_s if journey is None else self.journey_s


def place(episodes: list[Episode], moment: Episode, gaps: Gaps) -> tuple[list[Episode], Episode]:
    """Add a one-moment episode to the open episodes (sorted by ``(start, journey)``, as
    every list this returns is); return the new list, sorted the same way, and the episode
    the moment ended up in (merged with every episode it joins: one it falls within the
    gap of, or two it bridges).

    It runs for every event: the join test is written out on integers (``start - gap <=
    t <= end + gap`` as ``t - gap <= end`` and ``start <= t + gap``), and a moment that
    joins nothing and starts last, the usual case of events arriving in order, is
    appended without sorting (where the sort would leave it).
    """
    t = moment.start
    journey = moment.journey
    gap_s = gaps.session_s if journey is None else gaps.journey_s
    lo, hi = t - gap_s, t + gap_s
    joins: list[Episode] | None = None
    for e in episodes:
        if e.journey == journey and e.start <= hi and e.overall[1] >= lo:
            if joins is None:
                joins = [e]
            else:
                joins.append(e)
    if joins is None:
        rest = list(episodes)
        rest.append(moment)
        if len(rest) > 1 and _order(rest[-2]) > (t, journey or ""):
            rest.sort(key=_order)
        return rest, moment
    merged = moment
    for e in joins:
        merged = merge(e, merged)
    joined = {id(j) for j in joins}
    rest = [e for e in episodes if id(e) not in joined]
    rest.append(merged)
    rest.sort(key=_order)
    return rest, merged


def episode_id(e: Episode) -> str:
    """The episode's id on its moments: ``s:<start>`` for a session, ``j:<journey>:<start>``
    for a journey's (a journey may have several episodes)."""
    if e.journey is None:
        return f"s:{e.start}"
    return f"j:{e.journey}:{e.start}"


def _order(e: Episode) -> tuple[int, str]:
    return (e.start, e.journey or "")


def is_closed(e: Episode, accepted_from: int, gaps: Gaps) -> bool:
    """True when no event at or after ``accepted_from`` (the oldest event time the state
    still accepts, see ``cxpulse.streams.core.apply``) could join ``e`` any more."""
    return e.overall[1] + gaps.of(e.journey) < accepted_from  # its end (compiled: no property)


def split_closed(
    episodes: list[Episode], accepted_from: int, gaps: Gaps
) -> tuple[list[Episode], list[Episode]]:
    """``(closed, still open)`` by ``is_closed``, each in the order of ``episodes``.

    One pass with the test written out: the core runs it per event over up to
    ``episodes.max_open`` episodes, where a call of ``is_closed`` per episode (twice, to
    filter both ways) cost more than the comparison itself.
    """
    session_s, journey_s = gaps.session_s, gaps.journey_s
    closed: list[Episode] = []
    still_open: list[Episode] = []
    for e in episodes:
        gap_s = session_s if e.journey is None else journey_s
        (closed if e.overall[1] + gap_s < accepted_from else still_open).append(e)
    return closed, still_open
