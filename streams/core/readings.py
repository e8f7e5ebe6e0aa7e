"""Readings: an event's experience ``x_f`` in [0, 10] per factor, at three levels.

The levels are cx-model.md's hierarchy of experience: **need** (the outcome), **ease** (effort
against what the touchpoint is expected to take) and **delight** (survey answers about the
moment, sentiment). Every level is read against the tier's expectation ``E_f`` of the
factor, the reading of a moment that went as expected, so that such a moment is a gap of 0
in every tier (cx-model.md, revised 2026-12-04):

* need: ``min(outcome cap, E_f)``: a success meets the need, it reads ``E_f``; abandoned
  (cap 3) and failure (cap 0) fall below it;
* ease: ``E_f`` while the effort is at most what the tier expects (the touchpoint's
  expected effort times the tier's ``effort`` share), then linear to 0 at ``k`` times it:
  effort beyond expectation pulls down, a faster than expected moment does not lift;
* delight: each answer's scale maps its ``expected`` answer (CSAT 4, CES 2, neutral text)
  to ``E_f``, its best to 10 and its worst to 0, linear in between: the customer's own
  word is already a comparison with what they expected, so the same answer is the same
  gap in every tier, up to the headroom ``10 - E_f`` above it.

How several readings of one factor combine (cx-model.md is silent; this is our choice):

* within a level, the mean: two effort metrics of one touchpoint (a 3-minute wait and one
  transfer) are two views of one effort, and a CSAT and a sentiment of one moment two
  views of one feeling;
* across levels, the weighted mean of the levels present (``readings.level_weights``,
  default need 1, ease 1, delight 2: the customer's own word counts double);
* capped by the outcome's cap: a higher level cannot make up for a lower one (a fast,
  friendly failure is still a failure, so a failed moment reads 0 however it felt).

NPS is not read here: it asks about loyalty, not the moment; the core keeps it as the
customer's relationship signal (``cxpulse.streams.core.apply``).
"""

from __future__ import annotations

from cxpulse.schemas.model import ExperienceModel, Scale, TouchpointSpec
from cxpulse.schemas.vocabulary import OUTCOMES
from cxpulse.streams.core.decimals import rounded
from cxpulse.streams.pipeline.records import Event, Feedback


def effort_reading(value: float, expected: float, k: float) -> float:
    """Ease on 0..10: 10 while ``value <= expected``, then linear to 0 at ``value = k*expected``
    (the factor's ease reading is this share of its expectation).

    >>> effort_reading(250, 100, 4)  # 2.5 e with k = 4: 10 * (4 - 2.5) / (4 - 1)
    5.0
    """
    if value <= expected:
        return 10.0
    top = k * expected
    if value >= top:
        return 0.0
    return 10.0 * (top - value) / (top - expected)


#: An answer read on its scale: its position (``AnswerScale.position``) and the positions
#: its scale's expected answer spans there, low to high (None for a scale without one).
Point = tuple[float, tuple[float, float] | None]


class AnswerScale:
    """A ``Scale`` of the model as the core reads answers on it: its ends, and where its
    expected answer lies, worked out once per model (``Levels``)."""

    def __init__(self, zero: float, ten: float, span: tuple[float, float] | None) -> None:
        self.zero = zero
        self.ten = ten
        #: the positions the expected answer spans, low to high; None without one
        self.span = span

    @staticmethod
    def of(scale: Scale) -> AnswerScale:
        read = AnswerScale(scale.zero, scale.ten, None)
        rng = scale.expected_range()
        if rng:
            a, b = (read.position(v) for v in rng)
            read.span = (a, b) if a <= b else (b, a)
        return read

    def position(self, value: float) -> float:
        """Where an answer lies on the scale, linearly: ``zero`` -> 0, ``ten`` -> 10,
        clamped (CSAT (c-1)*2.5, CES (7-c)*10/6, sentiment 5+5c with the defaults)."""
        x = 10.0 * (value - self.zero) / (self.ten - self.zero)
        return 0.0 if x < 0 else 10.0 if x > 10 else x

    def point(self, value: float) -> Point:
        """What of an answer does not depend on the expectation it is read against: an
        event reads its answers once, then against each factor's expectation
        (``point_reading``)."""
        return self.position(value), self.span

    def reading(self, value: float, expected: float) -> float:
        """An answer as a reading against the expectation ``expected`` (``E_f``): the
        scale's expected answer (or range) reads ``expected``, ``zero`` 0 and ``ten`` 10,
        linear in between; a scale without ``expected`` is read linearly (``position``).

        >>> from cxpulse.schemas.model import Scale
        >>> csat = AnswerScale.of(Scale(zero=1, ten=5, expected=4))
        >>> [csat.reading(c, 7.0) for c in (1, 4, 5)]
        [0.0, 7.0, 10.0]
        """
        return point_reading(self.point(value), expected)


def point_reading(point: Point, expected: float) -> float:
    """An answer's ``Point`` as a reading against the expectation ``expected``."""
    x, span = point
    if span is None:
        return x
    lo, hi = span
    if x < lo:
        return expected * x / lo
    if x > hi:
        return expected + (10.0 - expected) * (x - hi) / (10.0 - hi)
    return expected


class Levels:
    """The model's ``readings`` section as the core reads every event with it: the
    outcomes' caps, the level weights and the delight scales, read once per model
    (``cxpulse.streams.core.apply``); the model itself is a pydantic model, whose fields
    cost the compiled core a generic attribute lookup each."""

    def __init__(self, model: ExperienceModel) -> None:
        cfg = model.readings
        #: the need level's cap per outcome: success 10, abandoned 3, failure 0 by default
        self.caps: dict[str, float] = {o: float(getattr(cfg.outcomes, o)) for o in OUTCOMES}
        self.effort_k: float = cfg.effort_k
        w = cfg.level_weights
        self.need: float = w.need
        self.ease: float = w.ease
        self.delight: float = w.delight
        d = cfg.delight
        self.csat = AnswerScale.of(d.csat)
        self.ces = AnswerScale.of(d.ces)
        self.sentiment = AnswerScale.of(d.sentiment)
        #: the relationship signal's scale (an NPS answer: ``readings.nps``)
        self.nps = AnswerScale.of(cfg.nps)

    def answers(self, feedback: Feedback | None, sentiment: float | None) -> list[Point]:
        """The moment's answers on their scales: CSAT, CES, sentiment (an NPS says
        nothing of the moment)."""
        xs: list[Point] = []
        if feedback is not None:
            if feedback.csat is not None:
                xs.append(self.csat.point(feedback.csat))
            if feedback.ces is not None:
                xs.append(self.ces.point(feedback.ces))
        if sentiment is not None:
            xs.append(self.sentiment.point(sentiment))
        return xs


class Effort:
    """One effort metric of a touchpoint as it is read: its expected value, its ``k``
    (the model's ``effort_k`` when the touchpoint gives none) and the factors it bears on
    (all the touchpoint's when it names none)."""

    def __init__(self, metric: str, expected: float, k: float, factors: tuple[str, ...]) -> None:
        self.metric = metric
        self.expected = expected
        self.k = k
        self.factors = factors


class Plan:
    """How the events of one touchpoint are read: its factors, in its order, and its effort
    metrics; ``fallback`` when it is its channel's defaults (no spec of its own). Made
    once per touchpoint and channel from the model's ``TouchpointSpec``
    (``cxpulse.streams.core.apply``)."""

    def __init__(self, spec: TouchpointSpec, fallback: bool, levels: Levels) -> None:
        self.factors: tuple[str, ...] = tuple(spec.factors)
        self.efforts: tuple[Effort, ...] = tuple(
            Effort(e.metric, e.expected, e.k or levels.effort_k, tuple(e.factors or spec.factors))
            for e in spec.effort
        )
        self.fallback = fallback


def delight_reading(answers: list[Point], expected: float) -> float:
    """Delight level against ``expected``: the mean of the moment's ``answers``
    (``Levels.answers``: each read on its scale once per event)."""
    return sum(point_reading(p, expected) for p in answers) / len(answers)


def factor_readings(
    event: Event,
    plan: Plan,
    levels: Levels,
    sentiment: float | None,
    expectations: dict[str, float],
    effort_share: float = 1.0,
) -> dict[str, float]:
    """``x_f`` for every factor of the touchpoint (``plan``; see the module docstring for
    the rule), against the tier's ``expectations`` and the share ``effort_share`` of each
    expected effort the tier expects.

    Called for every event: what does not depend on the factor (the outcome's cap, the
    ease shares, where each answer lies on its scale) is read once, and delight is only
    looked for when the customer said something; the arithmetic is the rule's, term by
    term.
    """
    cap = levels.caps[event.outcome]
    feedback = event.feedback
    answers = [] if feedback is None and sentiment is None else levels.answers(feedback, sentiment)
    ease_sum: dict[str, float] = {}
    ease_n: dict[str, int] = {}
    details = event.details
    if details is not None and plan.efforts:
        for eff in plan.efforts:
            value = getattr(details, eff.metric, None)
            if value is None:
                continue
            share = effort_reading(float(value), eff.expected * effort_share, eff.k) / 10.0
            for f in eff.factors:
                ease_sum[f] = ease_sum.get(f, 0.0) + share
                ease_n[f] = ease_n.get(f, 0) + 1
    w_need, w_ease, w_delight = levels.need, levels.ease, levels.delight
    out: dict[str, float] = {}
    for f in plan.factors:
        e = expectations[f]
        need = cap if cap < e else e
        total, weight = w_need * need, w_need
        if f in ease_n:
            total += w_ease * e * ease_sum[f] / ease_n[f]
            weight += w_ease
        if answers:
            total += w_delight * delight_reading(answers, e)
            weight += w_delight
        x = total / weight
        out[f] = rounded(cap if x > cap else x, 3)
    return out
