"""The names cxpulse speaks in, each list written once: channels, journey stages,
outcomes, tiers, experience factors, effort metrics, alert rules and severities.

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
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)
