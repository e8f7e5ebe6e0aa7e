"""The chaos suite's short form (``make chaos`` runs the long one): a worker restarted
while input arrives, and killed with SIGKILL while input arrives, on the bundled broker
and chDB. Nothing may be lost or doubled after FINAL, and the scores must be a clean
run's. tests/chaos/harness.py says what each count means."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import Harness
from tests.chaos.scenarios import kill9_while_publishing, publish_during_restarts

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]


@pytest.mark.parametrize(
    "scenario", [publish_during_restarts, kill9_while_publishing], ids=["restarts", "kill9"]
)
def test_chaos_short(scenario: Any, kafka_broker: Any, tmp_path: Path) -> None:
    h = Harness(scenario.__name__, kafka_broker.url, tmp_path)
    try:
        result = scenario(h, True)
    finally:
        h.close()
    assert result.events_in > 0
    assert (result.lost_events, result.lost_moments) == (0, 0), result.notes
    assert result.duplicates == 0
    assert result.duplicate_alerts == 0
    assert result.scores_off == 0, result.notes
