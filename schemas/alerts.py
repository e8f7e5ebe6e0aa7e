"""Early-warning alerts: what ``cx.alerts`` carries and operations act on.

An alert is a *case*, not a log line: its ``alert_id`` is derived from what opened it
(subject, rule, the opening event), so a replay or a restart re-derives the same id, and a
repeat within the cooldown re-emits the SAME id with ``count`` + 1. Consumers (ClickHouse's
``alerts`` table, a console, a webhook receiver) keep the latest version per ``alert_id``
(highest ``count``) and never see one problem as two.

This module imports pydantic and the standard library only: the stream core builds alerts.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cxpulse.schemas.vocabulary import ALERT_RULES, RULES, SEVERITIES, CaseRule, Rule, Severity

__all__ = [
    "ALERT_RULES",
    "RULES",
    "SEVERITIES",
    "Alert",
    "Rule",
    "Severity",
    "alert_id",
]

SubjectKind = Literal["customer", "instance"]

# Namespace of alert ids (uuid5): fixed forever, or replays stop deduplicating.
ALERT_NAMESPACE = uuid.UUID("5c1d7a8e-3f0b-4b8e-9a51-6f2e0c4d9b37")


def alert_id(subject_kind: str, subject: str, rule: str, trigger: str) -> uuid.UUID:
    """The id of the alert that ``trigger`` (the opening event's id, hex) opened for
    ``subject`` under ``rule``: the same inputs give the same id in every process."""
    return uuid.uuid5(ALERT_NAMESPACE, f"{subject_kind}:{subject}/{rule}/{trigger}")


class Alert(BaseModel):
    """One early-warning alert (a ``cx.alerts`` message and an ``alerts`` row).

    Times: ``triggered_at`` is the EVENT time of the opening trigger, ``updated_at`` the
    event time of the latest repeat (both deterministic, so a replay rebuilds identical
    alerts), ``emitted_at`` the wall-clock time this version left the processor, and
    ``open_until`` the end of the cooldown (``triggered_at`` + cooldown): until then
    repeats fold into this alert, so it is the case's "open" period.
    ``magnitude`` is rule-specific (points below the line, points dropped, failures,
    contacts, channels, how bad the feedback was on 0..10, a failure rate 0..1): docs/alerts.md.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    alert_id: uuid.UUID
    rule: Rule | CaseRule
    severity: Severity
    subject_kind: SubjectKind
    customer_id: str | None = None
    instance: str | None = None
    tier: str | None = None
    segment: str | None = None
    score: float | None = None
    channel: str | None = None
    touchpoint: str | None = None
    triggered_at: AwareDatetime
    updated_at: AwareDatetime
    emitted_at: AwareDatetime
    open_until: AwareDatetime
    event_ids: Annotated[list[uuid.UUID], Field(max_length=50)] = Field(default_factory=list)
    count: Annotated[int, Field(ge=1)] = 1
    magnitude: float
    explanation: Annotated[str, Field(max_length=500)]
    recommended_action: Annotated[str, Field(max_length=500)]
    status: Literal["open"] = "open"

    @property
    def subject(self) -> str:
        """Who or what the alert is about: the customer, or the touchpoint instance."""
        return (self.customer_id if self.subject_kind == "customer" else self.instance) or ""

    def to_json_bytes(self) -> bytes:
        """The ``cx.alerts`` message body (and the webhook body): compact JSON."""
        return self.model_dump_json().encode()

    @classmethod
    def from_json_bytes(cls, data: bytes | str) -> Alert:
        return cls.model_validate_json(data)
