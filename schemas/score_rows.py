"""ClickHouse rows for experience scoring: moments, their factors, scores, and BI views.

Per-factor numbers are stored long (one ``moment_factors`` row per factor a moment
touched) rather than as maps or arrays: every ClickHouse version (18.16 included) and
every BI tool groups a plain long table without special functions, and "key experiences
by factor, segment and tier" becomes a plain GROUP BY.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from pydantic import AwareDatetime

from cxpulse.schemas.rows import (
    _LC,
    _TS,
    Column,
    Columns,
    TableSpec,
    ViewSpec,
    _Row,
    columns_of,
    id_text,
    to_millis,
)
from cxpulse.schemas.scoring import Explanation, Moment, ScoreUpdate
from cxpulse.schemas.vocabulary import CHANNELS as _CHANNELS
from cxpulse.schemas.vocabulary import FACTORS

_SCORE = "Float32"


class MomentRow(_Row):
    """One event as an experience reading: the point on the customer's emotion map."""

    event_id: Annotated[uuid.UUID, Column("UUID", "The event's id: the deduplication key.")]
    occurred_at: Annotated[AwareDatetime, Column(_TS, "When it happened (event time, UTC).")]
    customer_id: Annotated[str, Column("String", "The customer.")]
    channel: Annotated[str, Column(_LC, "web, app, call_center, store or atm.")]
    touchpoint: Annotated[str, Column(_LC, "Touchpoint type, e.g. atm.withdrawal.")]
    touchpoint_instance: Annotated[str, Column("String", "Instance, e.g. ATM-0042; '' if none.")]
    journey_stage: Annotated[str, Column(_LC, "pre_purchase, purchase or post_purchase.")]
    journey_id: Annotated[str, Column("String", "Journey id from the event; '' if none.")]
    intent: Annotated[str, Column(_LC, "What the customer wanted, e.g. card_replacement.")]
    outcome: Annotated[str, Column(_LC, "success, failure or abandoned.")]
    episode_id: Annotated[str, Column("String", "The episode (peak-end unit) it belongs to.")]
    valence: Annotated[
        float, Column(_SCORE, "Σ importance·gap / Σ importance, in [-10, 10]: how it felt.")
    ]
    key_factor: Annotated[str, Column(_LC, "The factor with the largest absolute impact.")]
    tier: Annotated[str, Column(_LC, "Value tier A/B/C; '' if unknown.")]
    segment: Annotated[str, Column(_LC, "Customer segment; '' if unknown.")]
    sentiment: Annotated[
        float | None, Column("Nullable(Float32)", "Text sentiment compound -1..1, if text.")
    ]
    late: Annotated[int, Column("UInt8", "1 if older than the allowed lateness (not scored).")]
    fallback: Annotated[
        int, Column("UInt8", "1 if the touchpoint type was unknown and scored by its channel.")
    ]
    score_after: Annotated[float, Column(_SCORE, "The customer's score right after it, 0..100.")]
    scored: Annotated[
        int,
        Column(
            "UInt8",
            "1 - late: the row version, so a scored row is kept over a late replay of it.",
        ),
    ]
    topics: Annotated[
        list[str],
        Column(
            "Array(LowCardinality(String))",
            "Topics its feedback text names (fees, queue, card_blocked, ...: the model "
            "file's feedback.topics); [] if no text or none named.",
        ),
    ]


#: Why ``scored`` is the version: an event replayed after the customer's duplicate window
#: (48 h, or more ids than the state remembers) comes back as a *late* moment of the same
#: event_id. Without a version the last insert would win and the event would drop out of
#: the emotion map (which leaves late moments out); with it, the scored copy always wins,
#: and a genuinely late event (only ever late) is still kept once.
MOMENTS = TableSpec(
    name="moments",
    model=MomentRow,
    order_by=("event_id",),
    partition_by="toYYYYMM(occurred_at)",
    version="scored",
    doc="Every scored event with its valence: the raw data of the emotion map.",
)


class MomentFactorRow(_Row):
    """One factor a moment touched: its reading, gap to expectation and impact."""

    event_id: Annotated[uuid.UUID, Column("UUID", "The moment's event id.")]
    factor: Annotated[
        str, Column(_LC, "product, service, relationship, convenience, brand or price.")
    ]
    occurred_at: Annotated[AwareDatetime, Column(_TS, "When it happened (event time, UTC).")]
    customer_id: Annotated[str, Column("String", "The customer.")]
    channel: Annotated[str, Column(_LC, "The moment's channel.")]
    touchpoint: Annotated[str, Column(_LC, "The moment's touchpoint type.")]
    tier: Annotated[str, Column(_LC, "Value tier A/B/C; '' if unknown.")]
    segment: Annotated[str, Column(_LC, "Customer segment; '' if unknown.")]
    reading: Annotated[float, Column(_SCORE, "Experience reading x_f in [0, 10].")]
    gap: Annotated[float, Column(_SCORE, "x_f minus the tier's expectation for the factor.")]
    impact: Annotated[
        float, Column(_SCORE, "importance × gap: -18 (9 × -2) is a key negative experience.")
    ]


MOMENT_FACTORS = TableSpec(
    name="moment_factors",
    model=MomentFactorRow,
    order_by=("event_id", "factor"),
    partition_by="toYYYYMM(occurred_at)",
    version=None,
    doc="Per-factor readings, gaps and impacts of each moment (long format, for BI).",
)


class ScoreRow(_Row):
    """A customer's experience score after an update (latest, and history)."""

    customer_id: Annotated[str, Column("String", "The customer.")]
    version: Annotated[int, Column("UInt64", "Update counter per customer (higher = newer).")]
    as_of: Annotated[AwareDatetime, Column(_TS, "Event time of the latest moment counted.")]
    score: Annotated[float, Column(_SCORE, "Experience score 0..100 (50 = as expected).")]
    confidence: Annotated[float, Column(_SCORE, "0..1, grows with the number of episodes.")]
    episodes: Annotated[int, Column("UInt32", "Episodes counted so far.")]
    tier: Annotated[str, Column(_LC, "Value tier A/B/C; '' if unknown.")]
    segment: Annotated[str, Column(_LC, "Customer segment; '' if unknown.")]
    score_product: Annotated[float | None, Column("Nullable(Float32)", "Product sub-score.")]
    score_service: Annotated[float | None, Column("Nullable(Float32)", "Service sub-score.")]
    score_relationship: Annotated[
        float | None, Column("Nullable(Float32)", "Relationship sub-score.")
    ]
    score_convenience: Annotated[
        float | None, Column("Nullable(Float32)", "Convenience sub-score.")
    ]
    score_brand: Annotated[float | None, Column("Nullable(Float32)", "Brand sub-score.")]
    score_price: Annotated[float | None, Column("Nullable(Float32)", "Price sub-score.")]
    score_web: Annotated[float | None, Column("Nullable(Float32)", "Web channel sub-score.")]
    score_app: Annotated[float | None, Column("Nullable(Float32)", "App channel sub-score.")]
    score_call_center: Annotated[
        float | None, Column("Nullable(Float32)", "Call-center channel sub-score.")
    ]
    score_store: Annotated[float | None, Column("Nullable(Float32)", "Store channel sub-score.")]
    score_atm: Annotated[float | None, Column("Nullable(Float32)", "ATM channel sub-score.")]
    explanation: Annotated[
        str,
        Column(
            "String",
            "JSON array of the moments that account for the score most, largest first: "
            "event_id, occurred_at, touchpoint, channel, factor, impact, and contribution "
            "(points of score through the moment's episode peak or end and the decay).",
        ),
    ]
    explanation_rest: Annotated[
        float,
        Column(
            "Float32",
            "What the moments not listed account for: the listed contributions plus this "
            "sum to score - 50.",
        ),
    ]
    nps: Annotated[
        int | None,
        Column(
            "Nullable(UInt8)",
            "The customer's last NPS answer 0-10 (their relationship signal: promoter 9-10, "
            "passive 7-8, detractor 0-6); NULL if they never answered.",
        ),
    ]
    nps_at: Annotated[
        AwareDatetime | None,
        Column(f"Nullable({_TS})", "Event time of that answer; NULL if none."),
    ]


CUSTOMER_SCORES = TableSpec(
    name="customer_scores",
    model=ScoreRow,
    order_by=("customer_id",),
    partition_by="tuple()",
    version="version",
    doc="The latest score per customer (read with FINAL): sub-scores and the explanation.",
)

SCORE_HISTORY = TableSpec(
    name="score_history",
    model=ScoreRow,
    order_by=("customer_id", "version"),
    partition_by="toYYYYMM(as_of)",
    version=None,
    doc="Every score update, for trends: one row per (customer_id, version).",
)

EMOTION_MAP = ViewSpec(
    name="emotion_map",
    select=(
        "SELECT journey_stage, touchpoint, channel, count() AS moments, "
        "round(avg(valence), 4) AS mean_valence, "
        "round(toFloat64(min(valence)), 4) AS worst_valence, "
        "countIf(valence < 0) / count() AS negative_share "
        "FROM {db}.moments FINAL WHERE late = 0 "
        "GROUP BY journey_stage, touchpoint, channel"
    ),
    doc="Mean valence by journey stage × touchpoint × channel: the emotion map.",
    columns=(
        *columns_of(MOMENTS, "journey_stage", "touchpoint", "channel"),
        ("moments", "Moments in the cell (late ones left out: they were not scored)."),
        ("mean_valence", "Mean valence, -10..10, to 4 decimals: how this touchpoint feels."),
        ("worst_valence", "The lowest valence of the cell (its worst moment), to 4 decimals."),
        ("negative_share", "Share of moments with a negative valence, 0..1."),
    ),
)

KEY_EXPERIENCES = ViewSpec(
    name="key_experiences",
    select=(
        "SELECT factor, segment, tier, count() AS moments, "
        "round(avg(impact), 4) AS mean_impact, round(avg(gap), 4) AS mean_gap, "
        "countIf(impact <= -15) AS key_negative, "
        "countIf(impact >= 15) AS key_positive "
        "FROM {db}.moment_factors FINAL GROUP BY factor, segment, tier"
    ),
    doc="importance × gap by factor, segment and tier: which factors make or break it.",
    columns=(
        *columns_of(MOMENT_FACTORS, "factor", "segment", "tier"),
        ("moments", "Moments that touched the factor."),
        (
            "mean_impact",
            "Mean importance × gap, to 4 decimals: below 0 the factor lets these customers down.",
        ),
        ("mean_gap", "Mean reading minus the tier's expectation, to 4 decimals."),
        ("key_negative", "Moments with impact <= -15: key negative experiences."),
        ("key_positive", "Moments with impact >= 15: key positive experiences."),
    ),
)

#: What ``cxpulse drivers`` reads (``cxpulse.streams.analysis.drivers``): per customer and
#: factor, the scored moments that carried no answer and no text (a surveyed moment's
#: readings contain the answer), beside the customer's mean CSAT.
FACTOR_DRIVERS = ViewSpec(
    name="factor_drivers",
    select=(
        "SELECT segment, factor, count() AS customers, sum(n) AS moments, "
        "round(sum(reading_sum) / sum(n), 4) AS mean_reading, "
        "round(sum(gap_sum) / sum(n), 4) AS mean_gap, "
        "countIf(answers > 0) AS answering, "
        "round(corrIf(gap_sum / n, mean_csat, answers > 0), 4) AS csat_correlation "
        "FROM (SELECT segment, customer_id, factor, count() AS n, "
        "sum(toFloat64(reading)) AS reading_sum, sum(toFloat64(gap)) AS gap_sum "
        "FROM {db}.moment_factors FINAL "
        "WHERE event_id IN (SELECT event_id FROM {db}.moments FINAL "
        "WHERE late = 0 AND isNull(sentiment)) "
        "AND event_id NOT IN (SELECT event_id FROM {db}.touchpoint_events FINAL "
        "WHERE isNotNull(csat) OR isNotNull(nps) OR isNotNull(ces) OR feedback_text != '') "
        "GROUP BY segment, customer_id, factor) AS touched "
        "ALL LEFT JOIN (SELECT customer_id, count() AS answers, "
        "avg(csat) AS mean_csat FROM {db}.touchpoint_events FINAL "
        "WHERE isNotNull(csat) GROUP BY customer_id) AS said USING customer_id "
        "GROUP BY segment, factor"
    ),
    doc=(
        "Per segment and factor: its performance over the moments without a survey answer, "
        "and how the customers' gaps on it go with their CSAT (cxpulse drivers, "
        "docs/drivers.md, learns importances from the same rows)."
    ),
    columns=(
        *columns_of(MOMENT_FACTORS, "segment", "factor"),
        ("customers", "Customers with scored moments on the factor that carried no answer."),
        ("moments", "Those moments: scored, not late, without a survey answer or text."),
        ("mean_reading", "Their mean reading, 0..10, to 4 decimals."),
        ("mean_gap", "Their mean gap (reading minus expectation), to 4 decimals."),
        ("answering", "Of the customers, those who gave at least one CSAT answer."),
        (
            "csat_correlation",
            "Correlation across answering customers of their mean gap on the factor with "
            "their mean CSAT, to 4 decimals (nan with fewer than two).",
        ),
    ),
)

_CHANNEL_SCORES = " UNION ALL ".join(
    f"SELECT tier, '{c}' AS channel, assumeNotNull(score_{c}) AS s "
    f"FROM {{db}}.customer_scores FINAL WHERE isNotNull(score_{c})"
    for c in _CHANNELS
)

SCORE_DISTRIBUTION = ViewSpec(
    name="score_distribution",
    select=(
        "SELECT tier, channel, intDiv(toUInt32(s), 10) * 10 AS score_band, "
        "count() AS customers, round(avg(s), 4) AS mean_score FROM ("
        "SELECT tier, 'all' AS channel, score AS s FROM {db}.customer_scores FINAL "
        f"UNION ALL {_CHANNEL_SCORES}) GROUP BY tier, channel, score_band"
    ),
    doc="Customers per 10-point score band by tier and channel ('all' = overall score).",
    columns=(
        ("tier", "Value tier A/B/C; '' if unknown."),
        ("channel", "'all' for the overall score, else the channel of the sub-score."),
        ("score_band", "Lower bound of the 10-point band: 0, 10, ... 90, and 100 itself."),
        ("customers", "Customers whose (sub-)score falls in the band."),
        ("mean_score", "Their mean (sub-)score, to 4 decimals."),
    ),
)

TOPIC_SENTIMENT = ViewSpec(
    name="topic_sentiment",
    select=(
        "SELECT topic, touchpoint, channel, count() AS moments, "
        "round(avg(sentiment), 4) AS mean_sentiment, "
        "countIf(sentiment <= -0.05) / count() AS negative_share, "
        "round(avg(valence), 4) AS mean_valence "
        "FROM {db}.moments FINAL ARRAY JOIN topics AS topic WHERE late = 0 "
        "GROUP BY topic, touchpoint, channel"
    ),
    doc="What feedback is about, where: topic × touchpoint × channel with its sentiment.",
    columns=(
        ("topic", "A topic the feedback text names (the model file's feedback.topics)."),
        *columns_of(MOMENTS, "touchpoint", "channel"),
        ("moments", "Moments whose feedback names the topic (late ones left out)."),
        ("mean_sentiment", "Mean sentiment compound of their text, -1..1, to 4 decimals."),
        ("negative_share", "Share of them whose text reads negative (compound <= -0.05)."),
        ("mean_valence", "Mean valence of those moments, -10..10, to 4 decimals."),
    ),
)

_NPS_COUNTS = (
    "count() AS {n}, countIf(answer >= 9) AS promoters, "
    "countIf(answer >= 7 AND answer <= 8) AS passives, countIf(answer <= 6) AS detractors, "
    "round(100 * (toInt64(promoters) - toInt64(detractors)) / {n}, 1) AS nps"
)
_NPS_COLUMNS = (
    ("promoters", "Of them, answers 9 or 10."),
    ("passives", "Of them, answers 7 or 8."),
    ("detractors", "Of them, answers 0 to 6."),
    ("nps", "Net promoter score: % promoters - % detractors, -100..100, to 1 decimal."),
)

NPS_TREND = ViewSpec(
    name="nps_trend",
    select=(
        "SELECT day, tier, segment, channel, touchpoint, "
        + _NPS_COUNTS.format(n="answers")
        + " FROM (SELECT event_id, toDate(occurred_at) AS day, channel, touchpoint, "
        "assumeNotNull(nps) AS answer FROM {db}.touchpoint_events FINAL "
        "WHERE isNotNull(nps)) AS said "
        "ALL INNER JOIN (SELECT event_id, tier, segment FROM {db}.moments FINAL) AS m "
        "USING event_id GROUP BY day, tier, segment, channel, touchpoint"
    ),
    doc=(
        "NPS answers per day by tier, segment, channel and touchpoint they came with: sum "
        "promoters, detractors and answers over any grouping, NPS = 100 × (promoters - "
        "detractors) / answers."
    ),
    columns=(
        ("day", "UTC day of the answers (their event time)."),
        *columns_of(MOMENTS, "tier", "segment", "channel", "touchpoint"),
        ("answers", "NPS answers in the cell."),
        *_NPS_COLUMNS,
    ),
)

RELATIONSHIP_NPS = ViewSpec(
    name="relationship_nps",
    select=(
        "SELECT tier, segment, "
        + _NPS_COUNTS.format(n="customers")
        + " FROM (SELECT tier, segment, assumeNotNull(nps) AS answer "
        "FROM {db}.customer_scores FINAL WHERE isNotNull(nps)) AS last GROUP BY tier, segment"
    ),
    doc=(
        "NPS as loyalty, by tier and segment: each customer counted once, by their last "
        "answer (customer_scores.nps)."
    ),
    columns=(
        *columns_of(CUSTOMER_SCORES, "tier", "segment"),
        ("customers", "Customers who answered NPS at least once."),
        *_NPS_COLUMNS,
    ),
)

SCORE_SPECS: tuple[TableSpec | ViewSpec, ...] = (
    MOMENTS,
    MOMENT_FACTORS,
    CUSTOMER_SCORES,
    SCORE_HISTORY,
    EMOTION_MAP,
    KEY_EXPERIENCES,
    SCORE_DISTRIBUTION,
    TOPIC_SENTIMENT,
    FACTOR_DRIVERS,
    NPS_TREND,
    RELATIONSHIP_NPS,
)


def moment_columns(moments: Sequence[Moment]) -> tuple[Columns, Columns]:
    """The ``moments`` and the ``moment_factors`` columns of these moments: their rows,
    column by column, built straight from the moments (no row tuples on the way to
    Arrow). A factor row repeats its moment's id, time, customer, channel, touchpoint,
    tier and segment: worked out once per moment and repeated by index."""
    ids: list[str] = id_text([m.event_id for m in moments])
    times = [to_millis(m.occurred_at) for m in moments]
    customers = [m.customer_id for m in moments]
    channels = [m.channel for m in moments]
    touchpoints = [m.touchpoint for m in moments]
    tiers = [m.tier or "" for m in moments]
    segments = [m.segment or "" for m in moments]
    late = [int(m.late) for m in moments]
    rows: Columns = [
        ids,
        times,
        customers,
        channels,
        touchpoints,
        [m.touchpoint_instance or "" for m in moments],
        [m.journey_stage for m in moments],
        [m.journey_id or "" for m in moments],
        [m.intent or "" for m in moments],
        [m.outcome for m in moments],
        [m.episode_id for m in moments],
        [m.valence for m in moments],
        [m.key_factor for m in moments],
        tiers,
        segments,
        [m.sentiment for m in moments],
        late,
        [int(m.fallback) for m in moments],
        [m.score_after for m in moments],
        [1 - x for x in late],
        # a tuple each: the column holds nothing the garbage collector tracks
        [m.topics for m in moments],
    ]
    of: list[int] = []  # each factor row's moment
    factors: list[str] = []
    readings: list[float] = []
    gaps: list[float] = []
    impacts: list[float] = []
    for i, m in enumerate(moments):
        gap, impact = m.gaps, m.impacts
        for factor, reading in m.readings.items():
            of.append(i)
            factors.append(factor)
            readings.append(reading)
            gaps.append(gap.get(factor, 0.0))
            impacts.append(impact.get(factor, 0.0))

    def repeated(values: list[Any]) -> list[Any]:
        return [values[i] for i in of]

    factor_rows: Columns = [
        repeated(ids),
        factors,
        repeated(times),
        repeated(customers),
        repeated(channels),
        repeated(touchpoints),
        repeated(tiers),
        repeated(segments),
        readings,
        gaps,
        impacts,
    ]
    return rows, factor_rows


def score_columns(updates: Sequence[ScoreUpdate]) -> Columns:
    """The ``customer_scores`` / ``score_history`` columns of these score updates."""
    return [
        [u.customer_id for u in updates],
        [u.version for u in updates],
        [to_millis(u.as_of) for u in updates],
        [u.score for u in updates],
        [u.confidence for u in updates],
        [u.episodes for u in updates],
        [u.tier or "" for u in updates],
        [u.segment or "" for u in updates],
        *[[u.factor_scores.get(f) for u in updates] for f in FACTORS],
        *[[u.channel_scores.get(c) for u in updates] for c in _CHANNELS],
        [_explanation_json(u.explanation) for u in updates],
        [u.explanation_rest for u in updates],
        [u.nps for u in updates],
        [None if u.nps_at is None else to_millis(u.nps_at) for u in updates],
    ]


def moment_rows(moment: Moment) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """The ``moments`` row and the ``moment_factors`` rows of one moment."""
    rows, factors = moment_columns([moment])
    return next(zip(*rows, strict=True)), list(zip(*factors, strict=True))


def score_row(update: ScoreUpdate) -> tuple[Any, ...]:
    """The ``customer_scores`` / ``score_history`` row of a score update."""
    return next(zip(*score_columns([update]), strict=True))


_explanation_encoder = msgspec.json.Encoder()


def _explanation_json(explanation: list[Explanation]) -> str:
    """The ``explanation`` column: a JSON array of the moments that account for the score
    most (event_id, occurred_at in RFC 3339, touchpoint, channel, factor, impact,
    contribution)."""
    return _explanation_encoder.encode(explanation).decode()


def _check_columns() -> None:
    """Fail at import if the builders above and the models disagree on column count."""
    assert len(ScoreRow.model_fields) == 8 + len(FACTORS) + len(_CHANNELS) + 4
    assert len(MomentRow.model_fields) == 21
    assert len(MomentFactorRow.model_fields) == 11


_check_columns()
