"""`cxpulse demo` tells its whole story on the embedded default (a smaller population)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]


def test_demo_runs_the_story_end_to_end(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            *(sys.executable, "-m", "streams.cli", "demo", "--dir", str(tmp_path)),
            *("--customers", "6000", "--live", "3", "--timeout", "240"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    for section in (
        "live alerts",
        "events by channel",
        "emotion map",
        "worst touchpoint instances",
        "scores by tier and channel",
        "alerts by rule",
        "dead letters are in ClickHouse",
    ):
        assert section in out, section
    assert "CRITICAL" in out  # at least one live alert was shown as it fired
    assert "ATM-0003" in out  # the injected outage shows up among the worst instances
