"""The experience model: every number of cx-model.md's scoring, as validated configuration.

Importance differs by industry and segment and expectations differ by tier, so none of it
is code. A CX team edits ``streams/default_model.yaml`` (or its own copy); this module
checks it once at load and turns every mistake into ONE line that names the key and says
how to fix it, because the person reading it is an analyst editing YAML, not a Python
developer reading a traceback.

The six factors themselves are fixed (they are the CEM model's vocabulary, and the
ClickHouse columns are derived from them); their weights are not.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from cxpulse.schemas.vocabulary import (
    CHANNELS,
    FACTORS,
    RULES,
    TIERS,
    CaseKind,
    Channel,
    EffortMetric,
    Factor,
    Severity,
    Tier,
)

NO_TIER = "none"
DEFAULT_SEGMENT = "default"

# Which detail fields measure effort on each channel. Written out (not derived) so that a
# new field in the event contract is a deliberate scoring decision; a unit test keeps this
# table in step with schemas/events.py.
EFFORT_METRICS: dict[str, tuple[str, ...]] = {
    "web": ("latency_ms", "steps"),
    "app": ("latency_ms", "steps"),
    "call_center": ("wait_seconds", "handle_seconds", "transfers", "ivr_steps"),
    "store": ("queue_seconds", "service_seconds"),
    "atm": ("response_ms",),
}
ALL_METRICS: tuple[str, ...] = tuple(sorted({m for ms in EFFORT_METRICS.values() for m in ms}))


class ModelError(ValueError):
    """A bad experience model: the message is one line, ``model error: <key>: <what>: <fix>``."""


def _importance(v: int) -> int:
    if v > 10:
        raise ValueError(f"{v} is above 10: use 1..10")
    if v < 1:
        raise ValueError(f"{v} is below 1: use 1..10 (leave a factor at 1 if it barely matters)")
    return v


def _level(v: float) -> float:
    if not 0 <= v <= 10:
        raise ValueError(f"{v} is outside 0..10: readings and expectations live on 0..10")
    return v


Importance = Annotated[int, AfterValidator(_importance)]
Level = Annotated[float, AfterValidator(_level)]
PositiveFloat = Annotated[float, Field(gt=0)]
SegmentName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.-]+$", max_length=64)]
TouchpointName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$", max_length=64)
]


class _Strict(BaseModel):
    """Unknown keys are errors: a misspelt key would otherwise silently keep its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _FactorTable(_Strict):
    """One number per factor; all six are required so nothing is left to an implicit default."""

    def as_dict(self) -> dict[str, float]:
        return {f: float(getattr(self, f)) for f in FACTORS}


class Importances(_FactorTable):
    """Importance 1..10 of each factor for one segment."""

    product: Importance
    service: Importance
    relationship: Importance
    convenience: Importance
    brand: Importance
    price: Importance


class Expectations(_FactorTable):
    """What a customer of one tier expects from each factor, on the reading scale 0..10:
    the reading of a moment that went as expected (a routine success at the expected
    effort, a CSAT 4), so such a moment's gap is 0 in every tier. ``effort`` is the share
    of each touchpoint's expected effort this tier expects (0.75: a quarter shorter
    waits), which is how a tier promised short waits expects short waits."""

    product: Level
    service: Level
    relationship: Level
    convenience: Level
    brand: Level
    price: Level
    effort: Annotated[float, Field(gt=0, le=4)] = 1.0


class FactorsSection(_Strict):
    """``factors.importance.<segment>``: must include ``default`` for unknown segments."""

    importance: dict[SegmentName, Importances]

    @model_validator(mode="after")
    def _has_default(self) -> FactorsSection:
        if DEFAULT_SEGMENT not in self.importance:
            raise ValueError(
                "importance.default: missing: add a 'default' segment, used when an event's "
                "segment is unknown"
            )
        return self


class TierExpectations(_Strict):
    """``expectations.<A|B|C|none>``: tier A expects more, so the same moment hurts more."""

    A: Expectations
    B: Expectations
    C: Expectations
    none: Expectations


class Outcomes(_Strict):
    """The need level: was it done at all. Each value is the most a moment with that
    outcome can read; the need reading itself is that value or the tier's expectation,
    whichever is lower, so a success (10) reads "as expected" and only delight lifts it
    higher, while a failure (0) stays 0 however friendly the survey."""

    success: Level = 10.0
    abandoned: Level = 3.0
    failure: Level = 0.0


class Scale(_Strict):
    """A raw answer on 0..10: ``zero`` reads 0, ``ten`` reads 10, and ``expected`` (one
    answer, or ``[low, high]``: NPS's passives 7 and 8) reads the tier's expectation, so
    it is a gap of 0; in between, linear. Without ``expected``, linear from ``zero`` to
    ``ten`` (the key-driver analysis reads answers that way).

    CES is 1 = effortless, so its scale is written ``{zero: 7, ten: 1, expected: 2}``.
    """

    zero: float
    ten: float
    expected: float | tuple[float, float] | None = None

    @model_validator(mode="after")
    def _distinct(self) -> Scale:
        if self.zero == self.ten:
            raise ValueError(f"zero and ten are both {self.zero}: give two different values")
        lo, hi = min(self.zero, self.ten), max(self.zero, self.ten)
        for v in self.expected_range():
            if not lo < v < hi:
                raise ValueError(
                    f"expected: {v} is not strictly between {self.zero} and {self.ten}: "
                    "give the answer that means 'as expected'"
                )
        return self

    def expected_range(self) -> tuple[float, ...]:
        e = self.expected
        if e is None:
            return ()
        return (float(e), float(e)) if isinstance(e, (int, float)) else (float(e[0]), float(e[1]))


class Delight(_Strict):
    """The delight level: survey answers about the moment and text sentiment. NPS is not
    one of them: it asks about loyalty, not the moment (``readings.nps``)."""

    csat: Scale = Scale(zero=1, ten=5, expected=4)
    ces: Scale = Scale(zero=7, ten=1, expected=2)
    sentiment: Scale = Scale(zero=-1, ten=1, expected=(-0.05, 0.05))

    @model_validator(mode="before")
    @classmethod
    def _nps_moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "nps" in data:
            raise ValueError(
                "nps: NPS is no longer a delight reading of the moment (it asks about "
                "loyalty): move it to readings.nps, with expected: [7, 8]"
            )
        return data


class LevelWeights(_Strict):
    """How the three levels of one factor's readings are averaged (need still caps them)."""

    need: Annotated[float, Field(ge=0)] = 1.0
    ease: Annotated[float, Field(ge=0)] = 1.0
    delight: Annotated[float, Field(ge=0)] = 2.0

    @model_validator(mode="after")
    def _need_counts(self) -> LevelWeights:
        if self.need <= 0:
            raise ValueError("need is 0: give need a positive weight (it is always present)")
        return self


class ReadingsSection(_Strict):
    outcomes: Outcomes = Outcomes()
    effort_k: Annotated[float, Field(gt=1)] = 4.0
    delight: Delight = Delight()
    level_weights: LevelWeights = LevelWeights()
    #: NPS as the customer's relationship signal: its reading on the relationship factor
    nps: Scale = Scale(zero=0, ten=10, expected=(7, 8))

    def answer_scale(self, answer: str) -> Scale:
        """The scale of a survey answer by name (``csat``, ``ces``, ``nps``)."""
        return self.nps if answer == "nps" else getattr(self.delight, answer)


class EffortSpec(_Strict):
    """One effort metric of a touchpoint: the reading is 10 while value <= expected, then
    falls linearly to 0 at k x expected."""

    metric: EffortMetric
    expected: PositiveFloat
    k: Annotated[float, Field(gt=1)] | None = None
    factors: list[Factor] | None = None


class TouchpointSpec(_Strict):
    """The factors a touchpoint type touches and the effort it is measured by."""

    channel: Channel
    factors: Annotated[list[Factor], Field(min_length=1)]
    effort: list[EffortSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> TouchpointSpec:
        twice = sorted({f for f in self.factors if self.factors.count(f) > 1})
        if twice:
            raise ValueError(f"factors: {', '.join(twice)} listed twice: list each factor once")
        for i, e in enumerate(self.effort):
            if e.metric not in EFFORT_METRICS[self.channel]:
                raise ValueError(
                    f"effort.{i}.metric: {e.metric} is not measured on {self.channel}: use one "
                    f"of {', '.join(EFFORT_METRICS[self.channel])}"
                )
            for f in e.factors or ():
                if f not in self.factors:
                    raise ValueError(
                        f"effort.{i}.factors: {f} is not one of this touchpoint's factors: add "
                        "it to factors or remove it here"
                    )
        return self


class ChannelDefaults(_Strict):
    """How an unknown touchpoint type is scored: by its channel's defaults, so it still counts.

    An upstream team shipping a new screen should not make its customers' moments vanish
    while the model catches up; ``Moment.fallback`` marks such moments so they are visible.
    """

    web: TouchpointSpec
    app: TouchpointSpec
    call_center: TouchpointSpec
    store: TouchpointSpec
    atm: TouchpointSpec

    @model_validator(mode="after")
    def _own_channel(self) -> ChannelDefaults:
        for ch in CHANNELS:
            spec: TouchpointSpec = getattr(self, ch)
            if spec.channel != ch:
                raise ValueError(f"{ch}.channel: is {spec.channel}: set it to {ch}")
        return self


class EpisodesSection(_Strict):
    gap_minutes: Annotated[float, Field(gt=0, le=1440)] = 30.0
    journey_gap_hours: Annotated[float, Field(gt=0, le=720)] = 24.0
    allowed_lateness_hours: Annotated[float, Field(ge=0, le=720)] = 48.0
    max_open: Annotated[int, Field(ge=1, le=256)] = 16


class ConfidenceSection(_Strict):
    """confidence = n / (n + half_at), n the decay-weighted episode count."""

    half_at_episodes: PositiveFloat = 3.0


class ScoreSection(_Strict):
    half_life_days: Annotated[float, Field(gt=0, le=3650)] = 14.0
    explanation_size: Annotated[int, Field(ge=1, le=20)] = 5
    #: how many episodes of evidence the last NPS answer weighs in the relationship
    #: sub-score (decayed by its age like an episode); 0 leaves NPS out of it
    nps_weight: Annotated[float, Field(ge=0, le=100)] = 1.0
    confidence: ConfidenceSection = ConfidenceSection()
    max_clock_skew_minutes: Annotated[float, Field(ge=0, le=1440)] = 5.0


class StateSection(_Strict):
    """Bounds on the per-customer state: it is a changelog record written on every update.

    The counting rules each keep their own bounded memory (``cxpulse.streams.core.trail``), for
    as long as their window plus the allowed lateness: ``failures_max`` failures
    (repeated_failure), ``contacts_max`` call-center contacts (repeat_contact) and
    ``intents_max`` intents with their tries per channel (channel_hopping). A cap may not
    be smaller than what its rule counts (checked at load).
    """

    seen_ids_max: Annotated[int, Field(ge=8, le=4096)] = 128
    failures_max: Annotated[int, Field(ge=2, le=256)] = 8
    contacts_max: Annotated[int, Field(ge=2, le=256)] = 8
    intents_max: Annotated[int, Field(ge=1, le=256)] = 8

    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, data: Any) -> Any:
        for key in ("trail_max", "trail_hours"):
            if isinstance(data, dict) and key in data:
                raise ValueError(
                    f"{key}: no longer used (each rule keeps its own memory, for its window "
                    "plus the allowed lateness): remove it; the caps are failures_max, "
                    "contacts_max and intents_max"
                )
        return data


Hours = Annotated[float, Field(gt=0, le=2160)]


class _Rule(_Strict):
    """What every alert rule has: on/off, a base severity, and the magnitude from which the
    severity is raised one level (tier A raises it one level too)."""

    enabled: bool = True
    severity: Severity = "warning"


class LowScoreRule(_Rule):
    """Fires when the score crosses below ``below``; re-arms only above ``rearm_above``, so
    a customer hovering around the line is not alerted on every moment (hysteresis).

    ``min_episodes``: the score must rest on at least this many episodes. cx-model.md is
    silent on new customers; one bad first moment puts anyone's score far below the line
    (a first failure scores 5 / 10 / 13.8 for tiers A / B / C), which is one moment, not a
    low experience score, and would flood operations with a "critical" per new customer.
    The moment itself still alerts when it is notable on its own (repeated_failure,
    detractor). Until then the rule stays armed.
    """

    below: Annotated[float, Field(gt=0, lt=100)] = 35.0
    rearm_above: Annotated[float, Field(gt=0, lt=100)] = 45.0
    escalate_at: Annotated[float, Field(gt=0, le=100)] = 10.0  # points below ``below``
    min_episodes: Annotated[int, Field(ge=1, le=100)] = 2

    @model_validator(mode="after")
    def _hysteresis(self) -> LowScoreRule:
        if self.rearm_above <= self.below:
            raise ValueError(
                f"rearm_above: {self.rearm_above:g} is not above below ({self.below:g}): "
                "re-arm above the firing line, or every wobble fires again"
            )
        return self


class SharpDropRule(_Rule):
    """Fires when the score is ``drop`` points or more below its highest of the window.

    The window is at most 24 h: that is all the state's ``score_trail`` remembers. The
    highest is taken from scores the customer actually had after at least two moments: a
    first moment's score is the neutral 50 moved by that one moment, and a fall from it
    is the second moment, not a drop in an experience.
    """

    drop: Annotated[float, Field(gt=0, le=100)] = 15.0
    window_hours: Annotated[float, Field(gt=0, le=24)] = 24.0
    escalate_at: Annotated[float, Field(gt=0, le=100)] = 25.0  # points


class RepeatedFailureRule(_Rule):
    """``count`` failures of one touchpoint type within ``window_minutes``."""

    count: Annotated[int, Field(ge=2, le=16)] = 3
    window_minutes: Annotated[float, Field(gt=0, le=10080)] = 30.0
    escalate_at: Annotated[int, Field(ge=2, le=100)] = 5  # failures in the window


class RepeatContactRule(_Rule):
    """``count`` call-center contacts within ``window_days``, or ``same_intent_count`` of
    them about the same intent (the first call did not resolve it)."""

    severity: Severity = "info"
    count: Annotated[int, Field(ge=2, le=16)] = 3
    same_intent_count: Annotated[int, Field(ge=2, le=16)] = 2
    window_days: Annotated[float, Field(gt=0, le=90)] = 7.0
    escalate_at: Annotated[int, Field(ge=2, le=100)] = 5  # contacts in the window


class ChannelHoppingRule(_Rule):
    """One intent tried on ``channels`` or more channels within ``window_hours`` with no
    successful outcome for it: the customer is looking for a way that works."""

    channels: Annotated[int, Field(ge=2, le=7)] = 3
    window_hours: Annotated[float, Field(gt=0, le=2160)] = 72.0
    escalate_at: Annotated[int, Field(ge=2, le=7)] = 4  # channels


class DetractorRule(_Rule):
    """The customer said so: NPS, CSAT or the sentiment of their words at or below a line.

    Magnitude is how bad on the 0..10 reading scale (10 − the worst of NPS, CSAT mapped
    to 0..10, and 5 + 5·sentiment), so NPS 0 is 10 and NPS 6 is 4.
    """

    severity: Severity = "info"
    nps_at_most: Annotated[int, Field(ge=0, le=10)] = 6
    csat_at_most: Annotated[int, Field(ge=1, le=5)] = 2
    sentiment_at_most: Annotated[float, Field(ge=-1, le=1)] = -0.5
    escalate_at: Annotated[float, Field(gt=0, le=10)] = 8.0


class TierActions(_Strict):
    """How soon and how to reach out, by tier: the first half of every recommended action."""

    A: Annotated[str, StringConstraints(min_length=1, max_length=120)] = (
        "service recovery call within the hour"
    )
    B: Annotated[str, StringConstraints(min_length=1, max_length=120)] = "call back today"
    C: Annotated[str, StringConstraints(min_length=1, max_length=120)] = (
        "follow up within two working days"
    )
    none: Annotated[str, StringConstraints(min_length=1, max_length=120)] = "call back today"


Label = Annotated[str, StringConstraints(min_length=1, max_length=60)]


class AlertsSection(_Strict):
    """The customer alert rules of cx-model.md ("Early-warning alerts") and their dedup.

    ``labels``: what a person calls each touchpoint type, so an explanation reads "3 failed
    cash withdrawals at ATM-0042" rather than the code. A singular noun; the plural adds
    -s (-es after s, x, z, ch, sh; -ies after a consonant + y). A type without a label
    uses its longest labelled dotted prefix, else its code.
    """

    cooldown_hours: Hours = 6.0
    max_event_ids: Annotated[int, Field(ge=1, le=50)] = 10
    actions: TierActions = TierActions()
    labels: dict[TouchpointName, Label] = Field(default_factory=dict)
    low_score: LowScoreRule = LowScoreRule()
    sharp_drop: SharpDropRule = SharpDropRule()
    repeated_failure: RepeatedFailureRule = RepeatedFailureRule()
    repeat_contact: RepeatContactRule = RepeatContactRule()
    channel_hopping: ChannelHoppingRule = ChannelHoppingRule()
    detractor: DetractorRule = DetractorRule()

    def rule(self, name: str) -> _Rule:
        """The section of the customer rule called ``name`` (``alerts.<name>``)."""
        section: _Rule = getattr(self, name)
        return section


# The rules' names are written once, in cxpulse.schemas.vocabulary (RULES); each customer rule has
# its section above, in the vocabulary's order, and touchpoint_degraded is ``health``.
_SECTIONS = tuple(
    name
    for name, f in AlertsSection.model_fields.items()
    if isinstance(f.annotation, type) and issubclass(f.annotation, _Rule)
)
if (*_SECTIONS, "touchpoint_degraded") != RULES:
    raise RuntimeError(
        f"alerts sections {_SECTIONS} + touchpoint_degraded are not the vocabulary's rules "
        f"{RULES}: give each rule of schemas/vocabulary.py its section in AlertsSection"
    )


class HealthSection(_Strict):
    """touchpoint_degraded: an instance failing far more than its own baseline, with volume.

    The baseline is the instance's failure rate over ``baseline_hours`` outside the short
    window, smoothed toward ``prior_failure_rate`` as if ``prior_attempts`` attempts had
    been seen at that rate, so a new instance has a baseline from its first minute.
    ``min_failing_customers``: the failures of the short window must come from at least
    that many different customers, so one customer retrying a card the machine rightly
    refuses is not an incident.
    """

    enabled: bool = True
    severity: Severity = "warning"
    bucket_minutes: Annotated[int, Field(ge=1, le=60)] = 5
    short_window_minutes: Annotated[int, Field(ge=1, le=240)] = 15
    baseline_hours: Annotated[int, Field(ge=1, le=168)] = 24
    min_attempts: Annotated[int, Field(ge=1, le=100_000)] = 10
    min_failure_rate: Annotated[float, Field(gt=0, le=1)] = 0.25
    min_failing_customers: Annotated[int, Field(ge=1, le=100)] = 3
    ratio: Annotated[float, Field(ge=1, le=1000)] = 3.0
    prior_failure_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    prior_attempts: Annotated[float, Field(ge=0, le=100_000)] = 20.0
    escalate_at: Annotated[float, Field(gt=0, le=1)] = 0.6  # failure rate
    cooldown_hours: Hours = 6.0
    allowed_lateness_minutes: Annotated[float, Field(ge=0, le=1440)] = 30.0
    seen_ids_max: Annotated[int, Field(ge=8, le=4096)] = 256

    @model_validator(mode="after")
    def _windows(self) -> HealthSection:
        if self.short_window_minutes % self.bucket_minutes:
            raise ValueError(
                f"short_window_minutes: {self.short_window_minutes} is not a multiple of "
                f"bucket_minutes ({self.bucket_minutes}): make it one"
            )
        if self.short_window_minutes >= self.baseline_hours * 60:
            raise ValueError(
                f"short_window_minutes: {self.short_window_minutes} is not shorter than "
                f"baseline_hours ({self.baseline_hours} h): shorten it"
            )
        return self


TopicName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]


class FeedbackTopic(_Strict):
    """One topic of feedback text: the factor it speaks of and the phrases that name it.

    ``en``: lower-case words or word beginnings, matched at the start of a word ("fee"
    finds "fees"; "on hold" finds "on hold"). ``zh``: Chinese phrases, matched anywhere in
    the text (Chinese has no spaces). A text names every topic one of whose phrases it
    holds; negation does not remove a topic ("never had an error with the app" is about
    app errors), it turns the topic's aspect sentiment.
    """

    factor: Factor
    en: list[Phrase] = Field(default_factory=list)
    zh: list[Phrase] = Field(default_factory=list)

    @model_validator(mode="after")
    def _phrases(self) -> FeedbackTopic:
        if not self.en and not self.zh:
            raise ValueError("en: no phrase in en or zh: give at least one")
        upper = [p for p in self.en if p != p.lower()]
        if upper:
            raise ValueError(f"en: {upper[0]!r} has capitals: write it in lower case")
        return self


class FeedbackSection(_Strict):
    """Voice of the customer: the topics feedback text is tagged with (``moments.topics``)
    and the aspect sentiment of each. An empty ``topics`` tags nothing."""

    topics: dict[TopicName, FeedbackTopic] = Field(default_factory=dict)


#: A service level: a number and a unit, m (minutes), h (hours), d (calendar days) or
#: wd (working days, Monday to Friday): "1h", "30m", "5wd".
SERVICE_LEVEL_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(m|h|d|wd)\s*$"
ServiceLevel = Annotated[str, StringConstraints(pattern=SERVICE_LEVEL_PATTERN)]
Team = Annotated[str, StringConstraints(min_length=1, max_length=120)]


class SeverityLevels(_Strict):
    """How long a case of one tier may stay unacknowledged, by severity."""

    critical: ServiceLevel
    warning: ServiceLevel
    info: ServiceLevel


class ServiceLevels(_Strict):
    """The service level by tier (``none``: incidents and customers without a tier)."""

    A: SeverityLevels = SeverityLevels(critical="1h", warning="4h", info="1wd")
    B: SeverityLevels = SeverityLevels(critical="4h", warning="1wd", info="2wd")
    C: SeverityLevels = SeverityLevels(critical="1wd", warning="2wd", info="5wd")
    none: SeverityLevels = SeverityLevels(critical="1h", warning="4h", info="1wd")


class CaseRoute(_Strict):
    """A routing rule: a case matching every condition given goes to ``team``."""

    team: Team
    kind: CaseKind | None = None
    rule: str | None = None
    tier: Tier | None = None
    channel: Channel | None = None


class CasesSection(_Strict):
    """Cases (docs/cases.md): who owns a case, by when it must be acknowledged, and when
    an untouched case expires. ``routing`` is read in order, the first rule whose
    conditions all match names the owner; none matching: ``default_team``.
    ``forget_after_days``: a closed case leaves the workers (their table, the compacted
    cx.cases topic, the API) that long after it closed; ClickHouse keeps it.
    ``enabled: false``: no case is opened (the worker registers no cases agent, table or
    timer, and the API's cases routes answer 404 saying so); alerts are unchanged."""

    enabled: bool = True
    default_team: Team = "customer-care"
    routing: list[CaseRoute] = Field(
        default_factory=lambda: [
            CaseRoute(team="incident-response", kind="incident"),
            CaseRoute(team="private-banking", tier="A"),
            CaseRoute(team="contact-center", channel="call_center"),
            CaseRoute(team="digital-care", channel="web"),
            CaseRoute(team="digital-care", channel="app"),
        ]
    )
    service_levels: ServiceLevels = ServiceLevels()
    expire_after_days: Annotated[float, Field(gt=0, le=365)] = 14.0
    forget_after_days: Annotated[float, Field(gt=0, le=3650)] = 30.0
    max_event_ids: Annotated[int, Field(ge=1, le=50)] = 50


class ExperienceModel(_Strict):
    """The whole experience model (cx-model.md), loaded from YAML by
    ``cxpulse.streams.model_check``."""

    version: Literal[1] = 1
    factors: FactorsSection
    expectations: TierExpectations
    readings: ReadingsSection = ReadingsSection()
    touchpoints: dict[TouchpointName, TouchpointSpec]
    channels: ChannelDefaults
    episodes: EpisodesSection = EpisodesSection()
    score: ScoreSection = ScoreSection()
    state: StateSection = StateSection()
    alerts: AlertsSection = AlertsSection()
    health: HealthSection = HealthSection()
    feedback: FeedbackSection = FeedbackSection()
    cases: CasesSection = CasesSection()

    @model_validator(mode="after")
    def _alert_memory_holds_what_rules_count(self) -> ExperienceModel:
        """A rule whose memory is capped below what it counts could never fire (or never
        escalate): say so at load, naming the cap."""
        s, a = self.state, self.alerts
        rf, rc = a.repeated_failure, a.repeat_contact
        for key, cap, needs in (
            (
                "failures_max",
                s.failures_max,
                (
                    ("repeated_failure.count", rf.count),
                    ("repeated_failure.escalate_at", rf.escalate_at),
                ),
            ),
            (
                "contacts_max",
                s.contacts_max,
                (
                    ("repeat_contact.count", rc.count),
                    ("repeat_contact.same_intent_count", rc.same_intent_count),
                    ("repeat_contact.escalate_at", rc.escalate_at),
                ),
            ),
        ):
            for rule_key, need in needs:
                if cap < need:
                    raise ValueError(
                        f"state.{key}: {cap} is smaller than alerts.{rule_key} ({need}): "
                        f"raise state.{key} to at least {need}"
                    )
        unknown = sorted(k for k in a.labels if k not in self.touchpoints)
        if unknown:
            raise ValueError(
                f"alerts.labels.{unknown[0]}: not a touchpoint of this model: fix its "
                "spelling or add the touchpoint"
            )
        return self

    # Pre-digested lookups: the core calls these per event, so they are plain dicts.
    @cached_property
    def _importance(self) -> dict[str, dict[str, float]]:
        return {seg: imp.as_dict() for seg, imp in self.factors.importance.items()}

    @cached_property
    def _expectations(self) -> dict[str, dict[str, float]]:
        return {t: getattr(self.expectations, t).as_dict() for t in (*TIERS, NO_TIER)}

    def importance_for(self, segment: str | None) -> dict[str, float]:
        """Importance of the segment, or of ``default`` when the segment is unknown."""
        imp = self._importance
        return imp.get(segment or DEFAULT_SEGMENT) or imp[DEFAULT_SEGMENT]

    def expectations_for(self, tier: str | None) -> dict[str, float]:
        return self._expectations[tier or NO_TIER]

    @cached_property
    def _effort(self) -> dict[str, float]:
        return {t: getattr(self.expectations, t).effort for t in (*TIERS, NO_TIER)}

    def effort_for(self, tier: str | None) -> float:
        """The share of each touchpoint's expected effort the tier expects."""
        return self._effort[tier or NO_TIER]

    def touchpoint_spec(self, touchpoint: str, channel: str) -> tuple[TouchpointSpec, bool]:
        """The spec of a touchpoint type: exact, else its longest configured dotted prefix
        (``atm.withdrawal.cardless`` -> ``atm.withdrawal``), else the channel's defaults.

        Returns ``(spec, fallback)`` where fallback is True for the channel defaults.
        """
        found = self.touchpoints.get(touchpoint)
        if found is not None:
            return found, False
        name = touchpoint
        while "." in name:
            name = name.rsplit(".", 1)[0]
            found = self.touchpoints.get(name)
            if found is not None:
                return found, False
        return getattr(self.channels, channel), True


# --- one-line errors -------------------------------------------------------------------


def _loc(parts: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in parts if p != "[key]")


def format_validation_error(err: ValidationError) -> str:
    """The first error of a pydantic ValidationError as ``<key>: <what>: <fix>``.

    Only the first: one fix at a time is what a person editing a file can act on.
    """
    e = err.errors(include_url=False)[0]
    loc, typ, inp, ctx = e["loc"], e["type"], e.get("input"), e.get("ctx") or {}
    key = _loc(loc)
    if loc and loc[-1] == "[key]":
        return f"{key}: {inp!r} is not a valid name: use lower-case letters, digits, _ . -"
    if typ == "value_error":
        msg = str(ctx.get("error", e["msg"]))
        # Validators that check a sub-key say so as "sub.key: ...": fold it into the key.
        head, sep, rest = msg.partition(": ")
        if sep and " " not in head and head and not head[0].isdigit():
            return f"{key}.{head}: {rest}" if key else f"{head}: {rest}"
        return f"{key}: {msg}"
    if typ == "missing":
        return f"{key}: missing: add it"
    if typ == "extra_forbidden":
        return f"{key}: unknown key: remove it or fix its spelling"
    if typ == "literal_error":
        return f"{key}: {inp!r} is not allowed: use one of {ctx.get('expected', '')}"
    if typ in ("greater_than", "greater_than_equal"):
        bound = ctx.get("gt", ctx.get("ge"))
        op = ">" if typ == "greater_than" else ">="
        return f"{key}: {inp} is too small: use a value {op} {bound}"
    if typ in ("less_than", "less_than_equal"):
        bound = ctx.get("lt", ctx.get("le"))
        op = "<" if typ == "less_than" else "<="
        return f"{key}: {inp} is too large: use a value {op} {bound}"
    if typ.endswith("_parsing") or typ.endswith("_type"):
        want = {
            "dict": "a mapping (key: value)",
            "model": "a mapping (key: value)",
            "int": "an integer",
            "float": "a number",
            "list": "a list",
            "string": "a string",
            "bool": "true or false",
        }.get(typ.split("_")[0], typ.split("_")[0])
        return f"{key}: {inp!r} is not {want}: write {want}"
    if typ == "too_short":
        return f"{key}: is empty: give at least {ctx.get('min_length', 1)}"
    if typ == "string_pattern_mismatch":
        return f"{key}: {inp!r} is not a valid name: use lower-case letters, digits, _ . -"
    return f"{key}: {e['msg']}"


def parse_model(data: Any) -> ExperienceModel:
    """Validate a parsed YAML/JSON document; raise ModelError with a one-line message."""
    if not isinstance(data, dict):
        raise ModelError(
            "model error: <top>: the file is not a mapping: start with keys like factors:"
        )
    try:
        return ExperienceModel.model_validate(data)
    except ValidationError as err:
        raise ModelError(f"model error: {format_validation_error(err)}") from None
