"""The cases tables and learning views on chDB and on the server (18.16 in CI): a case's
changes collapse to its latest version, a replay adds nothing, and the views give the
times, the outcome mix and the score 7 days after resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxpulse.schemas.case_rows import CASE_HISTORY, CASES, case_rows
from cxpulse.schemas.cases import CaseChange, CaseCommand
from cxpulse.schemas.model import CasesSection
from cxpulse.schemas.score_rows import SCORE_HISTORY
from cxpulse.schemas.tables import SPECS
from cxpulse.sinks.base import Backend
from cxpulse.streams.cases.lifecycle import apply_alert, apply_command
from tests.unit.test_cases_logic import alert

pytestmark = pytest.mark.clickhouse

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SECTION = CasesSection()


@pytest.fixture(params=["chdb", "server"])
def real_backend(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.getfixturevalue(f"{request.param}_backend")
    backend.ensure_schema(SPECS)
    return backend


def changes() -> list[CaseChange]:
    """C-1 (tier A): opened, acknowledged after 30 min, resolved recovered after 2 h;
    C-2 (tier A): opened, escalated after its 4 h, still open."""
    out: list[CaseChange] = []
    for customer in ("C-1", "C-2"):
        change = apply_alert(None, alert(customer, at=T0), SECTION)
        assert change is not None
        out.append(change)
    one, two = out[0].case, out[1].case

    def cmd(case: Any, what: str, minutes: float, **kw: Any) -> CaseChange:
        change = apply_command(
            case,
            CaseCommand(
                command=what,
                case_id=case.case_id,
                kind=case.kind,
                subject=case.subject,
                at=T0 + timedelta(minutes=minutes),
                **kw,
            ),
            SECTION,
        )
        assert change is not None
        return change

    acked = cmd(one, "ack", 30)
    resolved = cmd(acked.case, "resolve", 120, outcome="recovered", note="called back")
    escalated = cmd(two, "escalate", 300)
    return [*out, acked, resolved, escalated]


def score_row(customer: str, version: int, at: datetime, score: float) -> tuple[Any, ...]:
    return (
        customer,
        version,
        at,
        score,
        0.5,
        1,
        "A",
        "default",
        *([None] * 11),
        "[]",
        0.0,
        None,
        None,
    )


def test_cases_collapse_and_the_views_learn_from_them(real_backend: Backend) -> None:
    rows = [case_rows(c) for c in changes()]
    for _ in range(2):  # a replay inserts the same rows again
        real_backend.insert(CASES, [r for r, _ in rows])
        real_backend.insert(CASE_HISTORY, [h for _, h in rows])
    real_backend.insert(
        SCORE_HISTORY,
        [
            score_row("C-1", 1, T0, 20.0),
            score_row("C-1", 2, T0 + timedelta(days=3), 45.0),  # within the 7 days
            score_row("C-1", 3, T0 + timedelta(days=9), 80.0),  # after them
        ],
    )
    _, cases = real_backend.query(
        "SELECT customer_id, status, severity, escalated, version FROM cases FINAL "
        "ORDER BY customer_id"
    )
    assert [tuple(r) for r in cases] == [
        ("C-1", "resolved", "warning", 0, 3),
        ("C-2", "open", "critical", 1, 2),
    ]
    _, history = real_backend.query("SELECT count() FROM case_history FINAL")
    assert history[0][0] == 5
    _, times = real_backend.query(
        "SELECT tier, owner, rule, cases, acknowledged, resolved, overdue_share, "
        "minutes_to_acknowledge, minutes_to_resolve FROM case_times"
    )
    assert [tuple(r) for r in times] == [
        ("A", "private-banking", "low_score", 2, 1, 1, 0.5, 30.0, 120.0)
    ]
    _, mix = real_backend.query("SELECT owner, tier, outcome, cases FROM case_outcomes")
    assert [tuple(r) for r in mix] == [("private-banking", "A", "recovered", 1)]
    _, recovery = real_backend.query(
        "SELECT outcome, cases, score_at_resolution, score_after_7_days FROM case_recovery_scores"
    )
    assert [tuple(r) for r in recovery] == [("recovered", 1, 20.0, 45.0)]
