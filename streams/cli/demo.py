"""``cxpulse demo``: the whole pipeline on the embedded default, with a report."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("--dir", "data_dir", default="./var", show_default=True, help="data directory")
@click.option(
    "--customers",
    default=20_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="simulated customers",
)
@click.option("--seed", default=7, show_default=True, help="simulation seed")
@click.option(
    "--live",
    default=12,
    show_default=True,
    type=click.IntRange(min=0),
    help="warning and critical alerts to show live (0: none)",
)
@click.option(
    "--timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="seconds to wait for rows",
)
def demo(data_dir: str, customers: int, seed: int, live: int, timeout: float) -> None:
    """The whole story on the embedded default: broker, worker and chDB start; eight
    simulated hours of traffic with an ATM outage, long store queues, a web login spike
    and a call-center backlog are published; warning and critical alerts show as they
    fire; then a report from ClickHouse (emotion map, worst touchpoints, scores, alerts by
    rule, dead letters with their reasons, one customer's score story)."""
    from cxpulse.streams.dev.demo import run_demo

    sys.exit(run_demo(data_dir, timeout, customers=customers, seed=seed, live=live))
