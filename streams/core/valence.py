"""Satisfaction = experience - expectation, weighted by importance (cx-model.md).

``gap g_f = x_f - expectation_f(tier)``, ``impact = importance_f * g_f`` and the moment's
valence ``v = sum(importance_f * g_f) / sum(importance_f)`` over the factors the touchpoint
touches, clamped to [-10, 10]: the point on the emotion map.
"""

from __future__ import annotations

from cxpulse.streams.core.decimals import rounded


def key_factor(impacts_: dict[str, float]) -> str:
    """The factor of largest |impact|; on a tie the more negative one (bad outweighs good),
    then the first in the touchpoint's order, so the choice is deterministic."""
    best = ""
    best_key: tuple[float, float] = (-1.0, 0.0)
    for f, i in impacts_.items():
        k = (abs(i), -i)
        if k > best_key:
            best, best_key = f, k
    return best


def assess(
    readings: dict[str, float], expectations: dict[str, float], importance: dict[str, float]
) -> tuple[dict[str, float], dict[str, float], float, str]:
    """``gaps``, ``impacts``, ``valence`` and ``key_factor`` of one moment in one pass.

    ``valence`` is the importance-weighted mean gap, clamped to [-10, 10], 0 when no
    factor was read; ``impact = importance x gap``: 9 x -2 = -18 is a key experience,
    2 x -5 = -10 is not. Values are rounded to 3 decimals: that is how the state keeps
    them (``cxpulse.streams.state.customer`` stores thousandths).
    """
    gaps_: dict[str, float] = {}
    impacts_: dict[str, float] = {}
    weights: list[float] = []
    terms: list[float] = []
    for f, x in readings.items():
        g = rounded(x - expectations[f], 3)
        w = importance[f]
        gaps_[f] = g
        impacts_[f] = rounded(w * g, 3)
        weights.append(w)
        terms.append(w * g)
    den = sum(weights)
    if den <= 0:
        v = 0.0
    else:
        v = sum(terms) / den
        v = rounded(-10.0 if v < -10 else 10.0 if v > 10 else v, 3)
    return gaps_, impacts_, v, key_factor(impacts_)
