"""The chaos suite's short form (``make chaos`` runs the long one), on the bundled broker:
a worker restarted while input arrives, killed with SIGKILL while input arrives, writing
to a ClickHouse server that is stopped for 10 s, two workers of one group with one
killed, and 1,000 fuzzed bad inputs beside valid events. Nothing may be lost or doubled
after FINAL, the scores must be a clean run's, and every bad item must be a dead letter.
tests/chaos/harness.py says what each count means.

The broker-restart and steady-RSS scenarios run only under ``python -m tests.chaos``
(``--short`` for their short forms): they do not fit this suite's time budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import Harness
from tests.chaos.scenarios import (
    clickhouse_down,
    fuzzed_input,
    kill9_while_publishing,
    publish_during_restarts,
    two_workers_kill9,
)
from tests.integration.conftest import require_tool

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

#: A drain that does not finish says so (with the lag left) well within the suite's 300 s
#: a test (pyproject.toml), a scenario taking ~40 s before it: the checks then count what
#: is missing, where pytest's timeout would only have stopped the test.
DRAIN_SECONDS = 150


@pytest.mark.parametrize(
    "scenario",
    [
        publish_during_restarts,
        kill9_while_publishing,
        clickhouse_down,
        two_workers_kill9,
        fuzzed_input,
    ],
    ids=["restarts", "kill9", "clickhouse-down", "two-workers", "fuzz"],
)
def test_chaos_short(scenario: Any, kafka_broker: Any, tmp_path: Path) -> None:
    h = Harness(scenario.__name__, kafka_broker.url, tmp_path, drain_seconds=DRAIN_SECONDS)
    try:
        result = scenario(h, True)
    finally:
        h.close()
    # CI installs every server a scenario needs
    require_tool(not result.not_run, f"{scenario.__name__} did not run: {result.not_run}")
    assert result.events_in > 0
    assert (result.lost_events, result.lost_moments) == (0, 0), result.notes
    assert result.duplicates == 0
    assert result.duplicate_alerts == 0
    assert result.scores_off == 0, result.notes
    assert not result.problems, result.notes
