"""``cxpulse alerts``: recent and live alerts, filtered."""

from __future__ import annotations

import click

from cxpulse.schemas.alerts import ALERT_RULES, SEVERITIES
from cxpulse.streams.cli.common import settings_from


@click.command()
@click.option("--follow", "-f", is_flag=True, help="keep printing new alerts until Ctrl-C")
@click.option(
    "--from-beginning", is_flag=True, help="with --follow: start with the alerts already sent"
)
@click.option("--severity", "-s", multiple=True, type=click.Choice(SEVERITIES), help="repeatable")
@click.option("--rule", "-r", multiple=True, type=click.Choice(ALERT_RULES), help="repeatable")
@click.option(
    "--channel", "-c", multiple=True, help="web, app, call_center, store, atm; repeatable"
)
@click.option("--tier", "-t", multiple=True, type=click.Choice(["A", "B", "C"]), help="repeatable")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line, for piping")
@click.option(
    "--max", "max_alerts", type=click.IntRange(min=1), default=None, help="stop after this many"
)
@click.option(
    "--per-rule", type=click.IntRange(min=1), default=None, help="at most this many of each rule"
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="stop after this many seconds without alerts",
)
def alerts(
    follow: bool,
    from_beginning: bool,
    severity: tuple[str, ...],
    rule: tuple[str, ...],
    channel: tuple[str, ...],
    tier: tuple[str, ...],
    as_json: bool,
    max_alerts: int | None,
    per_rule: int | None,
    idle_timeout: float | None,
) -> None:
    """Show early-warning alerts from the alerts topic, coloured by severity.

    Without --follow: the alerts already sent, then exit. With --follow: new alerts as
    they fire (add --from-beginning for the earlier ones too). Filters combine.

    \b
    Examples:
      cxpulse alerts --follow --severity critical --tier A
      cxpulse alerts --follow --json | jq .explanation
    """
    from cxpulse.streams.admin import check_kafka
    from cxpulse.streams.alerts_follow import follow_alerts
    from cxpulse.streams.topics import alerts as alerts_topic

    settings = settings_from()
    check_kafka(settings)
    follow_alerts(
        settings,
        alerts_topic(settings),
        severity=set(severity) or None,
        rules=set(rule) or None,
        channels=set(channel) or None,
        tiers=set(tier) or None,
        as_json=as_json,
        from_beginning=from_beginning or not follow,
        max_alerts=max_alerts,
        per_rule=per_rule,
        idle_timeout=idle_timeout if (follow or idle_timeout is not None) else 3.0,
    )
