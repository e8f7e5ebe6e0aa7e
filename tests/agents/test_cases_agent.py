"""The cases agent under Faust's test_context(): a take of alerts and commands, in order.

Several messages of one subject in one take each see the case the one before left (an
update after the opening, an acknowledgement of the updated case); every change reaches
cx.cases in that order before the table holds the subject's latest case; junk and a
refused command in the middle of a take change nothing else.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cxpulse.schemas.alerts import Alert
from cxpulse.schemas.cases import CaseCommand
from cxpulse.streams import metrics
from cxpulse.streams.app import create_app
from cxpulse.streams.settings import load_settings
from tests.agents.fakes import put_on, until
from tests.unit.test_cases_logic import alert

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def an_alert(customer: str, n: int) -> Alert:
    """The ``n``-th alert of a rule for a customer: the same alert id, a growing count and
    event list (a repeat within the cooldown), as the rules send them."""
    return alert(customer, severity="critical", events=n, at=T0 + timedelta(minutes=n))


def changes_made() -> float:
    return sum(
        s.value
        for m in metrics.REGISTRY.collect()
        if m.name == "cxpulse_case_changes"
        for s in m.samples
        if s.name == "cxpulse_case_changes_total"
    )


def takes_handled() -> float:
    count = metrics.REGISTRY.get_sample_value("cxpulse_batch_seconds_count", {"agent": "cases"})
    return count or 0.0


async def run_cases(messages: list[tuple[str, bytes]], changes: int) -> tuple[Any, Any]:
    """Put every message (topic, value) before the agent takes any, wait for ``changes``
    case changes, made in one take; returns the table and the app."""
    settings = load_settings(kafka_url="kafka://127.0.0.1:1", partitions=4)
    app = create_app(settings, connect=lambda: None)  # type: ignore[arg-type,return-value]
    app.finalize()
    app.flow_control.resume()
    table = app.tables["cases"]
    agent = app.agents["cases"]
    before, takes = changes_made(), takes_handled()
    async with agent.test_context() as tested:
        for topic, value in messages:
            await put_on(tested, topic, value, wait=False)
        await until(lambda: changes_made() >= before + changes)
        await asyncio.sleep(0.2)  # nothing more comes
        assert changes_made() == before + changes
        assert takes_handled() == takes + 1, "the messages were not taken at once"
    return table, app


def cases_sent(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(s["value"]) for s in sent if s["topic"] == "cx.cases" and s["value"]]


def test_a_take_applies_each_message_to_the_case_the_one_before_left(
    sent: list[dict[str, Any]],
) -> None:
    first = [an_alert("C-1", n) for n in (1, 2, 3)]
    other = an_alert("C-2", 1)
    ack = CaseCommand(
        command="ack",
        case_id=uuid.uuid4(),  # replaced below: the case's id is derived from its alert
        kind="customer",
        subject="C-1",
        by="dana",
        at=datetime.now(UTC),
    )

    async def go() -> tuple[Any, Any]:
        from cxpulse.streams.cases.lifecycle import case_id

        command = ack.model_copy(update={"case_id": case_id("customer", "C-1", first[0].alert_id)})
        messages = [("cx.alerts", a.to_json_bytes()) for a in first[:2]]
        messages += [
            ("cx.alerts", b"not an alert"),
            ("cx.alerts", other.to_json_bytes()),
            ("cx.alerts", first[2].to_json_bytes()),
            ("cx.case-commands", command.to_json_bytes()),
            ("cx.case-commands", command.model_copy(update={"command": "resolve"}).to_json_bytes()),
        ]
        # opened, updated, opened (C-2), updated, acknowledged; the resolve is refused:
        # it needs an outcome
        return await run_cases(messages, changes=5)

    table, _ = asyncio.run(go())
    changes = cases_sent(sent)
    assert [(c["change"], c["case"]["customer_id"], c["case"]["version"]) for c in changes] == [
        ("opened", "C-1", 1),
        ("updated", "C-1", 2),
        ("opened", "C-2", 1),
        ("updated", "C-1", 3),
        ("acknowledged", "C-1", 4),
    ]
    held = {k.decode(): v for k, v in table.items()}
    assert held["customer:C-1"].version == 4
    assert held["customer:C-1"].status == "acknowledged"
    assert held["customer:C-1"].event_ids == first[2].event_ids
    assert held["customer:C-2"].version == 1
