"""Readings: an event's experience ``x_f`` in [0, 10] per factor, at three levels.

The levels are cx-model.md's hierarchy of experience: **need** (the outcome), **ease** (effort
against what the touchpoint is expected to take) and **delight** (survey answers, sentiment).

How several readings of one factor combine (cx-model.md is silent; this is our choice):

* within a level, the mean: two effort metrics of one touchpoint (a 3-minute wait and one
  transfer) are two views of one effort, and a CSAT and a sentiment of one moment two
  views of one feeling;
* across levels, the weighted mean of the levels present (``readings.level_weights``,
  default need 1, ease 1, delight 2: the customer's own word counts double);
* capped by the need reading: a higher level cannot make up for a lower one (a fast,
  friendly failure is still a failure, so a failed moment reads 0 however it felt).
"""

from __future__ import annotations

from cxpulse.schemas.model import ExperienceModel, Scale, TouchpointSpec
from cxpulse.streams.pipeline.records import Event, Feedback


def outcome_reading(outcome: str, model: ExperienceModel) -> float:
    """Need level: success 10, abandoned 3, failure 0 by default."""
    return float(getattr(model.readings.outcomes, outcome))


def effort_reading(value: float, expected: float, k: float) -> float:
    """Ease level: 10 while ``value <= expected``, then linear to 0 at ``value = k*expected``.

    >>> effort_reading(250, 100, 4)  # 2.5 e with k = 4: 10 * (4 - 2.5) / (4 - 1)
    5.0
    """
    if value <= expected:
        return 10.0
    top = k * expected
    if value >= top:
        return 0.0
    return 10.0 * (top - value) / (top - expected)


def scale_reading(value: float, scale: Scale) -> float:
    """A survey answer or sentiment mapped linearly so ``scale.zero`` -> 0, ``scale.ten`` -> 10.

    With the defaults this is CSAT (c-1)*2.5, NPS as is, CES (7-c)*10/6 and sentiment 5+5c.
    Clamped, so an out-of-scale value cannot leave 0..10.
    """
    x = 10.0 * (value - scale.zero) / (scale.ten - scale.zero)
    return 0.0 if x < 0 else 10.0 if x > 10 else x


def delight_reading(
    feedback: Feedback | None, sentiment: float | None, model: ExperienceModel
) -> float | None:
    """Delight level: the mean of the answers present, or None when the customer said nothing."""
    d = model.readings.delight
    xs: list[float] = []
    if feedback is not None:
        if feedback.csat is not None:
            xs.append(scale_reading(feedback.csat, d.csat))
        if feedback.nps is not None:
            xs.append(scale_reading(feedback.nps, d.nps))
        if feedback.ces is not None:
            xs.append(scale_reading(feedback.ces, d.ces))
    if sentiment is not None:
        xs.append(scale_reading(sentiment, d.sentiment))
    return sum(xs) / len(xs) if xs else None


def factor_readings(
    event: Event,
    spec: TouchpointSpec,
    model: ExperienceModel,
    sentiment: float | None,
) -> dict[str, float]:
    """``x_f`` for every factor of the touchpoint (see the module docstring for the rule).

    Called for every event: what does not depend on the factor (the need level's share,
    the level weights) is read once, and delight is only looked for when the customer
    said something; the arithmetic is the rule's, term by term.
    """
    cfg = model.readings
    need = outcome_reading(event.outcome, model)
    feedback = event.feedback
    delight = (
        None
        if feedback is None and sentiment is None
        else delight_reading(feedback, sentiment, model)
    )
    ease_sum: dict[str, float] = {}
    ease_n: dict[str, int] = {}
    details = event.details
    if details is not None and spec.effort:
        for eff in spec.effort:
            value = getattr(details, eff.metric, None)
            if value is None:
                continue
            x = effort_reading(float(value), eff.expected, eff.k or cfg.effort_k)
            for f in eff.factors or spec.factors:
                ease_sum[f] = ease_sum.get(f, 0.0) + x
                ease_n[f] = ease_n.get(f, 0) + 1
    w = cfg.level_weights
    w_need, w_ease, w_delight = w.need, w.ease, w.delight
    need_total = w_need * need
    out: dict[str, float] = {}
    for f in spec.factors:
        total, weight = need_total, w_need
        if f in ease_n:
            total += w_ease * ease_sum[f] / ease_n[f]
            weight += w_ease
        if delight is not None:
            total += w_delight * delight
            weight += w_delight
        x = total / weight
        out[f] = round(need if x > need else x, 3)
    return out
