"""``cxpulse broker``: the bundled Kafka-protocol broker, in the foreground."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option(
    "--port", default=9092, show_default=True, type=click.IntRange(1, 65535), help="Kafka port"
)
@click.option("--log-dir", default="./var/logs", show_default=True, help="where the log goes")
def broker(host: str, port: int, log_dir: str) -> None:
    """Run the bundled Kafka-protocol broker (tansu, in-memory storage) until Ctrl-C."""
    from cxpulse.streams.dev.broker import run_broker_forever

    run_broker_forever(host, port, log_dir)
