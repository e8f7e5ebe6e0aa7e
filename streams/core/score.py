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

from dataclasses import dataclass

from schemas.scoring import Decayed, Episode, Folded
from streams.core.episodes import remembered


def weight(t: int, ref: int, half_life_s: float) -> float:
    """Decay weight of something at event time ``t`` seen from ``ref``: halves per half-life."""
    return float(2.0 ** ((t - ref) / half_life_s))


def _add(acc: dict[str, list[float]], key: str, w: float, value: float) -> None:
    cur = acc.get(key)
    if cur is None:
        acc[key] = [w, w * value]
    else:
        cur[0] += w
        cur[1] += w * value


def fold(folded: Folded, ep: Episode, half_life_s: float) -> Folded:
    """Fold a closed episode into the decayed sums, moving their reference forward."""
    ref = max(folded.ref, ep.end) if folded.count else ep.end
    k = weight(folded.ref, ref, half_life_s) if folded.count else 0.0
    w = weight(ep.end, ref, half_life_s)

    def scaled(d: Decayed, value: float | None) -> Decayed:
        ws, ss = d[0] * k, d[1] * k
        if value is not None:
            ws, ss = ws + w, ss + w * value
        return (_r(ws), _r(ss))

    factors = {f: scaled(d, None) for f, d in folded.factors.items()}
    for f, pe in ep.factors.items():
        factors[f] = scaled(folded.factors.get(f, (0.0, 0.0)), remembered(pe))
    channels = {c: scaled(d, None) for c, d in folded.channels.items()}
    for c, pe in ep.channels.items():
        channels[c] = scaled(folded.channels.get(c, (0.0, 0.0)), remembered(pe))
    return Folded.model_construct(
        ref=ref,
        count=folded.count + 1,
        overall=scaled(folded.overall, remembered(ep.overall)),
        factors=factors,
        channels=channels,
    )


def _r(x: float) -> float:
    """Nine significant digits: plenty for a score, and short in the changelog record."""
    return float(f"{x:.9g}")


def to_score(m: float) -> float:
    s = 50.0 + 5.0 * m
    return round(0.0 if s < 0 else 100.0 if s > 100 else s, 2)


@dataclass(frozen=True, slots=True)
class Scores:
    score: float
    factor_scores: dict[str, float]
    channel_scores: dict[str, float]
    confidence: float
    episodes: int


def compute(
    folded: Folded,
    episodes: list[Episode],
    as_of: int,
    half_life_s: float,
    confidence_half_at: float,
) -> Scores:
    """Score, sub-scores and confidence as of event time ``as_of``.

    confidence = n / (n + half_at) where n is the decay-weighted number of episodes
    (a fortnight-old episode is half an episode of evidence): it grows with every episode
    and shrinks as the evidence ages (cx-model.md is silent on the curve; this one is 0.5 at
    ``half_at`` recent episodes and never reaches 1).
    """
    acc_w = acc_s = 0.0
    fac: dict[str, list[float]] = {}
    chan: dict[str, list[float]] = {}
    if folded.count:
        k = weight(folded.ref, as_of, half_life_s)
        acc_w, acc_s = folded.overall[0] * k, folded.overall[1] * k
        for f, d in folded.factors.items():
            fac[f] = [d[0] * k, d[1] * k]
        for c, d in folded.channels.items():
            chan[c] = [d[0] * k, d[1] * k]
    for ep in episodes:
        w = weight(ep.end, as_of, half_life_s)
        acc_w += w
        acc_s += w * remembered(ep.overall)
        for f, pe in ep.factors.items():
            _add(fac, f, w, remembered(pe))
        for c, pe in ep.channels.items():
            _add(chan, c, w, remembered(pe))
    score = to_score(acc_s / acc_w) if acc_w > 0 else 50.0
    return Scores(
        score=score,
        factor_scores={f: to_score(s / w) for f, (w, s) in fac.items() if w > 0},
        channel_scores={c: to_score(s / w) for c, (w, s) in chan.items() if w > 0},
        confidence=round(acc_w / (acc_w + confidence_half_at), 3) if acc_w > 0 else 0.0,
        episodes=folded.count + len(episodes),
    )
