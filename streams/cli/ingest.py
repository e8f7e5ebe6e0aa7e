"""``cxpulse ingest``: touchpoint events over HTTP (POST /events) onto cx.touchpoints."""

from __future__ import annotations

import click

from cxpulse.streams.cli.common import env_help, settings_from

EPILOG = """\b
Examples:
  export CXPULSE_INGEST_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')
  cxpulse ingest --host 0.0.0.0 --port 8080
  curl -sS -H "Authorization: Bearer $CXPULSE_INGEST_TOKEN" \\
       -H 'Content-Type: application/json' --data-binary @events.json \\
       http://127.0.0.1:8080/events
  curl ... -H 'Content-Type: application/x-ndjson' --data-binary @events.jsonl ...

\b
Answers: 200 all accepted, 207 some rejected, 400 nothing accepted, 401 token,
413 too large, 415 content type, 503 Kafka did not acknowledge (send it again).
More in docs/ingest.md.

Environment:

""" + env_help(("kafka_url", "topic_prefix", "partitions", "ingest_"))


@click.command(epilog=EPILOG)
@click.option(
    "--host", default=None, help="address to listen on [default: CXPULSE_INGEST_HOST or 127.0.0.1]"
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="port to listen on [default: CXPULSE_INGEST_PORT or 8080]",
)
def ingest(host: str | None, port: int | None) -> None:
    """Accept touchpoint events over HTTP and publish them to Kafka.

    POST /events takes one event (a JSON object), a JSON array of events, or JSON Lines;
    each is checked against the contract, valid ones are published to <prefix>.touchpoints
    (keyed and partitioned by customer_id, as cxpulse publish does) and acknowledged by
    Kafka before the answer, invalid ones go to the dead-letter topic with the reason. The
    answer lists each item: accepted, or rejected and why. A process of its own: run as
    many as the load needs, behind a load balancer. /livez, /readyz and /metrics too.

    Without CXPULSE_INGEST_TOKEN it listens on a loopback address only.
    """
    from cxpulse.streams.ingest import run_ingest

    run_ingest(settings_from(ingest_host=host, ingest_port=port))
