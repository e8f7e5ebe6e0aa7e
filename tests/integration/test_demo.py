"""`cxpulse demo` tells its whole story on the embedded default (a smaller population)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

#: A live alert line: "2026-11-22 18:00:00Z CRITICAL touchpoint_degraded instance ..."
LIVE_LINE = re.compile(r"^\S+ \S+Z (?:CRITICAL|WARNING|INFO)\s+([a-z_]+) ", re.MULTILINE)


def demo(directory: Path, live: int = 8) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "cxpulse.streams.cli", "demo", "--dir", str(directory)),
            *("--customers", "6000", "--live", str(live), "--timeout", "240"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_demo_runs_the_story_end_to_end(tmp_path: Path) -> None:
    run = demo(tmp_path)
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    for section in (
        "live alerts",
        "events by channel",
        "emotion map",
        "worst touchpoint instances",
        "scores by tier and channel",
        "NPS by tier (loyalty",
        "what feedback text is about",
        "alerts by rule",
        "dead letters: invalid input, kept with the reason",
        "dead letters are in ClickHouse",
        "key drivers: importance learnt from the CSAT answers",
    ):
        assert section in out, section
    assert "ATM-0003" in out  # the injected outage shows up among the worst instances
    # the store queues incident's complaints are tagged with their topic (how many, and how
    # they feel on average, depends on the population: the test's is small)
    assert re.search(r"│ queue +│ \d+ +│", out), out
    # the customer's story lists contributions that add up with the rest
    assert "add up to score - 50" in out and "every other moment" in out
    # live alerts of several rules, each with its explanation, before the report
    live = out.split("live alerts", 1)[1].split("report from ClickHouse", 1)[0]
    shown = {m.group(1) for m in LIVE_LINE.finditer(live)}
    assert len(shown) >= 3, live
    # until its first alert the section says it is waiting (the follower's idle time
    # counts from the worker's Ready, so a slow start does not end it)
    first = LIVE_LINE.search(live)
    assert first is not None and "waiting for the first alert" in live[: first.start()], live
    # the dead letters' reasons, as a person reads them
    for reason in ("customer_id: Field required", "channel: Input should be", "not JSON"):
        assert reason in out, reason
    # scores move: one customer's trend from score_history, then why it is where it is
    assert re.search(r"its score moved \d+ \(\d\d:\d\d\)( → \d+ \(\d\d:\d\d\))+", out), out
    # a case: opened by an alert, escalated past its due time, acknowledged and resolved
    # as recovered, and the recovery moment moves the customer's score
    # (read as words: the terminal wraps the story's sentences wherever their length puts
    # the edge, which depends on the customer and the times drawn)
    cases = " ".join(out.split("cases: owned, escalated, resolved", 1)[1].split())
    assert "private-banking" in cases and "a case_overdue alert on cx.alerts" in cases, cases
    changes = re.findall(r"v\d+ (\w+) +by ([\w-]+)", cases)
    assert [c for c, _ in changes if c != "updated"] == [
        "opened",
        "escalated",
        "acknowledged",
        "resolved",
    ], cases
    assert ("resolved", "demo-operator") in changes
    moved = re.search(r"service-recovery moment; score ([\d.]+) → ([\d.]+)", cases)
    assert moved and float(moved.group(2)) > float(moved.group(1)), cases

    # the closing hint runs as printed (one line, not wrapped), here with the worker gone
    hints = [line.strip() for line in out.splitlines() if "CXPULSE_CLICKHOUSE_URL=" in line]
    assert len(hints) == 1 and hints[0].endswith("GROUP BY rule'"), out[-2000:]
    query = subprocess.run(hints[0], shell=True, capture_output=True, text=True, timeout=120)
    assert query.returncode == 0, query.stderr
    assert query.stdout.splitlines()[0].split() == ["rule", "count()"], query.stdout
    assert "touchpoint_degraded" in query.stdout, query.stdout

    # make demo a second time in the same directory: the worker's tables on disk from the
    # first run must not meet the new, empty broker (the worker refused to start); and
    # with --live 0, the story without its live alerts (it ended in a traceback)
    again = demo(tmp_path, live=0)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "dead letters are in ClickHouse" in again.stdout
    assert "live alerts" not in again.stdout and "Traceback" not in again.stderr
