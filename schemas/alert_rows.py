"""ClickHouse rows for early-warning alerts: the ``alerts`` table and two BI views.

An alert is re-emitted with the same ``alert_id`` and a higher ``count`` when it repeats
within its cooldown, so the table is ``ReplacingMergeTree(count)`` ordered by ``alert_id``:
read with ``FINAL`` (the views do) and each alert is one row, in its latest version; a
replay re-inserts identical rows, which collapse too. Every version of an alert has the
same ``triggered_at``, so all of them land in the same monthly partition, where
ReplacingMergeTree deduplicates.

``event_ids`` is ``Array(String)``: arrays exist on every ClickHouse cxpulse supports
(18.16 included) and BI tools read them with ``arrayJoin``/``has``; strings rather than
UUIDs so no server or driver has to convert inside an array.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import AwareDatetime

from cxpulse.schemas.alerts import Alert
from cxpulse.schemas.rows import _LC, _TS, Column, TableSpec, ViewSpec, _Row, columns_of, to_millis


class AlertRow(_Row):
    """One early-warning alert, latest version per ``alert_id``."""

    alert_id: Annotated[
        uuid.UUID, Column("UUID", "Deterministic id (subject, rule, opening event): the key.")
    ]
    rule: Annotated[
        str,
        Column(
            _LC,
            "low_score, sharp_drop, repeated_failure, repeat_contact, channel_hopping, "
            "detractor or touchpoint_degraded; case_overdue for a case past its due time.",
        ),
    ]
    severity: Annotated[str, Column(_LC, "info, warning or critical (the highest it reached).")]
    subject_kind: Annotated[str, Column(_LC, "customer, or instance for touchpoint_degraded.")]
    customer_id: Annotated[str, Column("String", "The customer; '' for instance alerts.")]
    instance: Annotated[
        str, Column("String", "Touchpoint instance (ATM-0042, store-117); '' if none.")
    ]
    tier: Annotated[str, Column(_LC, "Customer value tier A/B/C; '' if unknown or instance.")]
    segment: Annotated[str, Column(_LC, "Customer segment; '' if unknown or instance.")]
    score: Annotated[
        float | None,
        Column("Nullable(Float32)", "The customer's score at the trigger; NULL for instances."),
    ]
    channel: Annotated[str, Column(_LC, "Channel of the triggering event.")]
    touchpoint: Annotated[str, Column(_LC, "Touchpoint type of the triggering event.")]
    triggered_at: Annotated[
        AwareDatetime, Column(_TS, "Event time of the event that opened the alert (UTC).")
    ]
    updated_at: Annotated[AwareDatetime, Column(_TS, "Event time of the latest repeat (UTC).")]
    emitted_at: Annotated[
        AwareDatetime, Column(_TS, "Wall-clock time this version was emitted (UTC).")
    ]
    open_until: Annotated[
        AwareDatetime,
        Column(_TS, "End of the cooldown: repeats until then raise count, not a new alert."),
    ]
    count: Annotated[
        int, Column("UInt32", "Hits folded into this alert (the row version: highest wins).")
    ]
    magnitude: Annotated[
        float, Column("Float32", "Rule-specific size (points, failures, contacts, rate).")
    ]
    event_ids: Annotated[
        list[str], Column("Array(String)", "Ids of the triggering events (newest kept).")
    ]
    explanation: Annotated[str, Column("String", "One line a person understands.")]
    recommended_action: Annotated[str, Column("String", "What operations should do, and when.")]
    status: Annotated[str, Column(_LC, "open (later versions may add acknowledged, closed).")]


ALERTS = TableSpec(
    name="alerts",
    model=AlertRow,
    order_by=("alert_id",),
    partition_by="toYYYYMM(triggered_at)",
    version="count",
    doc=(
        "Early-warning alerts, one row per alert_id in its latest version (read with FINAL). "
        "A repeat within the cooldown re-emits the same alert_id with a higher count."
    ),
)

_OPEN_ALERT_COLUMNS = (
    *("alert_id", "rule", "severity", "subject_kind", "customer_id", "instance", "tier"),
    *("segment", "score", "channel", "touchpoint", "triggered_at", "updated_at"),
    *("open_until", "count", "magnitude", "explanation", "recommended_action"),
)

#: Float32 columns as BI reads them: to 4 decimals, all a Float32 below 1000 holds (60.91,
#: not 60.90999984741211).
_ROUNDED = {"score", "magnitude"}

OPEN_ALERTS = ViewSpec(
    name="open_alerts",
    select=(
        "SELECT "
        + ", ".join(
            f"round(toFloat64({c}), 4) AS {c}" if c in _ROUNDED else c for c in _OPEN_ALERT_COLUMNS
        )
        + " FROM {db}.alerts FINAL WHERE open_until > now()"
    ),
    doc=(
        "Alerts still within their cooldown (open_until in the future), latest version "
        "each: the operations queue."
    ),
    columns=columns_of(ALERTS, *_OPEN_ALERT_COLUMNS),
)

ALERT_VOLUME = ViewSpec(
    name="alert_volume",
    select=(
        "SELECT toStartOfHour(triggered_at) AS hour, rule, severity, channel, "
        "count() AS alerts, sum(count) AS hits, "
        "uniqExactIf(customer_id, customer_id != '') AS customers, "
        "uniqExactIf(instance, subject_kind = 'instance') AS instances "
        "FROM {db}.alerts FINAL GROUP BY hour, rule, severity, channel"
    ),
    doc=(
        "Alerts opened per hour (by trigger time) × rule × severity × channel, with the "
        "hits they folded in and the customers and instances concerned."
    ),
    columns=(
        ("hour", "Start of the hour the alerts were triggered in (event time, UTC)."),
        *columns_of(ALERTS, "rule", "severity", "channel"),
        ("alerts", "Alerts opened (distinct alert_id)."),
        ("hits", "Triggers folded into them (sum of count): repeats within the cooldown."),
        ("customers", "Distinct customers concerned."),
        ("instances", "Distinct touchpoint instances concerned (touchpoint_degraded)."),
    ),
)

ALERT_SPECS: tuple[TableSpec | ViewSpec, ...] = (ALERTS, OPEN_ALERTS, ALERT_VOLUME)


def alert_row(alert: Alert) -> tuple[Any, ...]:
    """The ``alerts`` row tuple of an alert (column order of ``AlertRow``)."""
    return (
        alert.alert_id,
        alert.rule,
        alert.severity,
        alert.subject_kind,
        alert.customer_id or "",
        alert.instance or "",
        alert.tier or "",
        alert.segment or "",
        alert.score,
        alert.channel or "",
        alert.touchpoint or "",
        to_millis(alert.triggered_at),
        to_millis(alert.updated_at),
        to_millis(alert.emitted_at),
        to_millis(alert.open_until),
        alert.count,
        alert.magnitude,
        [str(e) for e in alert.event_ids],
        alert.explanation,
        alert.recommended_action,
        alert.status,
    )


assert len(AlertRow.model_fields) == 21  # alert_row above builds exactly these columns
