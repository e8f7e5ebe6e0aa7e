"""The lifecycle of a case as pure functions: an alert opens or updates a case, a command
acknowledges, resolves, escalates or expires it (docs/cases.md).

Every function returns the change it makes (a ``CaseChange`` holding the case after it),
or nothing when it changes nothing: applying the same alert or command twice (a replay,
a redelivery) leaves the case as it is, so a replay neither duplicates nor escalates
twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from cxpulse.schemas.alerts import Alert, alert_id
from cxpulse.schemas.cases import (
    MAX_CASE_ALERT_IDS,
    Case,
    CaseChange,
    CaseCommand,
    case_id,
)
from cxpulse.schemas.model import CasesSection
from cxpulse.schemas.vocabulary import CASE_RULES, RECOVERY_OUTCOMES, RECOVERY_TOUCHPOINT
from cxpulse.streams.cases import policy

# Namespace of the recovery touchpoint's event id (uuid5 of the case id): fixed forever.
RECOVERY_NAMESPACE = uuid.UUID("7f2a9c14-5e3b-4d8a-b6c1-2e9f0a7d4c58")


class CommandRefused(ValueError):
    """A command the case's state does not allow; ``status`` is the HTTP answer's."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def kind_of(alert: Alert) -> str:
    return "customer" if alert.subject_kind == "customer" else "incident"


def _newest(old: list[uuid.UUID], new: list[uuid.UUID], cap: int) -> list[uuid.UUID]:
    """``old`` then the ids of ``new`` it lacks, the newest ``cap`` kept."""
    seen = set(old)
    merged = list(old) + [i for i in new if not (i in seen or seen.add(i))]  # type: ignore[func-returns-value]
    return merged[-cap:]


def apply_alert(current: Case | None, alert: Alert, section: CasesSection) -> CaseChange | None:
    """The change an alert makes: a new case when the subject has none open, else an
    update of the open one; nothing for an alert the case already holds as it is, for
    an alert a closed case already held (a replay) and for the cases' own alerts."""
    if alert.rule in CASE_RULES:
        return None
    kind = kind_of(alert)
    if current is not None and current.closed:
        if alert.alert_id in current.alert_ids:
            return None  # a replay (or a repeat) of what the closed case held
        current = None
    cap = section.max_event_ids
    if current is None:
        opened = alert.triggered_at
        case = Case(
            case_id=case_id(kind, alert.subject, alert.alert_id),
            kind=kind,
            customer_id=alert.customer_id,
            instance=alert.instance,
            tier=alert.tier,
            score=alert.score,
            severity=alert.severity,
            owner=policy.owner(
                section, kind=kind, rule=alert.rule, tier=alert.tier, channel=alert.channel
            ),
            rule=alert.rule,
            alert_ids=[alert.alert_id],
            event_ids=list(alert.event_ids)[-cap:],
            explanation=alert.explanation,
            recommended_action=alert.recommended_action,
            topics=[alert.touchpoint] if alert.touchpoint else [],
            opened_at=opened,
            updated_at=alert.updated_at,
            due_at=policy.due_at(section, opened, alert.tier, alert.severity),
        )
        return CaseChange(
            change="opened", at=alert.triggered_at, alert_id=alert.alert_id, case=case
        )
    severity = policy.higher(current.severity, alert.severity)
    topics = list(current.topics)
    if alert.touchpoint and alert.touchpoint not in topics:
        topics.append(alert.touchpoint)
    update = {
        "severity": severity,
        "rule": alert.rule,
        "score": alert.score if alert.score is not None else current.score,
        "alert_ids": _newest(current.alert_ids, [alert.alert_id], MAX_CASE_ALERT_IDS),
        "event_ids": _newest(current.event_ids, list(alert.event_ids), cap),
        "explanation": alert.explanation,
        "recommended_action": alert.recommended_action,
        "topics": topics,
        "due_at": min(
            current.due_at, policy.due_at(section, current.opened_at, current.tier, severity)
        ),
    }
    if alert.alert_id in current.alert_ids and all(
        getattr(current, k) == v
        for k, v in update.items()
        if k not in ("rule", "score", "explanation", "recommended_action")
    ):
        return None  # nothing new: a replay, or a repeat that adds no event
    case = current.model_copy(
        update={
            **update,
            "updated_at": max(current.updated_at, alert.updated_at),
            "version": current.version + 1,
        }
    )
    return CaseChange(change="updated", at=alert.updated_at, alert_id=alert.alert_id, case=case)


def apply_command(
    current: Case | None, command: CaseCommand, section: CasesSection
) -> CaseChange | None:
    """The change a command makes. Raises ``CommandRefused`` for an ack or resolve the
    case's state does not allow; an escalation or expiry that is not (or no longer) due
    changes nothing (the timer asks again, a replay finds it done)."""
    if current is None or current.case_id != command.case_id:
        raise CommandRefused(f"no case {command.case_id} is held for {command.subject}", 404)
    at, by = command.at, command.by
    bump = {"version": current.version + 1, "updated_at": max(current.updated_at, at)}
    if command.command == "ack":
        if current.status != "open":
            raise CommandRefused(f"case {current.case_id} is {current.status}, not open")
        case = current.model_copy(
            update={**bump, "status": "acknowledged", "acknowledged_by": by, "acknowledged_at": at}
        )
        return CaseChange(change="acknowledged", at=at, by=by, case=case)
    if command.command == "resolve":
        if current.closed:
            raise CommandRefused(f"case {current.case_id} is already {current.status}")
        if command.outcome is None:
            raise CommandRefused("resolving needs an outcome", 400)
        case = current.model_copy(
            update={
                **bump,
                "status": "resolved",
                "resolved_by": by,
                "resolved_at": at,
                "outcome": command.outcome,
                "note": command.note,
            }
        )
        return CaseChange(change="resolved", at=at, by=by, case=case)
    if command.command == "escalate":
        if not overdue(current, at):
            return None
        case = current.model_copy(
            update={**bump, "severity": policy.raised(current.severity), "escalated": True}
        )
        return CaseChange(change="escalated", at=at, case=case)
    if command.command == "forget":
        raise CommandRefused("forget is applied by forget(), not as a change", 400)
    # expire
    if not expirable(current, at, section):
        return None
    case = current.model_copy(update={**bump, "status": "expired"})
    return CaseChange(change="expired", at=at, case=case)


def overdue(case: Case, now: datetime) -> bool:
    """Open (not acknowledged), not yet escalated, and past its due time."""
    return case.status == "open" and not case.escalated and now >= case.due_at


def expirable(case: Case, now: datetime, section: CasesSection) -> bool:
    """Not closed and untouched for ``expire_after_days``."""
    return not case.closed and now >= case.updated_at + timedelta(days=section.expire_after_days)


def forgettable(case: Case, now: datetime, section: CasesSection) -> bool:
    """Closed for ``forget_after_days``: time to drop it from the workers."""
    closed_at = case.resolved_at or case.updated_at
    return case.closed and now >= closed_at + timedelta(days=section.forget_after_days)


def forget(current: Case | None, command: CaseCommand, section: CasesSection) -> bool:
    """Whether a ``forget`` command removes the subject's case (the one it names, closed
    long enough); a replayed or stale one removes nothing."""
    return (
        current is not None
        and current.case_id == command.case_id
        and forgettable(current, command.at, section)
    )


def overdue_alert(change: CaseChange, emitted_at: datetime) -> Alert:
    """The ``case_overdue`` alert an escalation raises on cx.alerts (once per case: its
    id is the case's, so a replay re-derives the same alert)."""
    case = change.case
    late = max(0.0, (change.at - case.due_at).total_seconds() / 3600)
    who = (
        f"customer {case.customer_id} (tier {case.tier or '?'})"
        if case.kind == "customer"
        else f"incident at {case.instance}"
    )
    return Alert(
        alert_id=alert_id(
            "customer" if case.kind == "customer" else "instance",
            case.subject,
            "case_overdue",
            case.case_id.hex,
        ),
        rule="case_overdue",
        severity=case.severity,
        subject_kind="customer" if case.kind == "customer" else "instance",
        customer_id=case.customer_id,
        instance=case.instance,
        tier=case.tier,
        score=case.score,
        triggered_at=change.at,
        updated_at=change.at,
        emitted_at=emitted_at,
        open_until=change.at + timedelta(hours=6),
        event_ids=case.event_ids[-50:],
        magnitude=round(late, 3),
        explanation=(
            f"case {case.case_id} for {who}, owned by {case.owner}, was not acknowledged "
            f"by {case.due_at:%Y-%m-%d %H:%M}Z ({case.rule}: {case.explanation})"
        )[:500],
        recommended_action=(
            f"{case.owner}: acknowledge case {case.case_id} now and act: {case.recommended_action}"
        )[:500],
    )


def recovery_event(change: CaseChange) -> dict[str, object] | None:
    """The touchpoint event a customer case resolved as recovered or compensated enters
    the journey as (the contract's JSON), with an id derived from the case: published
    twice, it is one moment. None for other outcomes and for incident cases."""
    case = change.case
    if (
        change.change != "resolved"
        or case.kind != "customer"
        or case.outcome not in RECOVERY_OUTCOMES
        or not case.customer_id
    ):
        return None
    event: dict[str, object] = {
        "event_id": str(uuid.uuid5(RECOVERY_NAMESPACE, str(case.case_id))),
        "occurred_at": change.at.isoformat(),
        "customer_id": case.customer_id,
        "channel": "call_center",
        "touchpoint": RECOVERY_TOUCHPOINT,
        "journey_stage": "post_purchase",
        "intent": "service_recovery",
        "outcome": "success",
        "attributes": {"case_id": str(case.case_id), "case_outcome": case.outcome or ""},
    }
    if case.tier:
        event["tier"] = case.tier
    return event
