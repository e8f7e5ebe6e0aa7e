"""The rules registry: one list of names, and a new rule is one module plus its configuration.

The names are written once (``cxpulse.schemas.vocabulary.RULES``); the registry, the model file's
sections and the shipped model must all say the same, in the same order (the order the
customer rules are judged in, and so the order of their alerts and memory entries). A rule
written here, outside ``streams/rules``, and put in a registry fires through the real
``customer_alerts`` with everything every rule gets for free: cooldown and count, the
deterministic id, the severity for the tier, the recommended action's urgency.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from cxpulse.schemas.alerts import Alert, alert_id
from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.model import AlertsSection, ExperienceModel, parse_model
from cxpulse.schemas.scoring import CustomerState
from cxpulse.schemas.vocabulary import RULES
from cxpulse.streams.core import apply_events
from cxpulse.streams.model_check import DEFAULT_MODEL_PATH, load_model
from cxpulse.streams.rules.base import At, CustomerRule, Hit
from cxpulse.streams.rules.customer import customer_alerts
from cxpulse.streams.rules.registry import REGISTRY, Registry
from cxpulse.streams.rules.touchpoint_degraded import RULE as TOUCHPOINT_DEGRADED
from cxpulse.streams.rules.words import humane

M = load_model(None)
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=60)


def test_registry_names_are_the_vocabulary_and_the_model_files() -> None:
    assert REGISTRY.names == RULES
    assert tuple(r.name for r in REGISTRY) == RULES
    # the model file's schema: a section per customer rule, touchpoint_degraded is health
    customer = tuple(r.name for r in REGISTRY.customer)
    assert customer == tuple(n for n in AlertsSection.model_fields if n in RULES)
    assert [r.name for r in REGISTRY.instance] == ["touchpoint_degraded"]
    # the shipped model configures every rule, in the same order
    shipped = yaml.safe_load(DEFAULT_MODEL_PATH.read_text())
    configured = [
        k for k, v in shipped["alerts"].items() if isinstance(v, dict) and "severity" in v
    ]
    assert (*configured, "touchpoint_degraded") == RULES
    assert "severity" in shipped["health"]
    assert all(M.alerts.rule(name).enabled for name in customer)


def test_lookup_by_name_and_one_code_each() -> None:
    assert REGISTRY.get("touchpoint_degraded") is TOUCHPOINT_DEGRADED
    assert REGISTRY.get("low_score").code == "ls"
    codes = [r.code for r in REGISTRY]
    assert len(set(codes)) == len(codes) == len(RULES)
    with pytest.raises(KeyError, match="low_score, sharp_drop"):
        REGISTRY.get("low_scor")


def test_a_registry_refuses_a_name_or_code_twice() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        REGISTRY.with_rule(REGISTRY.customer[0])
    with pytest.raises(ValueError, match="memory code"):
        Registry([REGISTRY.customer[0], _Renamed(REGISTRY.customer[0], "sharp_drop")])


class _Renamed:
    def __init__(self, rule: CustomerRule, name: str) -> None:
        self.rule, self.name, self.code = rule, name, rule.code

    def check(self, at: At, model: ExperienceModel) -> Hit | None:
        return self.rule.check(at, model)


# -- a new rule, written here -----------------------------------------------------------


class AbandonedAtTheAtm:
    """A toy rule: any abandoned ATM withdrawal. What a new module in streams/rules holds.

    ``Alert.rule`` is validated against the vocabulary, so the toy borrows the name (and
    so the ``alerts.<name>`` section) of detractor, which the test's registry leaves out;
    a real rule adds its own name to schemas/vocabulary.py and its section to the model
    (docs/architecture.md, "Adding a rule").
    """

    name = "detractor"
    code = "aa"

    def check(self, at: At, model: ExperienceModel) -> Hit | None:
        m = at.moment
        if m.touchpoint != "atm.withdrawal" or m.outcome != "abandoned":
            return None
        return Hit(
            rule=self.name,
            t=at.t,
            trigger=at.hexid,
            event_ids=[at.hexid],
            magnitude=1.0,
            large=False,
            explanation=f"gave up a withdrawal at {m.touchpoint_instance} ({humane(m.channel)})",
            action="ask what stopped them",
        )


def withdrawal(minutes: float, outcome: str, tier: str = "B") -> TouchpointEvent:
    return TouchpointEvent.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "customer_id": "C-9",
            "channel": "atm",
            "touchpoint": "atm.withdrawal",
            "touchpoint_instance": "ATM-0042",
            "journey_stage": "post_purchase",
            "outcome": outcome,
            "tier": tier,
        }
    )


def run(rules: Registry, events: list[TouchpointEvent], model: ExperienceModel = M) -> list[Alert]:
    state: CustomerState | None = None
    emitted: list[Alert] = []
    for e in events:  # one by one, as the stream may deliver them
        after, moments = apply_events(state, [e], model, NOW)
        state, alerts = customer_alerts(state, after, [e], moments, model, NOW, rules=rules)
        emitted += alerts
    return emitted


def with_toy() -> Registry:
    return Registry(
        [r for r in REGISTRY.customer if r.name != "detractor"], REGISTRY.instance
    ).with_rule(AbandonedAtTheAtm())


def test_a_new_rule_fires_through_customer_alerts() -> None:
    events = [withdrawal(0, "abandoned", tier="A"), withdrawal(30, "abandoned", tier="A")]
    assert run(REGISTRY, events) == []  # the shipped rules see nothing here
    first, repeat = run(with_toy(), events)
    assert first.rule == repeat.rule == "detractor"
    assert (
        first.alert_id
        == repeat.alert_id
        == alert_id("customer", "C-9", "detractor", events[0].event_id.hex)
    )
    assert (first.count, repeat.count) == (1, 2)  # the cooldown folds the repeat
    assert first.severity == "warning"  # alerts.detractor.severity info, one up for tier A
    assert first.explanation == "gave up a withdrawal at ATM-0042 (atm)"
    assert first.recommended_action == (
        "service recovery call within the hour: ask what stopped them"
    )
    assert repeat.event_ids == [events[1].event_id]
    # the new rule is judged after the others, and they still fire beside it
    fails = [withdrawal(60 + i, "failure") for i in range(3)]
    rules = [a.rule for a in run(with_toy(), [*events, *fails])]
    # the failures join the abandonments' episode: its peak and end fall from -4 to -7,
    # the score from 30 to 15 within the hour: a sharp drop too
    assert rules == ["detractor", "detractor", "sharp_drop", "repeated_failure"]


def test_a_new_rule_is_switched_off_by_its_configuration() -> None:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_MODEL_PATH.read_text())
    data["alerts"]["detractor"]["enabled"] = False
    off = parse_model(data)
    assert run(with_toy(), [withdrawal(0, "abandoned")], off) == []
