"""ClickHouse rows for cases (docs/cases.md): ``cases`` (the current state of each case),
``case_history`` (every change) and the learning views over them.

``cases`` is ``ReplacingMergeTree(version)`` ordered by ``case_id``: read with ``FINAL``
(the views do) and each case is one row, in its latest version. Every version of a case
has the same ``opened_at``, so they land in the same monthly partition, where
ReplacingMergeTree deduplicates. ``case_history`` keeps one row per (case_id, version): a
replay re-inserts identical rows, which collapse.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import AwareDatetime

from cxpulse.schemas.cases import CaseChange
from cxpulse.schemas.rows import _LC, _TS, Column, TableSpec, ViewSpec, _Row, columns_of, to_millis

_NTS = f"Nullable({_TS})"


class CaseRow(_Row):
    """One case, latest version per ``case_id``."""

    case_id: Annotated[
        uuid.UUID, Column("UUID", "Deterministic id (kind, subject, opening alert): the key.")
    ]
    kind: Annotated[str, Column(_LC, "customer, or incident (a touchpoint instance).")]
    customer_id: Annotated[str, Column("String", "The customer; '' for incidents.")]
    instance: Annotated[str, Column("String", "The touchpoint instance of an incident; ''.")]
    tier: Annotated[str, Column(_LC, "Customer value tier A/B/C; '' if unknown or incident.")]
    score: Annotated[
        float | None, Column("Nullable(Float32)", "The customer's score at the latest alert.")
    ]
    severity: Annotated[str, Column(_LC, "info, warning or critical (raised on escalation).")]
    status: Annotated[str, Column(_LC, "open, acknowledged, resolved or expired.")]
    owner: Annotated[str, Column(_LC, "The team that owns it (routing rules of the model).")]
    rule: Annotated[str, Column(_LC, "Rule of the latest alert.")]
    alert_ids: Annotated[list[str], Column("Array(String)", "The alerts behind the case.")]
    event_ids: Annotated[list[str], Column("Array(String)", "Their events (newest kept).")]
    explanation: Annotated[str, Column("String", "The latest alert's explanation.")]
    recommended_action: Annotated[str, Column("String", "What to do, and when.")]
    opened_at: Annotated[AwareDatetime, Column(_TS, "Event time of the opening alert (UTC).")]
    updated_at: Annotated[AwareDatetime, Column(_TS, "Time of the latest change (UTC).")]
    due_at: Annotated[AwareDatetime, Column(_TS, "Acknowledge by (service level, UTC).")]
    escalated: Annotated[int, Column("UInt8", "1 once it went overdue unacknowledged.")]
    acknowledged_by: Annotated[str, Column("String", "Who acknowledged it; ''.")]
    acknowledged_at: Annotated[
        AwareDatetime | None, Column(_NTS, "When it was acknowledged; NULL if not.")
    ]
    resolved_by: Annotated[str, Column("String", "Who resolved it; ''.")]
    resolved_at: Annotated[AwareDatetime | None, Column(_NTS, "When it was resolved; NULL.")]
    outcome: Annotated[
        str, Column(_LC, "recovered, compensated, unreachable or no_action; '' until resolved.")
    ]
    note: Annotated[str, Column("String", "The resolver's note; ''.")]
    version: Annotated[int, Column("UInt64", "Change counter (the row version: highest wins).")]


CASES = TableSpec(
    name="cases",
    model=CaseRow,
    order_by=("case_id",),
    partition_by="toYYYYMM(opened_at)",
    version="version",
    doc="Cases, one row per case_id in its latest version (read with FINAL).",
)


class CaseHistoryRow(_Row):
    """One change of a case."""

    case_id: Annotated[uuid.UUID, Column("UUID", "The case.")]
    version: Annotated[int, Column("UInt64", "The case's version after the change.")]
    change: Annotated[
        str,
        Column(_LC, "opened, updated, escalated, acknowledged, resolved or expired."),
    ]
    at: Annotated[AwareDatetime, Column(_TS, "When it changed (UTC).")]
    by: Annotated[str, Column("String", "Who changed it: a person, or cxpulse.")]
    alert_id: Annotated[str, Column("String", "The alert that opened or updated it; ''.")]
    status: Annotated[str, Column(_LC, "Status after the change.")]
    severity: Annotated[str, Column(_LC, "Severity after the change.")]
    owner: Annotated[str, Column(_LC, "Owner after the change.")]
    opened_at: Annotated[AwareDatetime, Column(_TS, "When the case opened (the partition).")]


CASE_HISTORY = TableSpec(
    name="case_history",
    model=CaseHistoryRow,
    order_by=("case_id", "version"),
    partition_by="toYYYYMM(opened_at)",
    version=None,
    doc="Every change of every case: one row per (case_id, version).",
)

_MINUTES = "dateDiff('second', opened_at, {col}) / 60"

CASE_TIMES = ViewSpec(
    name="case_times",
    select=(
        "SELECT tier, owner, rule, count() AS cases, "
        "countIf(acknowledged_by != '') AS acknowledged, "
        "countIf(status = 'resolved') AS resolved, "
        "round(avg(escalated), 4) AS overdue_share, "
        "round(avgIf(" + _MINUTES.format(col="assumeNotNull(acknowledged_at)") + ", "
        "acknowledged_by != ''), 1) AS minutes_to_acknowledge, "
        "round(avgIf(" + _MINUTES.format(col="assumeNotNull(resolved_at)") + ", "
        "resolved_by != ''), 1) AS minutes_to_resolve "
        "FROM {db}.cases FINAL GROUP BY tier, owner, rule"
    ),
    doc=(
        "Time to acknowledge and to resolve, and the share that went overdue, by tier, "
        "owner and rule (of the case's latest alert)."
    ),
    columns=(
        *columns_of(CASES, "tier", "owner", "rule"),
        ("cases", "Cases opened."),
        ("acknowledged", "Cases acknowledged (including those resolved after)."),
        ("resolved", "Cases resolved."),
        ("overdue_share", "Share of the cases that passed their due time unacknowledged."),
        ("minutes_to_acknowledge", "Mean minutes from opening to acknowledgement."),
        ("minutes_to_resolve", "Mean minutes from opening to resolution."),
    ),
)

CASE_OUTCOMES = ViewSpec(
    name="case_outcomes",
    select=(
        "SELECT owner, tier, outcome, count() AS cases "
        "FROM {db}.cases FINAL WHERE status = 'resolved' GROUP BY owner, tier, outcome"
    ),
    doc="How resolved cases ended (the outcome mix), by owner and tier.",
    columns=(
        *columns_of(CASES, "owner", "tier", "outcome"),
        ("cases", "Resolved cases with that outcome."),
    ),
)

CASE_RECOVERY_SCORES = ViewSpec(
    name="case_recovery_scores",
    select=(
        "SELECT outcome, count() AS cases, round(avg(score_at_resolution), 2) AS "
        "score_at_resolution, round(avg(score_after_7_days), 2) AS score_after_7_days "
        "FROM (SELECT case_id, outcome, any(case_score) AS score_at_resolution, "
        "argMax(later_score, score_version) AS score_after_7_days "
        "FROM (SELECT case_id, customer_id, outcome, score AS case_score, resolved_at "
        "FROM {db}.cases FINAL WHERE status = 'resolved' AND kind = 'customer') AS c "
        "ALL INNER JOIN (SELECT customer_id, version AS score_version, as_of, "
        "score AS later_score FROM {db}.score_history) AS h USING customer_id "
        "WHERE as_of <= assumeNotNull(resolved_at) + toIntervalDay(7) "
        "GROUP BY case_id, outcome) GROUP BY outcome"
    ),
    doc=(
        "The customer's score 7 days after the case was resolved (its latest score up to "
        "then), next to the score when the alert came, by outcome: does recovery work?"
    ),
    columns=(
        *columns_of(CASES, "outcome"),
        ("cases", "Resolved customer cases with that outcome."),
        ("score_at_resolution", "Mean score at the case's latest alert."),
        ("score_after_7_days", "Mean latest score up to 7 days after resolution."),
    ),
)

CASE_SPECS: tuple[TableSpec | ViewSpec, ...] = (
    CASES,
    CASE_HISTORY,
    CASE_TIMES,
    CASE_OUTCOMES,
    CASE_RECOVERY_SCORES,
)


def case_rows(change: CaseChange) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The ``cases`` and ``case_history`` rows of a change (column order of the models)."""
    c = change.case

    def ms(moment: Any) -> Any:
        return None if moment is None else to_millis(moment)

    case = (
        c.case_id,
        c.kind,
        c.customer_id or "",
        c.instance or "",
        c.tier or "",
        c.score,
        c.severity,
        c.status,
        c.owner,
        c.rule,
        [str(a) for a in c.alert_ids],
        [str(e) for e in c.event_ids],
        c.explanation,
        c.recommended_action,
        to_millis(c.opened_at),
        to_millis(c.updated_at),
        to_millis(c.due_at),
        int(c.escalated),
        c.acknowledged_by or "",
        ms(c.acknowledged_at),
        c.resolved_by or "",
        ms(c.resolved_at),
        c.outcome or "",
        c.note or "",
        c.version,
    )
    history = (
        c.case_id,
        c.version,
        change.change,
        to_millis(change.at),
        change.by,
        "" if change.alert_id is None else str(change.alert_id),
        c.status,
        c.severity,
        c.owner,
        to_millis(c.opened_at),
    )
    return case, history


assert len(CaseRow.model_fields) == 25  # case_rows above builds exactly these columns
assert len(CaseHistoryRow.model_fields) == 10
