"""The names cxpulse speaks in, each list written once: channels, journey stages,
outcomes, tiers, experience factors, effort metrics, alert rules and severities, and
the cases' statuses, kinds, outcomes and changes.

Every other module takes them from here (the pydantic ``Literal`` types for validation,
the tuples for iteration), so a new channel or factor is one line here, then whatever
the type checker and the tests point at.
"""

from __future__ import annotations

from typing import Literal, get_args

Channel = Literal["web", "app", "call_center", "store", "atm"]
CHANNELS: tuple[str, ...] = get_args(Channel)

JourneyStage = Literal["pre_purchase", "purchase", "post_purchase"]
Outcome = Literal["success", "failure", "abandoned"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
Tier = Literal["A", "B", "C"]
TIERS: tuple[str, ...] = get_args(Tier)

Factor = Literal["product", "service", "relationship", "convenience", "brand", "price"]
FACTORS: tuple[str, ...] = get_args(Factor)

EffortMetric = Literal[
    "latency_ms",
    "steps",
    "wait_seconds",
    "handle_seconds",
    "transfers",
    "ivr_steps",
    "queue_seconds",
    "service_seconds",
    "response_ms",
]
EFFORT_METRIC_NAMES: tuple[str, ...] = get_args(EffortMetric)

Rule = Literal[
    "low_score",
    "sharp_drop",
    "repeated_failure",
    "repeat_contact",
    "channel_hopping",
    "detractor",
    "touchpoint_degraded",
]
RULES: tuple[str, ...] = get_args(Rule)
#: Alerts the cases feature raises about a case (not about a moment): not customer
#: rules, so not in ``Rule`` (the rule registry and the model file's sections are those).
CaseRule = Literal["case_overdue"]
CASE_RULES: tuple[str, ...] = get_args(CaseRule)
#: Every ``rule`` an alert on cx.alerts may carry.
ALERT_RULES: tuple[str, ...] = RULES + CASE_RULES

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)

#: A case's lifecycle (docs/cases.md): open → acknowledged → resolved, or expired.
CaseStatus = Literal["open", "acknowledged", "resolved", "expired"]
CASE_STATUSES: tuple[str, ...] = get_args(CaseStatus)
CaseKind = Literal["customer", "incident"]
#: How a resolved case ended; recovered and compensated enter the journey as a moment.
CaseOutcome = Literal["recovered", "compensated", "unreachable", "no_action"]
CASE_OUTCOMES: tuple[str, ...] = get_args(CaseOutcome)
#: What changed a case (a row of ``case_history`` each).
CaseChangeKind = Literal["opened", "updated", "escalated", "acknowledged", "resolved", "expired"]
CASE_CHANGES: tuple[str, ...] = get_args(CaseChangeKind)
#: The touchpoint a case resolved as recovered or compensated enters the journey as.
RECOVERY_TOUCHPOINT = "call_center.service_recovery"
RECOVERY_OUTCOMES: tuple[str, ...] = ("recovered", "compensated")
