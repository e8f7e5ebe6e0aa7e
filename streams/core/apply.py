"""The core's entry points: ``apply_event``, ``apply_events``, and ``score_update`` with
the explanation it lists (``explanation``, which the rules ask too): what follows from a
state as of its watermark is worked out when asked, not kept in it.

Pure: the state, the event, the model, the sentiment and ``now`` go in; a new state and a
Moment come out. Nothing is read from the clock or the environment, and the input state is
never mutated (the new state shares with it what the call did not change: the same
lists and dicts, which no step changes in place; a step that changes one makes a new one).

Time. Everything runs on event time (epoch seconds). ``watermark`` is the newest event time
seen. ``now`` is used for one thing only: an event stamped more than
``score.max_clock_skew_minutes`` after ``now`` is treated as occurring at ``now + skew``, so a
producer with a wrong clock cannot push the customer's event time into the future.

Late events. An event older than ``watermark - allowed_lateness`` (or at/before the dedup
``floor``) is *late*: it still yields a Moment (marked ``late``, episode ``"late"``) so the
emotion map in ClickHouse is complete, but it leaves the state untouched, so it cannot
double count after its id has been forgotten and replays of old data are harmless.
Within the allowed lateness an event is placed in its episode exactly as if it had come in
order. Episodes that end more than ``allowed_lateness + gap`` before the watermark (the
session gap, or the journey gap for a journey's episode) are closed and folded: no
accepted event can join them any more, which is what makes processing order-insensitive
for every arrival order in which no event is late. (Two limits, both rare and deterministic:
more than ``episodes.max_open`` open episodes closes the oldest early, and a moment
without a tier takes the customer's tier as known when it is processed.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import msgspec

from cxpulse.schemas.model import DEFAULT_SEGMENT, NO_TIER, TIERS, ExperienceModel
from cxpulse.schemas.scoring import (
    CustomerState,
    Episode,
    Explanation,
    Folded,
    KeyMoment,
    Moment,
    ScoreUpdate,
)
from cxpulse.streams.core import (
    dedup,
    episodes,
    explain,
    ids,
    readings,
    score,
    times,
    trail,
    valence,
)
from cxpulse.streams.core.decimals import rounded
from cxpulse.streams.pipeline.records import Event

Sentiments = Sequence[float | None] | Mapping[UUID, float | None]


class _Work:
    """The mutable working form of a CustomerState during one call.

    A plain class, not a dataclass: mypyc compiles its ``__init__`` with the module, where
    a dataclass's generated one runs as interpreted Python (~1.2 µs, made per customer of
    every take; the same holds for ``trail.Trail`` and the rules' ``Batch`` and ``At``)."""

    def __init__(
        self,
        customer_id: str,
        version: int = 0,
        tier: str | None = None,
        segment: str | None = None,
        profile_t: int = 0,
        watermark: int = 0,
        floor: int = 0,
        seen: dedup.Seen | None = None,
        episodes: list[Episode] | None = None,
        folded: Folded | None = None,
        key_moments: list[KeyMoment] | None = None,
        trail_: trail.Trail | None = None,
        score_trail: list[tuple[int, float]] | None = None,
        old: CustomerState | None = None,
        nps: int | None = None,
        nps_t: int = 0,
    ) -> None:
        self.customer_id = customer_id
        self.version = version
        self.tier = tier
        self.segment = segment
        self.profile_t = profile_t
        self.watermark = watermark
        self.floor = floor
        self.seen: dedup.Seen = dedup.Seen() if seen is None else seen
        self.episodes: list[Episode] = [] if episodes is None else episodes
        self.folded: Folded = Folded() if folded is None else folded
        self.key_moments: list[KeyMoment] = [] if key_moments is None else key_moments
        self.trail: trail.Trail = trail.Trail() if trail_ is None else trail_
        self.score_trail: list[tuple[int, float]] = [] if score_trail is None else score_trail
        self.scores: score.Scores | None = None
        self.old = old
        self.nps = nps
        self.nps_t = nps_t


@dataclass(frozen=True, slots=True)
class _Params:
    """A model's numbers in the form the core uses them, computed once per model.

    Why: the core used to work them out again for every event (``model.score.
    half_life_days * 86400`` twice, ``allowed_lateness_hours * 3600`` three times, a new
    ``Gaps``, the rules' ``Limits`` per batch), a few microseconds each time. Same
    values, same expressions, computed once; cached like ``trail.Limits.of``.
    """

    skew_s: int
    lateness_s: int
    gaps: episodes.Gaps
    half_life_s: float
    confidence_half_at: float
    max_open: int
    seen_ids_max: int
    explanation_size: int
    limits: trail.Limits
    levels: readings.Levels
    nps_weight: float
    #: per tier (``NO_TIER`` for none): the factors' expectations, and the share of each
    #: touchpoint's expected effort it expects
    expectations: dict[str, dict[str, float]]
    effort_shares: dict[str, float]
    #: per segment (``DEFAULT_SEGMENT`` for the others): the factors' importance
    importance: dict[str, dict[str, float]]
    #: the reading plan of each touchpoint seen, per channel (``plan``)
    plans: dict[str, dict[str, readings.Plan]]
    model: ExperienceModel

    def plan(self, touchpoint: str, channel: str) -> readings.Plan:
        """How an event of this touchpoint on this channel is read: its spec, else its
        longest configured dotted prefix's, else the channel's defaults
        (``ExperienceModel.touchpoint_spec``), made once and kept (at most ``PLANS_KEPT``
        a channel: touchpoint names come from the input)."""
        kept = self.plans.get(channel)
        if kept is None:
            kept = self.plans[channel] = {}
        found = kept.get(touchpoint)
        if found is None:
            spec, fallback = self.model.touchpoint_spec(touchpoint, channel)
            if len(kept) >= PLANS_KEPT:
                kept.clear()
            found = kept[touchpoint] = readings.Plan(spec, fallback, self.levels)
        return found

    def importance_for(self, segment: str | None) -> dict[str, float]:
        """``ExperienceModel.importance_for``."""
        imp = self.importance
        return imp.get(segment or DEFAULT_SEGMENT) or imp[DEFAULT_SEGMENT]

    @classmethod
    def of(cls, model: ExperienceModel) -> _Params:
        cached = _PARAMS.get(id(model))
        if cached is not None and cached[0] is model:
            return cached[1]
        params = cls(
            skew_s=int(model.score.max_clock_skew_minutes * 60),
            lateness_s=_lateness_s(model),
            gaps=_gaps(model),
            half_life_s=model.score.half_life_days * 86400,
            confidence_half_at=model.score.confidence.half_at_episodes,
            max_open=model.episodes.max_open,
            seen_ids_max=model.state.seen_ids_max,
            explanation_size=model.score.explanation_size,
            limits=trail.Limits.of(model),
            levels=readings.Levels(model),
            nps_weight=model.score.nps_weight,
            expectations={t: model.expectations_for(t) for t in (*TIERS, NO_TIER)},
            effort_shares={t: model.effort_for(t) for t in (*TIERS, NO_TIER)},
            importance={s: model.importance_for(s) for s in model.factors.importance},
            plans={},
            model=model,
        )
        if len(_PARAMS) >= 16:
            _PARAMS.clear()
        _PARAMS[id(model)] = (model, params)
        return params


_PARAMS: dict[int, tuple[ExperienceModel, _Params]] = {}
#: Reading plans kept per channel (``_Params.plan``).
PLANS_KEPT = 1024


def _open(state: CustomerState | None, customer_id: str, p: _Params) -> _Work:
    if state is None:
        return _Work(customer_id=customer_id, trail_=trail.Trail(limits=p.limits))
    if state.customer_id != customer_id:
        raise ValueError(
            f"event for customer {customer_id!r} applied to the state of {state.customer_id!r}"
        )
    return _Work(
        customer_id=state.customer_id,
        version=state.version,
        tier=state.tier,
        segment=state.segment,
        profile_t=state.profile_t,
        watermark=state.watermark,
        floor=state.floor,
        seen=dedup.Seen(state.seen),
        # the state's own lists: every step that changes one makes a new list
        episodes=state.episodes,
        folded=state.folded,
        key_moments=_with_shares(state.key_moments),
        trail_=trail.Trail.of(state, p.limits),
        score_trail=state.score_trail,
        old=state,
        nps=state.nps,
        nps_t=state.nps_t,
    )


def _with_shares(key_moments: list[KeyMoment]) -> list[KeyMoment]:
    """The folded candidates that can say what they contribute: those written before
    shares were kept cannot (the state's own list when every one can)."""
    for k in key_moments:
        if k.share == 0:
            return [k for k in key_moments if k.share != 0]
    return key_moments


def _relationship(state: CustomerState, p: _Params) -> dict[str, tuple[float, float]]:
    """The last NPS answer as ``(weight, gap)`` on the relationship factor: its reading on
    ``readings.nps`` (passives as expected) against the tier's expectation, weighing
    ``score.nps_weight`` episodes of its age."""
    weight = p.nps_weight
    if state.nps is None or weight <= 0:
        return {}
    expected = p.expectations[state.tier or NO_TIER]["relationship"]
    gap = p.levels.nps.reading(state.nps, expected) - expected
    return {
        "relationship": (weight * score.weight(state.nps_t, state.watermark, p.half_life_s), gap)
    }


def _close(w: _Work, p: _Params) -> CustomerState:
    old = w.old
    if old is not None and w.version == old.version:
        return old  # nothing was applied: the very same state, as idempotency promises
    s = w.scores
    assert s is not None  # set by every applied event
    return CustomerState(
        customer_id=w.customer_id,
        version=w.version,
        tier=w.tier,
        segment=w.segment,
        profile_t=w.profile_t,
        watermark=w.watermark,
        floor=w.floor,
        seen=w.seen.stored(w.watermark - p.lateness_s),
        episodes=w.episodes,
        folded=w.folded,
        key_moments=w.key_moments,
        **w.trail.stored(p.limits, w.watermark),
        score_trail=w.score_trail,
        score=s.score,
        confidence=s.confidence,
        episode_count=s.episodes,
        alert_memory=dict(old.alert_memory) if old is not None else {},
        nps=w.nps,
        nps_t=w.nps_t,
    )


def _gaps(model: ExperienceModel) -> episodes.Gaps:
    return episodes.Gaps(
        session_s=int(model.episodes.gap_minutes * 60),
        journey_s=int(model.episodes.journey_gap_hours * 3600),
    )


def _lateness_s(model: ExperienceModel) -> int:
    return int(model.episodes.allowed_lateness_hours * 3600)


_epoch = times.epoch


def _apply(
    w: _Work,
    ev: Event,
    p: _Params,
    now_s: int,
    sentiment: float | None,
    topics: tuple[str, ...] = (),
) -> Moment | None:
    h = dedup.id_hash(ev.event_id)
    if h in w.seen:
        return None
    t = min(_epoch(ev.occurred_at), now_s + p.skew_s)
    late = w.version > 0 and (t < w.watermark - p.lateness_s or t <= w.floor)

    tier = ev.tier or w.tier
    segment = ev.segment or w.segment
    plan = p.plan(ev.touchpoint, ev.channel)
    fallback = plan.fallback
    importance = p.importance_for(segment)
    tier_key = tier or NO_TIER
    expectations = p.expectations[tier_key]
    x = readings.factor_readings(
        ev, plan, p.levels, sentiment, expectations, p.effort_shares[tier_key]
    )
    g, imp, v, key = valence.assess(x, expectations, importance)

    if late:
        score_now = w.scores.score if w.scores else (w.old.score if w.old else 50.0)
        return _moment(
            ev,
            "late",
            score_now,
            v,
            x,
            g,
            imp,
            key,
            tier,
            segment,
            sentiment,
            True,
            fallback,
            topics,
        )

    # profile: the latest event (by event time) that states a tier / segment wins
    if ev.tier is not None and (t >= w.profile_t or w.tier is None):
        w.tier = ev.tier
    if ev.segment is not None and (t >= w.profile_t or w.segment is None):
        w.segment = ev.segment
    if ev.tier is not None or ev.segment is not None:
        w.profile_t = max(w.profile_t, t)
    # the relationship signal: the latest NPS answer by event time (the lower on a tie)
    answer = ev.feedback.nps if ev.feedback is not None else None
    if answer is not None and (w.nps is None or t > w.nps_t or (t == w.nps_t and answer < w.nps)):
        w.nps, w.nps_t = answer, t

    half_life_s = p.half_life_s
    gaps = p.gaps
    w.watermark = max(w.watermark, t)

    # close what no acceptable event can join any more, then place the moment
    due, still_open = episodes.split_closed(w.episodes, w.watermark - p.lateness_s, gaps)
    if due:
        w.folded = score.fold(w.folded, sorted(due, key=_fold_order), half_life_s)
        w.key_moments = explain.keep_top(
            w.key_moments, explain.freeze(due), p.explanation_size, half_life_s
        )
        w.episodes = still_open
    event_hex = ids.hex_of(ev.event_id)
    km = (
        None
        if v == 0
        else KeyMoment(
            event_id=event_hex,
            t=t,
            touchpoint=ev.touchpoint,
            channel=ev.channel,
            factor=key,
            impact=imp[key],
        )
    )
    w.episodes, placed = episodes.place(
        w.episodes, episodes.single(ev.journey_id, t, v, g, ev.channel, km), gaps
    )
    while len(w.episodes) > p.max_open:
        oldest = min(w.episodes, key=_fold_order)
        w.folded = score.fold(w.folded, [oldest], half_life_s)
        w.key_moments = explain.keep_top(
            w.key_moments, explain.freeze([oldest]), p.explanation_size, half_life_s
        )
        w.episodes.remove(oldest)

    w.floor = w.seen.remember(h, t, p.seen_ids_max, w.floor)
    w.trail.add(
        t,
        ev.channel,
        ev.touchpoint,
        ev.touchpoint_instance,
        ev.outcome,
        ev.intent,
        event_hex,
    )

    weights = score.episode_weights(w.episodes, w.watermark, half_life_s)
    w.scores = score.compute(
        w.folded, w.episodes, w.watermark, half_life_s, p.confidence_half_at, weights
    )
    if w.version:  # a first moment's score is no reference for sharp_drop (trail.py)
        w.score_trail = trail.add_score(w.score_trail, w.watermark, w.scores.score)
    w.version += 1
    return _moment(
        ev,
        episodes.episode_id(placed),
        w.scores.score,
        v,
        x,
        g,
        imp,
        key,
        tier,
        segment,
        sentiment,
        False,
        fallback,
        topics,
    )


def _moment(
    ev: Event,
    episode_id: str,
    score_after: float,
    v: float,
    x: dict[str, float],
    g: dict[str, float],
    imp: dict[str, float],
    key: str,
    tier: str | None,
    segment: str | None,
    sentiment: float | None,
    late: bool,
    fallback: bool,
    topics: tuple[str, ...],
) -> Moment:
    """The Moment of an applied event (a function of its own, not a closure in ``_apply``:
    a closure made a function and a dozen cells for the collector at every event)."""
    return Moment(
        event_id=ev.event_id,
        customer_id=ev.customer_id,
        occurred_at=ev.occurred_at,
        channel=ev.channel,
        touchpoint=ev.touchpoint,
        touchpoint_instance=ev.touchpoint_instance,
        journey_stage=ev.journey_stage,
        journey_id=ev.journey_id,
        intent=ev.intent,
        outcome=ev.outcome,
        episode_id=episode_id,
        valence=v,
        readings=x,
        gaps=g,
        impacts=imp,
        key_factor=key,
        tier=tier,
        segment=segment,
        sentiment=sentiment,
        late=late,
        fallback=fallback,
        score_after=score_after,
        topics=topics,
    )


def _fold_order(ep: Episode) -> tuple[int, int, str]:
    return (ep.overall[1], ep.start, ep.journey or "")  # (end, ...)


def _now_s(now: datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (event times are)")
    return _epoch(now)


def apply_event(
    state: CustomerState | None,
    event: Event,
    model: ExperienceModel,
    now: datetime,
    sentiment: float | None = None,
) -> tuple[CustomerState, Moment | None]:
    """Apply one event; the Moment is None when the event is a duplicate (state unchanged)."""
    p = _Params.of(model)
    w = _open(state, event.customer_id, p)
    m = _apply(w, event, p, _now_s(now), sentiment)
    return _close(w, p), m


def apply_events(
    state: CustomerState | None,
    events: Iterable[Event],
    model: ExperienceModel,
    now: datetime,
    sentiments: Sentiments | None = None,
    topics: Mapping[UUID, tuple[str, ...]] | None = None,
) -> tuple[CustomerState, list[Moment | None]]:
    """Apply one customer's batch: one state out, so the stream writes the table once per
    touched key per batch. ``sentiments`` is parallel to ``events`` or keyed by event id;
    ``topics`` (keyed by event id) are the topics of the events' feedback text, kept on
    their moments (a batch without text passes none and pays nothing for them).

    Events are applied in event-time order (ties by id), which keeps as few as possible of
    them late; the moments are returned in the order of ``events`` (None for duplicates).
    """
    evs = list(events)
    if not evs:
        if state is None:
            raise ValueError("apply_events needs a state or at least one event")
        return state, []
    sent: list[float | None]
    if sentiments is None:
        sent = [None] * len(evs)
    elif isinstance(sentiments, (dict, Mapping)):  # dict first: no ABC check for it
        sent = [sentiments.get(e.event_id) for e in evs] if sentiments else [None] * len(evs)
    else:
        sent = list(sentiments)
        if len(sent) != len(evs):
            raise ValueError(f"{len(sent)} sentiments for {len(evs)} events: pass one per event")
    p = _Params.of(model)
    w = _open(state, evs[0].customer_id, p)
    now_s = _now_s(now)
    if len(evs) == 1:
        order = [0]  # most customers of a batch have one event: nothing to sort
    else:
        keys = [(e.occurred_at, e.event_id) for e in evs]  # a UUID orders as its hex does
        order = sorted(range(len(evs)), key=keys.__getitem__)
    out: list[Moment | None] = [None] * len(evs)
    for i in order:
        ev = evs[i]
        if ev.customer_id != w.customer_id:
            raise ValueError(
                f"batch mixes customers {w.customer_id!r} and {ev.customer_id!r}: "
                "apply one customer's events at a time"
            )
        if topics:
            out[i] = _apply(w, ev, p, now_s, sent[i], topics.get(ev.event_id, ()))
        else:
            out[i] = _apply(w, ev, p, now_s, sent[i])
    return _close(w, p), out


def explanation(state: CustomerState, model: ExperienceModel) -> list[tuple[KeyMoment, float]]:
    """The moments that account for a state's score most, as of its watermark, each with
    its contribution (``explain.listed``, on the model's half-life and
    ``score.explanation_size``): what a score update lists and the rules name."""
    p = _Params.of(model)
    weights = score.episode_weights(state.episodes, state.watermark, p.half_life_s)
    return _listed(state, p, weights)


def _listed(
    state: CustomerState, p: _Params, weights: list[float]
) -> list[tuple[KeyMoment, float]]:
    return explain.listed(
        state.folded,
        state.episodes,
        state.key_moments,
        state.watermark,
        p.half_life_s,
        p.explanation_size,
        weights,
    )


def score_update(state: CustomerState, model: ExperienceModel) -> ScoreUpdate:
    """The ScoreUpdate row/message for a state (pure read): its score and confidence, and
    what follows from the state and the model as of its watermark, worked out here and
    not kept in the state: the sub-scores (``score.sub_scores``, the last NPS answer on
    the relationship factor) and the explanation (``explanation``), on the episodes'
    decay weights worked out once for both.

    The explanation lists the moments with a contribution, largest first (at most the
    model's ``explanation_size``); ``explanation_rest`` is what every other moment
    accounts for, so that the listed contributions and the rest sum to ``score - 50``
    (``cxpulse.streams.core.explain``). Contributions are given in hundredths of a
    point: a moment whose contribution rounds to 0 there is left in the rest, never
    listed as contributing 0.
    """
    p = _Params.of(model)
    weights = score.episode_weights(state.episodes, state.watermark, p.half_life_s)
    factor_scores, channel_scores = score.sub_scores(
        state.folded,
        state.episodes,
        state.watermark,
        p.half_life_s,
        weights,
        _relationship(state, p),
    )
    listed: list[KeyMoment] = []
    contributions: list[float] = []
    for k, contribution in _listed(state, p, weights):
        c = rounded(contribution, 2)
        if c != 0:
            listed.append(k)
            contributions.append(c)
    return ScoreUpdate(
        customer_id=state.customer_id,
        version=state.version,
        as_of=datetime.fromtimestamp(state.watermark, UTC),
        score=state.score,
        factor_scores=factor_scores,
        channel_scores=channel_scores,
        confidence=state.confidence,
        episodes=state.episode_count,
        tier=state.tier,
        segment=state.segment,
        explanation=[
            Explanation(
                event_id=msgspec.convert(k.event_id, UUID),  # thrice as fast as UUID(hex=)
                occurred_at=datetime.fromtimestamp(k.t, UTC),
                touchpoint=k.touchpoint,
                channel=k.channel,
                factor=k.factor,
                impact=rounded(k.impact, 2),
                contribution=c,
            )
            for k, c in zip(listed, contributions)  # noqa: B905 (made together, equal lengths)
        ],
        explanation_rest=rounded(state.score - 50.0 - sum(contributions), 2),
        nps=state.nps,
        nps_at=datetime.fromtimestamp(state.nps_t, UTC) if state.nps is not None else None,
    )
