"""``cxpulse publish``: events from a file or standard input onto cx.touchpoints."""

from __future__ import annotations

import sys

import click

from cxpulse.schemas.envelope import MAX_BATCH_EVENTS
from cxpulse.streams.cli.common import settings_from


@click.command()
@click.argument("source", type=str)
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, MAX_BATCH_EVENTS),
    help="events per Kafka message",
)
@click.option("--topic", default=None, help="override the topic (default: <prefix>.touchpoints)")
def publish(source: str, batch_size: int, topic: str | None) -> None:
    """Publish touchpoint events from SOURCE (a file or - for stdin).

    SOURCE holds JSON Lines (one event per line) or one JSON array of events. Each event
    is validated against the contract first; invalid ones (and any line or array item
    over the 8 MiB message limit) are reported, not sent, and the exit status is then 1.

    Kafka is CXPULSE_KAFKA_URL, with CXPULSE_KAFKA_SECURITY_PROTOCOL and the
    CXPULSE_KAFKA_SASL_* / CXPULSE_KAFKA_SSL_* settings (listed by cxpulse worker --help).
    """
    from cxpulse.streams.publisher import print_summary, publish_source, rejected_line

    settings = settings_from()
    summary = publish_source(source, settings, batch_size=batch_size, topic=topic)
    print_summary(summary)
    closing = rejected_line(summary)
    if closing is not None:  # some input did not go out: a script must notice
        click.echo(closing, err=True)
        sys.exit(1)
