"""The explanation: the moments that account for the score, each with its contribution.

Only the peak and the end of an episode enter its remembered valence ``r = (peak + end) / 2``
(cx-model.md), so only they can move the score. The score is ``50 + 5 m`` with
``m = sum_i w_i r_i / W`` (``w_i`` the decay weight of episode ``i``, ``W`` their sum), so
a moment's **contribution** is ``5 * share * w / W``: ``share`` is half its valence when it
is its episode's peak or its end, all of it when it is both, and ``w`` its episode's decay
weight. Over every moment of every episode the contributions add up to ``score - 50``
exactly (up to rounding); a moment that is neither peak nor end contributes nothing and
is never listed, however large its impact (a failure -> abandoned -> success episode lists
the failure and the success, not the abandonment).

The candidates are the peak and end moments of the open episodes (``Episode.peak_m``,
``end_m``, which follow the episode as moments arrive) and, for the folded episodes, the
``explanation_size`` largest by ``log2|share| + end_t / half_life``: a rank that does not
depend on when it is computed (moving the reference time adds the same constant to every
rank), and orders them as their contributions will be at any later time. So a folded
moment that is not kept could never be listed again, and the list is exact.
"""

from __future__ import annotations

import math
from typing import overload

import msgspec

from cxpulse.schemas.scoring import CustomerState, Episode, Folded, KeyMoment
from cxpulse.streams.core.decimals import rounded


def roles(ep: Episode) -> list[tuple[KeyMoment, float]]:
    """The moments of an episode that carry its remembered valence, with their shares."""
    peak, _, end = ep.overall
    pm, em = ep.peak_m, ep.end_m
    if pm is not None and em is not None and pm.event_id == em.event_id:
        return [(pm, (peak + end) / 2.0)]
    out: list[tuple[KeyMoment, float]] = []
    if pm is not None:
        out.append((pm, peak / 2.0))
    if em is not None:
        out.append((em, end / 2.0))
    return out


def freeze(closed: list[Episode]) -> list[KeyMoment]:
    """The candidates of episodes being folded, with their shares and episode ends."""
    return [
        msgspec.structs.replace(k, share=rounded(share, 4), end_t=ep.overall[1], contribution=0.0)
        for ep in closed
        for k, share in roles(ep)
        if share != 0
    ]


def _rank_key(km: KeyMoment, half_life_s: float) -> tuple[float, str]:
    return (-(math.log2(abs(km.share)) + km.end_t / half_life_s), km.event_id)


def keep_top(
    frozen: list[KeyMoment], new: list[KeyMoment], size: int, half_life_s: float
) -> list[KeyMoment]:
    """The ``size`` folded candidates of largest decayed |share|, largest first."""
    if not new:
        return frozen
    merged = [*frozen, *new]
    merged.sort(key=lambda k: _rank_key(k, half_life_s))
    return merged[:size]


def contributions(
    folded: Folded,
    episodes: list[Episode],
    frozen: list[KeyMoment],
    as_of: int,
    half_life_s: float,
    size: int,
    weights: list[float],
) -> tuple[list[Episode], list[KeyMoment]]:
    """Episodes and folded candidates with ``contribution`` set, as of ``as_of``, on the
    ``size`` candidates of largest |contribution| (0 on every other one); ``weights`` are
    the episodes' decay weights as of ``as_of`` (``score.episode_weights``)."""
    total = 0.0
    if folded.count:
        total = folded.overall[0] * 2.0 ** ((folded.ref - as_of) / half_life_s)
    total += sum(weights)
    if total <= 0:
        return episodes, frozen
    scored: list[tuple[float, str]] = []
    for ep, w in zip(episodes, weights, strict=True):
        for k, share in roles(ep):
            scored.append((rounded(5.0 * share * w / total, 3), k.event_id))
    for k in frozen:
        w = 2.0 ** ((k.end_t - as_of) / half_life_s)
        scored.append((rounded(5.0 * k.share * w / total, 3), k.event_id))
    scored.sort(key=_largest_first)
    listed = {i: c for c, i in scored[:size] if c != 0}

    out_eps: list[Episode] = []
    for ep in episodes:
        pm = _with(ep.peak_m, listed)
        em = (
            pm
            if ep.end_m is not None and pm is not None and ep.end_m.event_id == pm.event_id
            else _with(ep.end_m, listed)
        )
        if pm is ep.peak_m and em is ep.end_m:
            out_eps.append(ep)
        else:
            out_eps.append(msgspec.structs.replace(ep, peak_m=pm, end_m=em))
    return out_eps, [_with(k, listed) for k in frozen]


def explained(state: CustomerState) -> list[KeyMoment]:
    """The listed moments of a state (those with a contribution as of its watermark), from
    the open episodes and the folded ones, largest |contribution| first, then by id."""
    out: list[KeyMoment] = []
    ids: set[str] = set()
    for e in state.episodes:
        for k in (e.peak_m, e.end_m):
            if k is not None and k.contribution != 0 and k.event_id not in ids:
                ids.add(k.event_id)
                out.append(k)
    out += [k for k in state.key_moments if k.contribution != 0]
    out.sort(key=_by_contribution)
    return out


def _by_contribution(k: KeyMoment) -> tuple[float, str]:
    return (-abs(k.contribution), k.event_id)


def _largest_first(scored: tuple[float, str]) -> tuple[float, str]:
    """Largest |contribution| first, then by id."""
    return (-abs(scored[0]), scored[1])


@overload
def _with(k: KeyMoment, listed: dict[str, float]) -> KeyMoment: ...
@overload
def _with(k: None, listed: dict[str, float]) -> None: ...
def _with(k: KeyMoment | None, listed: dict[str, float]) -> KeyMoment | None:
    """``k`` with its contribution as listed (0 when it is not): itself when unchanged."""
    if k is None:
        return None
    c = listed.get(k.event_id, 0.0)
    return k if k.contribution == c else msgspec.structs.replace(k, contribution=c)
