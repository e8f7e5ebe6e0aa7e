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

import msgspec

from cxpulse.schemas.scoring import Episode, Folded, KeyMoment
from cxpulse.streams.core.decimals import rounded
from cxpulse.streams.core.score import check_weights


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
        msgspec.structs.replace(k, share=rounded(share, 4), end_t=ep.overall[1])
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


def listed(
    folded: Folded,
    episodes: list[Episode],
    frozen: list[KeyMoment],
    as_of: int,
    half_life_s: float,
    size: int,
    weights: list[float],
) -> list[tuple[KeyMoment, float]]:
    """The moments that account for the score most as of ``as_of``, each with its
    contribution (to 3 decimals): the ``size`` candidates of largest |contribution| that
    do not round to 0, largest first, then by id. ``weights`` are the episodes' decay
    weights as of ``as_of`` (``score.episode_weights``).

    A pure function of the state: a contribution moves with every event (the decay, the
    total weight), so it is worked out when a score update or a rule asks, not stored on
    the candidates (which kept every open episode and folded candidate it touched
    changing, to be packed again, at every update)."""
    total = 0.0
    if folded.count:
        total = folded.overall[0] * 2.0 ** ((folded.ref - as_of) / half_life_s)
    total += sum(weights)
    if total <= 0:
        return []
    scored: list[tuple[float, str]] = []
    by_id: dict[str, KeyMoment] = {}
    check_weights(episodes, weights)
    for ep, w in zip(episodes, weights):  # noqa: B905 (checked: check_weights)
        for k, share in roles(ep):
            scored.append((rounded(5.0 * share * w / total, 3), k.event_id))
            by_id.setdefault(k.event_id, k)
    for k in frozen:
        w = 2.0 ** ((k.end_t - as_of) / half_life_s)
        scored.append((rounded(5.0 * k.share * w / total, 3), k.event_id))
        by_id.setdefault(k.event_id, k)
    scored.sort(key=_largest_first)
    chosen = {i: c for c, i in scored[:size] if c != 0}
    out = [(by_id[i], c) for i, c in chosen.items()]
    out.sort(key=_by_contribution)
    return out


def _by_contribution(item: tuple[KeyMoment, float]) -> tuple[float, str]:
    return (-abs(item[1]), item[0].event_id)


def _largest_first(scored: tuple[float, str]) -> tuple[float, str]:
    """Largest |contribution| first, then by id."""
    return (-abs(scored[0]), scored[1])
