"""The ``cxpulse`` command line: broker, worker, publish, query, demo.

Settings come from ``CXPULSE_*`` environment variables (see ``cxpulse worker --help``);
options given here override them for one run. Errors print one line and exit 2.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from schemas.alerts import RULES, SEVERITIES
from streams.settings import ConfigError, Settings, load_settings


def _settings(**overrides: Any) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _env_help() -> str:
    lines = []
    for name, field in Settings.model_fields.items():
        default = field.default
        lines.append(f"  CXPULSE_{name.upper():<28} {field.description} [default: {default}]")
    return "\n".join(lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="cxpulse")
def cli() -> None:
    """cxpulse: touchpoint events from Kafka, scored per customer, into ClickHouse.

    \b
    Quick start (embedded: bundled Kafka-protocol broker + chDB, no Docker):
      cxpulse demo                       # everything at once, under ./var
    \b
    Or piece by piece:
      cxpulse broker                     # terminal 1
      cxpulse worker                     # terminal 2
      cxpulse publish events.jsonl       # terminal 3
      cxpulse query "SELECT channel, count() FROM touchpoint_events FINAL GROUP BY channel"
    """


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=9092, show_default=True, type=int, help="Kafka port")
@click.option("--log-dir", default="./var/logs", show_default=True, help="where the log goes")
def broker(host: str, port: int, log_dir: str) -> None:
    """Run the bundled Kafka-protocol broker (tansu, in-memory storage) until Ctrl-C."""
    from streams.broker import run_broker_forever

    run_broker_forever(host, port, log_dir)


@cli.command(epilog="Environment:\n\n" + _env_help())
@click.option("--web-port", type=int, help="override CXPULSE_WEB_PORT (/metrics, /query)")
def worker(web_port: int | None) -> None:
    """Run a stream worker: validate, score, alert and sink into ClickHouse.

    Reads CXPULSE_KAFKA_URL and CXPULSE_CLICKHOUSE_URL; serves Prometheus metrics on
    http://HOST:CXPULSE_WEB_PORT/metrics. Start more workers with the same
    CXPULSE_APP_ID (and other web ports) to share the partitions.
    """
    from streams.worker import run_worker

    run_worker(_settings(web_port=web_port))


@cli.command()
@click.argument("source", type=str)
@click.option("--batch-size", default=500, show_default=True, help="events per Kafka message")
@click.option("--topic", default=None, help="override the topic (default: <prefix>.touchpoints)")
def publish(source: str, batch_size: int, topic: str | None) -> None:
    """Publish touchpoint events from SOURCE (a file or - for stdin).

    SOURCE holds JSON Lines (one event per line) or one JSON array of events. Each event
    is validated against the contract first; invalid ones (and any line or array item
    over the 8 MiB message limit) are reported, not sent, and the exit status is then 1.
    """
    from streams.publisher import print_summary, publish_source, rejected_line

    settings = _settings()
    summary = publish_source(source, settings, batch_size=batch_size, topic=topic)
    print_summary(summary)
    closing = rejected_line(summary)
    if closing is not None:  # some input did not go out: a script must notice
        click.echo(closing, err=True)
        sys.exit(1)


@cli.command()
@click.argument("sql")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "table", "tsv", "csv", "json"]),
    default="auto",
    show_default=True,
    help="auto = a table on a terminal, TSV in a pipe",
)
def query(sql: str, fmt: str) -> None:
    """Run a read-only SQL query on the configured ClickHouse and print the result.

    With the embedded chDB, a running worker answers the query (its directory can be
    open in one process only); without a worker the directory is read directly.
    """
    from streams.query import print_result, run_query

    columns, rows = run_query(_settings(), sql)
    print_result(columns, rows, fmt)


@cli.command()
@click.option("--follow", "-f", is_flag=True, help="keep printing new alerts until Ctrl-C")
@click.option(
    "--from-beginning", is_flag=True, help="with --follow: start with the alerts already sent"
)
@click.option("--severity", "-s", multiple=True, type=click.Choice(SEVERITIES), help="repeatable")
@click.option("--rule", "-r", multiple=True, type=click.Choice(RULES), help="repeatable")
@click.option(
    "--channel", "-c", multiple=True, help="web, app, call_center, store, atm; repeatable"
)
@click.option("--tier", "-t", multiple=True, type=click.Choice(["A", "B", "C"]), help="repeatable")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line, for piping")
@click.option("--max", "max_alerts", type=int, default=None, help="stop after this many")
@click.option(
    "--per-rule", type=click.IntRange(min=1), default=None, help="at most this many of each rule"
)
@click.option(
    "--idle-timeout", type=float, default=None, help="stop after this many seconds without alerts"
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
    from streams.admin import wait_for_kafka
    from streams.alerts_follow import follow_alerts
    from streams.topics import alerts as alerts_topic

    settings = _settings()
    wait_for_kafka(settings.bootstrap_servers, timeout=10.0)
    follow_alerts(
        settings.bootstrap_servers,
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


@cli.group()
def model() -> None:
    """The experience model: factors, importance, expectations, touchpoints (YAML)."""


@model.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def model_check(file: str) -> None:
    """Validate a model FILE; print a summary, or one line saying what to fix."""
    from schemas.model import ModelError
    from streams.model_check import check_model_file

    try:
        click.echo(check_model_file(file))
    except ModelError as exc:
        raise ConfigError(str(exc)) from None


@model.command("show-default")
def model_show_default() -> None:
    """Print the shipped default model (a starting point for your own)."""
    from streams.model_check import DEFAULT_MODEL_PATH

    click.echo(DEFAULT_MODEL_PATH.read_text(), nl=False)


@cli.command()
@click.option("--dir", "data_dir", default="./var", show_default=True, help="data directory")
@click.option("--customers", default=20_000, show_default=True, help="simulated customers")
@click.option("--seed", default=7, show_default=True, help="simulation seed")
@click.option(
    "--live", default=12, show_default=True, help="warning and critical alerts to show live"
)
@click.option("--timeout", default=300.0, show_default=True, help="seconds to wait for rows")
def demo(data_dir: str, customers: int, seed: int, live: int, timeout: float) -> None:
    """The whole story on the embedded default: broker, worker and chDB start; eight
    simulated hours of traffic with an ATM outage, long store queues, a web login spike
    and a call-center backlog are published; warning and critical alerts show as they
    fire; then a report from ClickHouse (emotion map, worst touchpoints, scores, alerts by
    rule, dead letters with their reasons, one customer's score story)."""
    from streams.demo import run_demo

    sys.exit(run_demo(data_dir, timeout, customers=customers, seed=seed, live=live))


def _add_plugins() -> None:
    from streams.simulate.runner import add_simulate_command

    add_simulate_command(cli)


_add_plugins()


def main() -> None:
    """Entry point: one-line errors instead of tracebacks for what a user can fix."""
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"cxpulse: {exc.message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        os._exit(0)


if __name__ == "__main__":
    main()
