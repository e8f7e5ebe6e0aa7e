"""Cases: what happens after an alert. The public shape of a case, its changes and the
commands that change it (docs/cases.md).

Every customer alert opens a case, or updates the open case of the same customer (one
open case per customer); a touchpoint alert does the same for an incident case per
touchpoint instance. A case is owned by a team (routing rules of the model file), is
due by a time set by the customer's tier and the severity, and goes
``open → acknowledged → resolved`` (or ``expired``, never handled). Each change is a
``CaseChange``: a message on the compacted ``cx.cases`` topic (keyed by ``case_id``), a
row of ``case_history`` and the new version of the ``cases`` row.

The ``case_id`` is derived from what opened the case (kind, subject, opening alert), so a
replay or a restart re-derives the same case; ``version`` increases with every change,
so readers keep the highest.

This module imports pydantic and the standard library only, like ``schemas/alerts.py``.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cxpulse.schemas.vocabulary import (
    CASE_CHANGES,
    CASE_OUTCOMES,
    CASE_STATUSES,
    CaseChangeKind,
    CaseKind,
    CaseOutcome,
    CaseStatus,
    Severity,
)

__all__ = [
    "CASE_CHANGES",
    "CASE_OUTCOMES",
    "CASE_STATUSES",
    "Case",
    "CaseChange",
    "CaseCommand",
    "case_id",
    "case_schema",
    "subject_key",
]

# Namespace of case ids (uuid5): fixed forever, or replays open new cases.
CASE_NAMESPACE = uuid.UUID("0b7e4c62-9d1a-4f3e-8c25-7a4d1e9f6b30")

#: Event ids a case keeps (the newest): enough to investigate, bounded for the message.
MAX_CASE_EVENT_IDS = 50
#: Alert ids a case keeps (the newest).
MAX_CASE_ALERT_IDS = 50


def case_id(kind: str, subject: str, opening_alert_id: uuid.UUID | str) -> uuid.UUID:
    """The id of the case that ``opening_alert_id`` opened for ``subject`` (a customer id
    or a touchpoint instance): the same inputs give the same id in every process."""
    return uuid.uuid5(CASE_NAMESPACE, f"{kind}:{subject}/{opening_alert_id}")


def subject_key(kind: str, subject: str) -> str:
    """The cases table's key: one open case per (kind, subject)."""
    return f"{kind}:{subject}"


Text = Annotated[str, Field(max_length=500)]
Name = Annotated[str, Field(min_length=1, max_length=120)]


class Case(BaseModel):
    """One case (the contract of ``/api/cases``, the ``cx.cases`` messages and the
    ``cases`` row). Times are UTC; JSON gives them in ISO 8601 with the offset (``Z``).

    ``opened_at`` is the event time of the opening alert's trigger and ``updated_at`` the
    time of the latest change; ``due_at`` is ``opened_at`` plus the service level of the
    tier and severity (docs/cases.md). ``escalated`` is set once, when the case passed
    ``due_at`` unacknowledged and its severity went up one level.
    """

    model_config = ConfigDict(extra="forbid")

    case_id: uuid.UUID
    kind: CaseKind
    customer_id: str | None = None
    instance: str | None = None
    tier: str | None = None
    score: float | None = None
    severity: Severity
    status: CaseStatus = "open"
    owner: Name
    rule: str
    alert_ids: Annotated[list[uuid.UUID], Field(max_length=MAX_CASE_ALERT_IDS)] = Field(
        default_factory=list
    )
    event_ids: Annotated[list[uuid.UUID], Field(max_length=MAX_CASE_EVENT_IDS)] = Field(
        default_factory=list
    )
    explanation: Text = ""
    recommended_action: Text = ""
    topics: list[str] = Field(default_factory=list)
    opened_at: AwareDatetime
    updated_at: AwareDatetime
    due_at: AwareDatetime
    escalated: bool = False
    acknowledged_by: str | None = None
    acknowledged_at: AwareDatetime | None = None
    resolved_by: str | None = None
    resolved_at: AwareDatetime | None = None
    outcome: CaseOutcome | None = None
    note: Annotated[str, Field(max_length=2000)] | None = None
    version: Annotated[int, Field(ge=1)] = 1

    @property
    def subject(self) -> str:
        """Who or what the case is about: the customer, or the touchpoint instance."""
        return (self.customer_id if self.kind == "customer" else self.instance) or ""

    @property
    def key(self) -> str:
        return subject_key(self.kind, self.subject)

    @property
    def closed(self) -> bool:
        return self.status in ("resolved", "expired")

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the contract (what the API and the SSE stream send)."""
        doc: dict[str, Any] = json.loads(self.model_dump_json())
        return doc


class CaseChange(BaseModel):
    """One change of a case: a ``cx.cases`` message (keyed by ``case_id``; the topic is
    compacted, so it keeps every case's latest change) and a ``case_history`` row.

    ``at`` is when it changed (the alert's event time for ``opened``/``updated``, the wall
    clock for people's actions and the deadline's escalation), ``by`` who changed it
    (a person's name, or ``cxpulse``), ``case`` the case after the change.
    """

    model_config = ConfigDict(extra="forbid")

    change: CaseChangeKind
    at: AwareDatetime
    by: str = "cxpulse"
    alert_id: uuid.UUID | None = None
    case: Case

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json_bytes(cls, data: bytes | str) -> CaseChange:
        return cls.model_validate_json(data)

    def history_entry(self) -> dict[str, Any]:
        """The change as ``GET /api/cases/{case_id}`` lists it in ``history``."""
        c = self.case
        return {
            "version": c.version,
            "change": self.change,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "by": self.by,
            "status": c.status,
            "severity": c.severity,
            "owner": c.owner,
            "alert_id": None if self.alert_id is None else str(self.alert_id),
            "outcome": c.outcome,
            "note": c.note,
        }


class CaseCommand(BaseModel):
    """What someone (or the deadline timer: escalate, expire, forget) asks of a case: a
    message on the
    ``cx.case-commands`` topic, keyed like the alerts (the customer id or the instance) so
    the worker owning the case's partition applies it.

    ``command_id`` makes a command idempotent: applying it twice (a redelivery) changes
    nothing the second time.
    """

    model_config = ConfigDict(extra="forbid")

    command: Literal["ack", "resolve", "escalate", "expire", "forget"]
    command_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    case_id: uuid.UUID
    kind: CaseKind
    subject: str
    by: Name = "cxpulse"
    at: AwareDatetime
    outcome: CaseOutcome | None = None
    note: Annotated[str, Field(max_length=2000)] | None = None

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json_bytes(cls, data: bytes | str) -> CaseCommand:
        return cls.model_validate_json(data)


def case_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one case, as pydantic derives it."""
    schema = Case.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "urn:cxpulse:schema:case:v1"
    return schema
