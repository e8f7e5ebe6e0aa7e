"""The pure logic of cases: routing, service levels (working days), the lifecycle of
alerts and commands, idempotence under replay, the overdue alert, the recovery event,
and the API's answers (authorisation, listing order, refusals)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from cxpulse.schemas.alerts import Alert, alert_id
from cxpulse.schemas.cases import Case, CaseChange, CaseCommand, case_id, case_schema
from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.model import CaseRoute, CasesSection
from cxpulse.streams.cases import api, policy
from cxpulse.streams.cases.feed import CaseFeed
from cxpulse.streams.cases.lifecycle import (
    CommandRefused,
    apply_alert,
    apply_command,
    overdue,
    overdue_alert,
    recovery_event,
)

SECTION = CasesSection()
T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)  # a Friday


def alert(
    customer: str = "C-1",
    *,
    tier: str | None = "A",
    severity: str = "warning",
    rule: str = "low_score",
    trigger: str = "e1",
    at: datetime = T0,
    events: int = 1,
    channel: str = "web",
    instance: str | None = None,
) -> Alert:
    kind = "instance" if instance else "customer"
    subject = instance or customer
    return Alert(
        alert_id=alert_id(kind, subject, rule, trigger),
        rule=rule,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        subject_kind=kind,  # type: ignore[arg-type]
        customer_id=None if instance else customer,
        instance=instance,
        tier=None if instance else tier,
        score=None if instance else 20.0,
        channel=channel,
        touchpoint="web.login",
        triggered_at=at,
        updated_at=at,
        emitted_at=at,
        open_until=at + timedelta(hours=6),
        event_ids=[uuid.uuid5(uuid.NAMESPACE_URL, f"{subject}/{i}") for i in range(events)],
        count=events,
        magnitude=1.0,
        explanation="why",
        recommended_action="what",
    )


def command(case: Case, what: str, at: datetime, **kw: object) -> CaseCommand:
    return CaseCommand(
        command=what,  # type: ignore[arg-type]
        case_id=case.case_id,
        kind=case.kind,
        subject=case.subject,
        by=str(kw.pop("by", "alice")),
        at=at,
        **kw,  # type: ignore[arg-type]
    )


def opened(**kw: object) -> Case:
    change = apply_alert(None, alert(**kw), SECTION)  # type: ignore[arg-type]
    assert change is not None and change.change == "opened"
    return change.case


# -- routing and service levels ---------------------------------------------------------


def test_routing_takes_the_first_matching_rule_else_the_default() -> None:
    assert (
        policy.owner(SECTION, kind="incident", rule="touchpoint_degraded", tier=None, channel="atm")
        == "incident-response"
    )
    assert (
        policy.owner(SECTION, kind="customer", rule="low_score", tier="A", channel="web")
        == "private-banking"
    )
    assert (
        policy.owner(SECTION, kind="customer", rule="detractor", tier="C", channel="call_center")
        == "contact-center"
    )
    assert (
        policy.owner(SECTION, kind="customer", rule="low_score", tier="B", channel="store")
        == "customer-care"
    )
    by_rule = CasesSection(routing=[CaseRoute(team="retention", rule="detractor", tier="B")])
    assert (
        policy.owner(by_rule, kind="customer", rule="detractor", tier="B", channel="web")
        == "retention"
    )
    assert (
        policy.owner(by_rule, kind="customer", rule="detractor", tier="C", channel="web")
        == "customer-care"
    )


def test_service_levels_by_tier_and_severity_count_working_days() -> None:
    assert policy.due_at(SECTION, T0, "A", "critical") == T0 + timedelta(hours=1)
    assert policy.due_at(SECTION, T0, "A", "warning") == T0 + timedelta(hours=4)
    # Friday + 5 working days = the next Friday; + 1 working day = Monday
    assert policy.due_at(SECTION, T0, "C", "info") == T0 + timedelta(days=7)
    assert policy.due_at(SECTION, T0, "B", "warning") == T0 + timedelta(days=3)
    assert policy.due_at(SECTION, T0, None, "critical") == T0 + timedelta(hours=1)
    assert policy.after(T0, "30m") == T0 + timedelta(minutes=30)
    assert policy.after(T0, "1.5d") == T0 + timedelta(hours=36)
    with pytest.raises(ValueError, match="service level"):
        policy.after(T0, "soon")


def test_a_bad_service_level_in_the_model_file_is_refused() -> None:
    with pytest.raises(ValueError):
        CasesSection.model_validate(
            {"service_levels": {"A": {"critical": "fast", "warning": "1h", "info": "1d"}}}
        )


# -- alerts open and update ---------------------------------------------------------------


def test_an_alert_opens_a_case_with_a_deterministic_id_owner_and_due_time() -> None:
    a = alert()
    case = opened()
    assert case.case_id == case_id("customer", "C-1", a.alert_id)
    assert (case.kind, case.customer_id, case.tier, case.severity) == (
        "customer",
        "C-1",
        "A",
        "warning",
    )
    assert (case.status, case.owner, case.version) == ("open", "private-banking", 1)
    assert case.due_at == T0 + timedelta(hours=4) and case.alert_ids == [a.alert_id]
    assert opened() == case  # the same alert, the same case


def test_further_alerts_update_the_open_case_and_replays_change_nothing() -> None:
    case = opened()
    later = alert(
        rule="sharp_drop",
        trigger="e2",
        severity="critical",
        at=T0 + timedelta(minutes=10),
        events=3,
    )
    change = apply_alert(case, later, SECTION)
    assert change is not None and change.change == "updated"
    updated = change.case
    assert updated.case_id == case.case_id and updated.version == 2
    assert updated.severity == "critical" and updated.rule == "sharp_drop"
    assert updated.due_at == T0 + timedelta(hours=1)  # the critical level, from the opening
    assert len(updated.alert_ids) == 2 and len(updated.event_ids) == 3
    assert apply_alert(updated, later, SECTION) is None  # a replay
    assert apply_alert(updated, alert(), SECTION) is None  # the first alert replayed
    # a lower severity never lowers the case
    weaker = apply_alert(updated, alert(trigger="e3", severity="info", events=4), SECTION)
    assert weaker is not None and weaker.case.severity == "critical"


def test_one_open_case_per_customer_and_an_incident_case_per_instance() -> None:
    case = opened()
    other = apply_alert(None, alert("C-2"), SECTION)
    assert other is not None and other.case.case_id != case.case_id
    incident = apply_alert(None, alert(instance="ATM-0003", rule="touchpoint_degraded"), SECTION)
    assert incident is not None
    assert (incident.case.kind, incident.case.instance, incident.case.owner) == (
        "incident",
        "ATM-0003",
        "incident-response",
    )


def test_after_resolution_a_new_alert_opens_a_new_case_but_a_replay_does_not() -> None:
    case = opened()
    done = apply_command(case, command(case, "resolve", T0, outcome="recovered"), SECTION)
    assert done is not None
    assert apply_alert(done.case, alert(), SECTION) is None
    fresh = apply_alert(done.case, alert(trigger="e9", at=T0 + timedelta(days=1)), SECTION)
    assert fresh is not None and fresh.change == "opened" and fresh.case.case_id != case.case_id


def test_the_cases_own_alerts_open_nothing() -> None:
    case = opened()
    change = apply_command(case, command(case, "escalate", T0 + timedelta(hours=5)), SECTION)
    assert change is not None
    assert apply_alert(None, overdue_alert(change, T0), SECTION) is None


# -- commands -------------------------------------------------------------------------------


def test_ack_then_resolve_and_what_is_refused() -> None:
    case = opened()
    at = T0 + timedelta(minutes=20)
    acked = apply_command(case, command(case, "ack", at), SECTION)
    assert acked is not None and acked.case.status == "acknowledged"
    assert acked.case.acknowledged_by == "alice" and acked.case.acknowledged_at == at
    assert acked.case.version == 2
    with pytest.raises(CommandRefused, match="acknowledged, not open"):
        apply_command(acked.case, command(case, "ack", at), SECTION)
    resolved = apply_command(
        acked.case,
        command(case, "resolve", at, by="bob", outcome="compensated", note="voucher"),
        SECTION,
    )
    assert resolved is not None and resolved.case.status == "resolved"
    assert (resolved.case.outcome, resolved.case.note, resolved.case.resolved_by) == (
        "compensated",
        "voucher",
        "bob",
    )
    with pytest.raises(CommandRefused, match="already resolved") as refused:
        apply_command(resolved.case, command(case, "resolve", at, outcome="recovered"), SECTION)
    assert refused.value.status == 409
    with pytest.raises(CommandRefused) as unknown:
        apply_command(None, command(case, "ack", at), SECTION)
    assert unknown.value.status == 404


def test_a_case_escalates_once_when_overdue_and_not_after_an_ack() -> None:
    case = opened()  # warning, tier A: due in 4 h
    assert apply_command(case, command(case, "escalate", T0 + timedelta(hours=3)), SECTION) is None
    late = T0 + timedelta(hours=5)
    assert overdue(case, late)
    change = apply_command(case, command(case, "escalate", late), SECTION)
    assert change is not None and change.change == "escalated"
    assert change.case.severity == "critical" and change.case.escalated
    assert not overdue(change.case, late + timedelta(hours=1))
    assert apply_command(change.case, command(case, "escalate", late), SECTION) is None  # replay
    overdue_one = overdue_alert(change, late)
    assert overdue_one.rule == "case_overdue" and overdue_one.severity == "critical"
    assert overdue_one.alert_id == overdue_alert(change, late + timedelta(hours=1)).alert_id
    assert "private-banking" in overdue_one.recommended_action
    acked = apply_command(case, command(case, "ack", T0), SECTION)
    assert acked is not None and not overdue(acked.case, late)


def test_an_untouched_case_expires() -> None:
    case = opened()
    assert apply_command(case, command(case, "expire", T0 + timedelta(days=13)), SECTION) is None
    change = apply_command(case, command(case, "expire", T0 + timedelta(days=15)), SECTION)
    assert change is not None and change.case.status == "expired" and change.case.closed


def test_recovered_and_compensated_cases_enter_the_journey_as_a_valid_event() -> None:
    case = opened()
    for outcome, expected in (
        ("recovered", True),
        ("compensated", True),
        ("unreachable", False),
        ("no_action", False),
    ):
        change = apply_command(case, command(case, "resolve", T0, outcome=outcome), SECTION)
        assert change is not None
        event = recovery_event(change)
        assert (event is not None) is expected
        if event is not None:
            parsed = TouchpointEvent.model_validate(event)
            assert (
                parsed.touchpoint == "call_center.service_recovery" and parsed.outcome == "success"
            )
            assert parsed.customer_id == "C-1" and parsed.tier == "A"
            assert event == recovery_event(change)  # the same id every time


# -- the contract and the API's answers -------------------------------------------------------


def test_the_case_json_has_the_contract_fields() -> None:
    fields = set(case_schema()["properties"])
    assert fields == {
        *("case_id", "kind", "customer_id", "instance", "tier", "score", "severity", "status"),
        *("owner", "rule", "alert_ids", "event_ids", "explanation", "recommended_action"),
        *("topics", "opened_at", "updated_at", "due_at", "escalated", "acknowledged_by"),
        *("acknowledged_at", "resolved_by", "resolved_at", "outcome", "note", "version"),
    }
    doc = opened().to_json()
    assert doc["due_at"].endswith("Z") and doc["opened_at"] == "2026-12-04T09:00:00Z"


def test_authorisation_needs_the_configured_token() -> None:
    token = SecretStr("0123456789abcdef-token")
    none = api.authorize(None, {"Authorization": "Bearer x"}, {})
    assert none is not None and none[1] == 401 and "CXPULSE_API_TOKEN" in none[0]["error"]
    assert api.authorize(token, {"Authorization": "Bearer 0123456789abcdef-token"}, {}) is None
    assert api.authorize(token, {"Authorization": "Bearer wrong"}, {}) is not None
    assert api.authorize(token, {}, {"token": "0123456789abcdef-token"}) is not None
    assert api.authorize(token, {}, {"token": "0123456789abcdef-token"}, allow_query=True) is None


def loaded_feed() -> CaseFeed:
    """A feed that has read cx.cases to its end (what the API answers from)."""
    feed = CaseFeed()
    feed.loaded.set()
    return feed


def test_until_the_feed_has_read_the_cases_the_api_answers_503_loading() -> None:
    feed = CaseFeed()
    case = opened()
    feed.apply(CaseChange(change="opened", at=T0, case=case))
    feed.progress = (1, 4)
    for body, status in (
        api.list_answer(feed, {}),
        api.show_answer(feed, str(case.case_id)),
        api.parse_command(feed, SECTION, str(case.case_id), "ack", b'{"by": "a"}'),
    ):
        assert status == 503 and body["loading"] is True
        assert "1 of 4 partitions read" in str(body["error"]) and "again" in str(body["error"])
    feed.loaded.set()
    body, status = api.list_answer(feed, {})
    assert status == 200 and [c["case_id"] for c in body["cases"]] == [str(case.case_id)]


def test_the_list_is_critical_first_then_by_due_time_and_filters() -> None:
    feed = loaded_feed()
    a = opened(customer="C-a", tier="C", severity="warning")
    b = opened(customer="C-b", tier="A", severity="warning")
    c = opened(customer="C-c", tier="C", severity="critical")
    for case in (a, b, c):
        feed.apply(CaseChange(change="opened", at=T0, case=case))
    body, status = api.list_answer(feed, {})
    assert status == 200
    assert [x["customer_id"] for x in body["cases"]] == ["C-c", "C-b", "C-a"]
    body, _ = api.list_answer(feed, {"owner": "private-banking"})
    assert [x["customer_id"] for x in body["cases"]] == ["C-b"]
    assert api.list_answer(feed, {"status": "nope"})[1] == 400
    assert api.list_answer(feed, {"limit": "0"})[1] == 400
    assert not feed.apply(CaseChange(change="opened", at=T0, case=a))  # not newer


def test_commands_are_checked_before_they_are_sent_and_answered_with_the_change() -> None:
    feed = loaded_feed()
    case = opened()
    feed.apply(CaseChange(change="opened", at=T0, case=case))
    cid = str(case.case_id)
    assert api.show_answer(feed, str(uuid.uuid4()))[1] == 404
    assert api.show_answer(feed, "nope")[1] == 400
    assert api.show_answer(feed, cid)[0]["history"][0]["change"] == "opened"
    sent: list[CaseCommand] = []

    async def run(
        command_name: str, body: bytes, timeout: float = 5.0
    ) -> tuple[dict[str, object], int]:
        async def send(cmd: CaseCommand) -> None:
            sent.append(cmd)
            change = apply_command(feed.get(cid), cmd, SECTION)
            assert change is not None
            feed.apply(change)

        return await api.command_answer(feed, SECTION, send, cid, command_name, body, timeout)

    assert asyncio.run(run("resolve", b'{"by": "a", "outcome": "maybe"}'))[1] == 400
    assert asyncio.run(run("ack", b'{"by": ""}'))[1] == 400
    assert asyncio.run(run("ack", b"[1]"))[1] == 400
    body, status = asyncio.run(run("ack", b'{"by": "alice"}'))
    assert status == 200 and body["case"]["status"] == "acknowledged"  # type: ignore[index]
    assert asyncio.run(run("ack", b'{"by": "alice"}'))[1] == 409
    assert len(sent) == 1

    async def silent(cmd: CaseCommand) -> None:
        sent.append(cmd)

    answer = asyncio.run(
        api.command_answer(
            feed, SECTION, silent, cid, "resolve", b'{"by":"a","outcome":"no_action"}', 0.2
        )
    )
    assert answer[1] == 504 and "did not change" in str(answer[0]["error"])


def test_a_long_closed_case_is_forgotten_and_only_the_one_named() -> None:
    from cxpulse.streams.cases.lifecycle import forget, forgettable

    case = opened()
    done = apply_command(case, command(case, "resolve", T0, outcome="no_action"), SECTION)
    assert done is not None
    assert not forgettable(case, T0 + timedelta(days=60), SECTION)  # open: never
    assert not forgettable(done.case, T0 + timedelta(days=29), SECTION)
    assert forgettable(done.case, T0 + timedelta(days=31), SECTION)
    assert forget(done.case, command(case, "forget", T0 + timedelta(days=31)), SECTION)
    assert not forget(done.case, command(case, "forget", T0 + timedelta(days=1)), SECTION)
    newer = apply_alert(done.case, alert(trigger="e7"), SECTION)
    assert newer is not None  # a new case for the subject: a stale forget leaves it
    assert not forget(newer.case, command(case, "forget", T0 + timedelta(days=31)), SECTION)
    feed = CaseFeed()
    feed.apply(CaseChange(change="resolved", at=T0, case=done.case))
    feed.forget(str(case.case_id))
    assert feed.get(str(case.case_id)) is None and not feed.history
