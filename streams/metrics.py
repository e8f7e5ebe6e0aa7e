"""Every Prometheus metric of a cxpulse worker, defined once, with its help text.

Label values are bounded sets (channels, tables, rule names, reason kinds): an unbounded
label such as a customer id would turn the registry into a memory leak.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

MESSAGES_IN = Counter(
    "cxpulse_messages_in_total",
    "Kafka messages read from the touchpoint topic (each holds one event or a batch).",
    registry=REGISTRY,
)
EVENTS_IN = Counter(
    "cxpulse_events_in_total",
    "Valid touchpoint events accepted, by channel.",
    ["channel"],
    registry=REGISTRY,
)
EVENTS_INVALID = Counter(
    "cxpulse_events_invalid_total",
    "Invalid events sent to the dead-letter topic, by reason kind.",
    ["reason"],
    registry=REGISTRY,
)
EVENT_LAG = Histogram(
    "cxpulse_event_lag_seconds",
    "Processing time minus occurred_at, observed when an event is validated.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400),
    registry=REGISTRY,
)
SINK_ROWS = Counter(
    "cxpulse_sink_rows_total",
    "Rows durably inserted into ClickHouse, by table.",
    ["table"],
    registry=REGISTRY,
)
SINK_BATCHES = Counter(
    "cxpulse_sink_batches_total",
    "Successful ClickHouse inserts (batches), by table.",
    ["table"],
    registry=REGISTRY,
)
SINK_FAILURES = Counter(
    "cxpulse_sink_failures_total",
    "Failed ClickHouse insert attempts (each is retried with backoff), by table.",
    ["table"],
    registry=REGISTRY,
)
SINK_INSERT_SECONDS = Histogram(
    "cxpulse_sink_insert_seconds",
    "Duration of one successful ClickHouse insert, by table.",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
SINK_PENDING_ROWS = Gauge(
    "cxpulse_sink_pending_rows",
    "Rows waiting for a ClickHouse insert (retrying or in flight), by table.",
    ["table"],
    registry=REGISTRY,
)


def render() -> tuple[bytes, str]:
    """The registry in the Prometheus text format, with its content type (without the
    charset parameter, which aiohttp wants separately; the text is ASCII anyway)."""
    return _generate_latest(REGISTRY), CONTENT_TYPE_LATEST.split("; charset")[0]
