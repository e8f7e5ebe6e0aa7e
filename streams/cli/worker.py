"""``cxpulse worker``: a worker in the foreground, its settings listed in ``--help``."""

from __future__ import annotations

import click

from cxpulse.streams.cli.common import env_help, settings_from


@click.command(epilog="Environment:\n\n" + env_help())
@click.option("--web-port", type=int, help="override CXPULSE_WEB_PORT (/metrics, /query)")
def worker(web_port: int | None) -> None:
    """Run a stream worker: validate, score, alert and sink into ClickHouse.

    Reads CXPULSE_KAFKA_URL (TLS and SASL: CXPULSE_KAFKA_SECURITY_PROTOCOL and the
    CXPULSE_KAFKA_SASL_* / CXPULSE_KAFKA_SSL_* settings below) and
    CXPULSE_CLICKHOUSE_URL; serves Prometheus metrics on
    http://HOST:CXPULSE_WEB_PORT/metrics. Start more workers with the same
    CXPULSE_APP_ID (and other web ports) to share the partitions.
    """
    from cxpulse.streams.worker import run_worker

    run_worker(settings_from(web_port=web_port))
