"""The experience model file: the default loads and covers both industries; every kind of
mistake gives ONE line that names the key and says how to fix it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from cxpulse.schemas.events import (
    AppDetails,
    AtmDetails,
    CallCenterDetails,
    StoreDetails,
    WebDetails,
)
from cxpulse.schemas.model import EFFORT_METRICS, ModelError, Outcomes, parse_model
from cxpulse.schemas.vocabulary import OUTCOMES
from cxpulse.streams.model_check import DEFAULT_MODEL_PATH, check_model_file, load_model

DEFAULT: dict[str, Any] = yaml.safe_load(DEFAULT_MODEL_PATH.read_text())


def test_default_model_loads_and_covers_bank_and_retailer() -> None:
    m = load_model(None)
    assert m is load_model()  # cached
    assert {"default", "retail_banking", "retail"} <= set(m.factors.importance)
    channels = {spec.channel for spec in m.touchpoints.values()}
    assert channels == {"web", "app", "call_center", "store", "atm"}
    assert m.touchpoints["atm.withdrawal"].factors == ["convenience", "service"]
    assert m.readings.outcomes.success == 10 and m.readings.outcomes.abandoned == 3
    assert m.episodes.gap_minutes == 30 and m.score.half_life_days == 14
    assert m.readings.effort_k == 4
    # tier A expects at least as much as B, and B as C, on every factor
    e = m.expectations
    for f in ("product", "service", "relationship", "convenience", "brand", "price"):
        assert getattr(e.A, f) >= getattr(e.B, f) >= getattr(e.C, f)


def test_check_model_file_summary(tmp_path: Path) -> None:
    summary = check_model_file(DEFAULT_MODEL_PATH)
    assert summary.startswith("model ok: 3 segments") and "\n" not in summary
    assert summary.endswith(", 11 feedback topics")


def test_effort_metrics_table_matches_the_event_contract() -> None:
    for cls in (WebDetails, AppDetails, CallCenterDetails, StoreDetails, AtmDetails):
        channel = cls.model_fields["kind"].default
        for metric in EFFORT_METRICS[channel]:
            assert metric in cls.model_fields, (channel, metric)


def test_the_outcome_caps_name_every_outcome_of_the_contract() -> None:
    """``readings.outcomes`` has a cap for each outcome an event can have, the core's
    reading levels read them by those names (``readings.Levels``)."""
    assert sorted(Outcomes.model_fields) == sorted(OUTCOMES)


def _with(path: str, value: Any) -> dict[str, Any]:
    """The default model with the dotted ``path`` set to value (``...=DELETE`` removes it)."""
    data = copy.deepcopy(DEFAULT)
    node = data
    *parents, last = path.split(".")
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "factors.importance.retail.service",
            12,
            "model error: factors.importance.retail.service: 12 is above 10: use 1..10",
        ),
        ("factors.importance.retail.service", 0, "factors.importance.retail.service: 0 is below 1"),
        (
            "factors.importance.retail.price",
            "high",
            "factors.importance.retail.price: 'high' is not an integer: write an integer",
        ),
        (
            "touchpoints.atm.withdrawal.factors",
            ["service", "service"],
            "touchpoints.atm.withdrawal.factors: service listed twice: list each factor once",
        ),
        ("factors.importance.retail.brand", DELETE, "factors.importance.retail.brand: missing"),
        ("factors.importance.retail.servce", 5, "factors.importance.retail.servce: unknown key"),
        ("factors.importance.default", DELETE, "factors.importance.default: missing"),
        (
            "factors.importance.Retail Bank",
            DEFAULT["factors"]["importance"]["retail"],
            "not a valid name",
        ),
        ("expectations.A.service", 11, "expectations.A.service: 11.0 is outside 0..10"),
        ("expectations.none", DELETE, "expectations.none: missing"),
        ("readings.outcomes.success", -1, "readings.outcomes.success: -1.0 is outside 0..10"),
        ("readings.effort_k", 1, "readings.effort_k: 1 is too small: use a value > 1"),
        ("readings.delight.csat.ten", 1, "readings.delight.csat: zero and ten are both 1.0"),
        ("touchpoints.atm.withdrawal", None, "touchpoints.atm.withdrawal: None is not"),
        (
            "touchpoints.atm.withdrawal.factors",
            ["convenience", "speed"],
            "touchpoints.atm.withdrawal.factors.1: 'speed' is not allowed: use one of",
        ),
        ("touchpoints.atm.withdrawal.factors", [], "touchpoints.atm.withdrawal.factors: is empty"),
        (
            "touchpoints.atm.withdrawal.effort.0.metric",
            "wait_seconds",
            "touchpoints.atm.withdrawal.effort.0.metric: wait_seconds is not measured on atm: "
            "use one of response_ms",
        ),
        (
            "touchpoints.atm.withdrawal.effort.0.expected",
            0,
            "touchpoints.atm.withdrawal.effort.0.expected: 0 is too small: use a value > 0",
        ),
        (
            "touchpoints.atm.withdrawal.effort.0.factors",
            ["brand"],
            "touchpoints.atm.withdrawal.effort.0.factors: brand is not one of this touchpoint",
        ),
        ("channels.store", DELETE, "channels.store: missing: add it"),
        ("channels.atm", DEFAULT["channels"]["web"], "channels.atm.channel: is web: set it to atm"),
        (
            "channels.atm.channel",
            "web",
            "channels.atm.effort.0.metric: response_ms is not measured on web",
        ),
        ("episodes.gap_minutes", 0, "episodes.gap_minutes: 0 is too small"),
        ("score.half_life_days", -3, "score.half_life_days: -3 is too small"),
        (
            "score.explanation_size",
            50,
            "score.explanation_size: 50 is too large: use a value <= 20",
        ),
        ("score.half_lfe_days", 3, "score.half_lfe_days: unknown key"),
        (
            "state.failures_max",
            4,
            "model error: state.failures_max: 4 is smaller than "
            "alerts.repeated_failure.escalate_at (5): raise state.failures_max to at least 5",
        ),
        (
            "alerts.repeated_failure.escalate_at",
            9,
            "state.failures_max: 8 is smaller than alerts.repeated_failure.escalate_at (9)",
        ),
        (
            "state.contacts_max",
            2,
            "state.contacts_max: 2 is smaller than alerts.repeat_contact.count (3): raise",
        ),
        ("state.trail_max", 16, "state.trail_max: no longer used"),
        ("state.intents_max", 0, "state.intents_max: 0 is too small: use a value >= 1"),
        ("alerts.low_score.min_episodes", 0, "alerts.low_score.min_episodes: 0 is too small"),
    ],
)
def test_bad_model_gives_one_line_naming_the_key(path: str, value: Any, message: str) -> None:
    if path.startswith("touchpoints.atm.withdrawal"):
        # touchpoint names contain dots: address them by hand
        data = copy.deepcopy(DEFAULT)
        rest = path.removeprefix("touchpoints.atm.withdrawal").lstrip(".")
        if not rest:
            data["touchpoints"]["atm.withdrawal"] = value
        else:
            node = data["touchpoints"]["atm.withdrawal"]
            *parents, last = rest.split(".")
            for p in parents:
                node = node[int(p)] if isinstance(node, list) else node[p]
            node[last] = value
    else:
        data = _with(path, value)
    with pytest.raises(ModelError) as err:
        parse_model(data)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("model error: ")
    assert message in text


def test_file_level_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ModelError, match=r"nope.yaml: file not found"):
        check_model_file(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("factors:\n  importance: [\n")
    with pytest.raises(ModelError, match=r"YAML syntax error at line \d+"):
        check_model_file(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ModelError, match="the file is empty"):
        check_model_file(empty)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ModelError, match="not a mapping"):
        check_model_file(scalar)


def test_a_copy_of_the_default_round_trips(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(_with("factors.importance.retail.service", 7)))
    assert load_model(p).importance_for("retail")["service"] == 7


def test_alert_labels_must_name_touchpoints_of_the_model() -> None:
    data = copy.deepcopy(DEFAULT)
    data["alerts"]["labels"]["atm.withdrawl"] = "cash withdrawal"
    with pytest.raises(ModelError) as err:
        parse_model(data)
    assert str(err.value) == (
        "model error: alerts.labels.atm.withdrawl: not a touchpoint of this model: fix its "
        "spelling or add the touchpoint"
    )


def test_default_alert_memory_caps_cover_what_the_rules_count() -> None:
    m = load_model(None)
    assert m.state.failures_max >= m.alerts.repeated_failure.escalate_at
    assert m.state.contacts_max >= m.alerts.repeat_contact.escalate_at
    assert m.alerts.low_score.min_episodes == 2
