"""The experience score: ``score = 50 + 5 m``, ``m`` the time-decayed mean of remembered
episode valences (cx-model.md), with per-factor and per-channel sub-scores the same way.

An episode weighs ``2 ** -((as_of - end) / half_life)``, ``end`` its last moment's event
time and ``as_of`` the newest event time seen: event time, never wall-clock, so a replay
gives the same numbers. Because ``m`` is a weighted *mean*, the score does not drift back
to 50 by itself while a customer is silent: it is what the customer remembers, and recent
episodes dominate it as they arrive. How much to trust it is ``confidence``.

Closed episodes are folded into decayed sums (``Folded``) so the state stays bounded.
"""

from __future__ import annotations

from typing import NamedTuple

from cxpulse.schemas.scoring import (
    CHANNEL_SLOT,
    FACTOR_SLOT,
    FACTOR_SLOTS,
    MEMORIES,
    SERIES,
    SLOTS_OF,
    Episode,
    Folded,
)
from cxpulse.streams.core.decimals import rounded
from cxpulse.streams.core.episodes import remembered, remembered_at


def weight(t: int, ref: int, half_life_s: float) -> float:
    """Decay weight of something at event time ``t`` seen from ``ref``: halves per half-life."""
    return float(2.0 ** ((t - ref) / half_life_s))


def episode_weights(episodes: list[Episode], as_of: int, half_life_s: float) -> list[float]:
    """Each episode's decay weight as of ``as_of``: ``weight(end, as_of, half_life_s)``,
    worked out once per event for the score, and once per score update for the
    sub-scores and the explanation alike."""
    return [2.0 ** ((ep.overall[1] - as_of) / half_life_s) for ep in episodes]


def check_weights(episodes: list[Episode], weights: list[float]) -> None:
    """What ``zip(episodes, weights, strict=True)`` checks, once: the loops over the
    episodes then zip them plainly. Compiled, a strict ``zip`` is iterated as a generic
    iterator (a tuple an item) where a plain one is an indexed loop: ~3.5 times the cost
    for a late-day customer's dozen episodes, at every event (docs/benchmarks.md,
    session 42)."""
    if len(weights) != len(episodes):
        raise ValueError(f"{len(weights)} weights for {len(episodes)} episodes")


def _add(acc: dict[str, list[float]], key: str, w: float, value: float) -> None:
    cur = acc.get(key)
    if cur is None:
        acc[key] = [w, w * value]
    else:
        cur[0] += w
        cur[1] += w * value


def fold(folded: Folded, closed: list[Episode], half_life_s: float) -> Folded:
    """Fold closed episodes into the decayed sums, moving their reference forward to the
    newest end (one rescale for the lot: folding runs on the hot path).

    Sums are rounded to 9 decimals: the newest folded episode weighs 1, so this keeps ~9
    significant digits of anything folded in the last year and keeps the record short.
    """
    if not closed:
        return folded
    ref = max(ep.overall[1] for ep in closed)  # the newest end
    k = 0.0
    if folded.count:
        ref = max(ref, folded.ref)
        k = weight(folded.ref, ref, half_life_s)
    w_sum, s_sum = folded.overall[0] * k, folded.overall[1] * k
    fac = {f: [d[0] * k, d[1] * k] for f, d in folded.factors.items()}
    chan = {c: [d[0] * k, d[1] * k] for c, d in folded.channels.items()}
    for ep in closed:
        w = weight(ep.overall[1], ref, half_life_s)
        w_sum += w
        s_sum += w * remembered(ep.overall)
        # its memories unpacked here, not by Episode.memories (the schema's, run as Python)
        slots = SLOTS_OF[ep.mask]
        flat: tuple[float, ...] = MEMORIES[len(slots)].unpack(ep.series)
        for j, slot in enumerate(slots):
            _add(fac if slot < FACTOR_SLOTS else chan, SERIES[slot], w, remembered_at(flat, j))
    return Folded(
        ref=ref,
        count=folded.count + len(closed),
        overall=(rounded(w_sum, 9), rounded(s_sum, 9)),
        factors={f: (rounded(a[0], 9), rounded(a[1], 9)) for f, a in fac.items()},
        channels={c: (rounded(a[0], 9), rounded(a[1], 9)) for c, a in chan.items()},
    )


def to_score(m: float) -> float:
    s = 50.0 + 5.0 * m
    return rounded(0.0 if s < 0 else 100.0 if s > 100 else s, 2)


class Scores(NamedTuple):
    """What ``compute`` gives per event (a NamedTuple: made per event, and a frozen
    dataclass sets its fields through ``object.__setattr__``, five times slower)."""

    score: float
    confidence: float
    episodes: int


def compute(
    folded: Folded,
    episodes: list[Episode],
    as_of: int,
    half_life_s: float,
    confidence_half_at: float,
    weights: list[float],
) -> Scores:
    """Score and confidence as of event time ``as_of`` (per event: kept to the overall
    series; the sub-scores are worked out when a score update asks, by ``sub_scores``);
    ``weights`` are the episodes' decay weights as of ``as_of`` (``episode_weights``).

    confidence = n / (n + half_at) where n is the decay-weighted number of episodes
    (a fortnight-old episode is half an episode of evidence), with the score's own
    weights: it says how much evidence the score as of ``as_of`` rests on. More episodes
    at a time raise it and ageing evidence lowers it, so an episode after a long silence
    may lower it too: the score then rests mostly on that one (cx-model.md asks for a
    confidence that grows with the episodes and is silent on the curve; this one is 0.5
    at ``half_at`` recent episodes and never reaches 1).
    """
    acc_w = acc_s = 0.0
    if folded.count:
        k = weight(folded.ref, as_of, half_life_s)
        acc_w, acc_s = folded.overall[0] * k, folded.overall[1] * k
    check_weights(episodes, weights)
    for ep, w in zip(episodes, weights):  # noqa: B905 (checked: check_weights)
        pe = ep.overall
        acc_w += w
        acc_s += w * (pe[0] + pe[2]) / 2.0
    return Scores(
        score=to_score(acc_s / acc_w) if acc_w > 0 else 50.0,
        confidence=rounded(acc_w / (acc_w + confidence_half_at), 3) if acc_w > 0 else 0.0,
        episodes=folded.count + len(episodes),
    )


def sub_scores(
    folded: Folded,
    episodes: list[Episode],
    as_of: int,
    half_life_s: float,
    weights: list[float],
    extra: dict[str, tuple[float, float]] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-factor and per-channel scores, the same decayed peak-end mean as the score;
    ``extra`` adds ``(weight, gap)`` to a factor's mean (the last NPS answer's gap on the
    relationship factor, weighing as ``score.nps_weight`` episodes of its age).

    Runs once per score update over every open episode's series: the sums are kept in
    two lists indexed by ``SERIES`` slot, each episode's memories unpacked in one call,
    and every number is the same expression, in the same order, as ``weight``, ``_add``
    and ``remembered`` would give (each slot's sums start from the folded episodes' and
    add the open episodes' terms one after the other). ``weights`` are
    the episodes' decay weights as of ``as_of`` (``episode_weights``, shared with the
    explanation). Dicts come out in the vocabulary's order; a name outside it (only
    folded sums of old states can hold one) after.
    """
    n = len(SERIES)
    sum_w = [0.0] * n
    sum_s = [0.0] * n
    other_fac: dict[str, list[float]] = {}
    other_chan: dict[str, list[float]] = {}
    if folded.count:
        k = weight(folded.ref, as_of, half_life_s)
        for names, slot_of, others in (
            (folded.factors, FACTOR_SLOT, other_fac),
            (folded.channels, CHANNEL_SLOT, other_chan),
        ):
            for key, d in names.items():
                slot = slot_of.get(key)
                if slot is None:
                    others[key] = [d[0] * k, d[1] * k]
                else:
                    sum_w[slot] = d[0] * k
                    sum_s[slot] = d[1] * k
    check_weights(episodes, weights)
    for ep, w in zip(episodes, weights):  # noqa: B905 (checked) w: weight(ep.end, as_of)
        slots = SLOTS_OF[ep.mask]
        # typed: compiled, the sums are then worked out on doubles, not on boxed objects
        flat: tuple[float, ...] = MEMORIES[len(slots)].unpack(ep.series)
        for j, slot in enumerate(slots):
            sum_w[slot] += w
            sum_s[slot] += w * remembered_at(flat, j)
    for key, (w, value) in (extra or {}).items():
        slot = FACTOR_SLOT.get(key)
        if slot is None:
            _add(other_fac, key, w, value)
        else:
            sum_w[slot] += w
            sum_s[slot] += w * value
    fac = {SERIES[i]: to_score(sum_s[i] / sum_w[i]) for i in range(FACTOR_SLOTS) if sum_w[i] > 0}
    chan = {
        SERIES[i]: to_score(sum_s[i] / sum_w[i]) for i in range(FACTOR_SLOTS, n) if sum_w[i] > 0
    }
    if other_fac:
        fac.update(_to_scores(other_fac))
    if other_chan:
        chan.update(_to_scores(other_chan))
    return fac, chan


def _to_scores(acc: dict[str, list[float]]) -> dict[str, float]:
    """``to_score(s / w)`` of every series with weight."""
    return {key: to_score(s / w) for key, (w, s) in acc.items() if w > 0}
