"""Every Prometheus metric of a cxpulse worker (and of ``cxpulse ingest``, in a registry
of its own), defined once, with its help text.

Label values are bounded sets (channels, tables, rule names, reason kinds): an unbounded
label such as a customer id would turn the registry into a memory leak.
"""

from __future__ import annotations

import gc
import threading
import time
from bisect import bisect_left
from collections import Counter as _Tally
from collections.abc import Iterable, Iterator
from functools import partial, reduce
from itertools import accumulate
from operator import add
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import INF, floatToGoString

REGISTRY = CollectorRegistry(auto_describe=True)


class BatchHistogram:
    """A histogram observed a batch of values at a time (``observe_many``), for what an
    agent has by the hundred in a take: event lags, scores. It exports the series of
    prometheus_client's ``Histogram`` (``_bucket{le}``, ``_count``, ``_sum``; not
    ``_created``), so rules and dashboards read it alike.

    Why: ``Histogram.observe`` takes a lock and walks the buckets in Python for every
    value, 1.3 µs each, on the event loop for every event; here a batch's values are
    sorted into buckets in C (``bisect`` through ``map``, tallied by ``Counter``) and added
    under one lock. A value goes to the first bucket whose bound it does not exceed, as
    there."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Iterable[float],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = tuple(float(b) for b in buckets)
        self._slot = partial(bisect_left, self._bounds)
        self._counts = [0] * (len(self._bounds) + 1)  # the last: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        """Observe every value of ``values``."""
        values = list(values)
        tally = _Tally(map(self._slot, values))
        with self._lock:
            for slot, n in tally.items():
                self._counts[slot] += n
            # added one by one, as ``Histogram`` adds them: the very same sum
            self._sum = reduce(add, values, self._sum)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        bounds = (*self._bounds, INF)
        buckets = [(floatToGoString(b), c) for b, c in zip(bounds, accumulate(counts), strict=True)]
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


WORKER_READY_SECONDS = Gauge(
    "cxpulse_worker_ready_seconds",
    "Seconds from the worker process's start to Faust's Ready (preflight, ClickHouse schema, "
    "consumer-group join, table recovery); 0 until then.",
    registry=REGISTRY,
)
READY = Gauge(
    "cxpulse_ready",
    "1 while /readyz answers 200, 0 while it answers 503 (the worker not Ready yet, or Kafka "
    "not answering, or inserts into ClickHouse failing, for longer than "
    "CXPULSE_READY_UNREACHABLE_SECONDS).",
    registry=REGISTRY,
)
KAFKA_UNREACHABLE_SECONDS = Gauge(
    "cxpulse_kafka_unreachable_seconds",
    "Seconds since Kafka last answered the worker's readiness probe (a metadata request "
    "every few seconds); 0 while the latest probe was answered.",
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "cxpulse_consumer_lag",
    "Records of a partition this worker consumes that the group has not committed yet: "
    "the end offset (read off the fetched records where the broker's is short) minus the "
    "committed offset, updated every 2 s; 0 once everything is processed and durable.",
    ["topic", "partition"],
    registry=REGISTRY,
)
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
EVENT_LAG = BatchHistogram(
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
SINK_LAST_INSERT = Gauge(
    "cxpulse_sink_last_insert_timestamp_seconds",
    "When the last successful ClickHouse insert into the table finished (Unix time), by "
    "table: one not written for long is a stalled sink or a pipeline without input.",
    ["table"],
    registry=REGISTRY,
)
SINK_FAILURES = Counter(
    "cxpulse_sink_failures_total",
    "Failed ClickHouse insert attempts, by table: retried with backoff, or split to "
    "find the rows ClickHouse refuses for their values.",
    ["table"],
    registry=REGISTRY,
)
SINK_ROWS_REFUSED = Counter(
    "cxpulse_sink_rows_refused_total",
    "Rows ClickHouse refused for their values, by table: isolated from their batch, "
    "logged, and kept in dead_letters (the rest of the batch was inserted).",
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


MOMENTS = Counter(
    "cxpulse_moments_total",
    "Events turned into experience readings (moments), by channel.",
    ["channel"],
    registry=REGISTRY,
)
DUPLICATE_EVENTS = Counter(
    "cxpulse_duplicate_events_total",
    "Events already applied to their customer's state (a replay): they change nothing.",
    registry=REGISTRY,
)
LATE_EVENTS = Counter(
    "cxpulse_late_events_total",
    "Events older than the allowed lateness: recorded as moments, not scored.",
    registry=REGISTRY,
)
HEALTH_LATE_EVENTS = Counter(
    "cxpulse_health_late_events_total",
    "Events the touchpoint health state ignored as later than health.allowed_lateness_minutes "
    "(stored and scored as usual; touchpoint_degraded did not count them).",
    registry=REGISTRY,
)
SCORING_FAILED_EVENTS = Counter(
    "cxpulse_scoring_failed_events_total",
    "Events whose customer's scoring, or whose touchpoint instance's health update, "
    "raised: sent to the dead-letter topic with the reason (scoring_failed); the rest of "
    "the batch went on.",
    registry=REGISTRY,
)
SCORE_UPDATES = Counter(
    "cxpulse_score_updates_total",
    "Customer score updates made (a customer_scores and a score_history row each).",
    registry=REGISTRY,
)
SCORE = BatchHistogram(
    "cxpulse_score",
    "Experience score (0..100) of each update.",
    buckets=(10, 20, 30, 35, 40, 45, 50, 55, 60, 70, 80, 90, 100),
    registry=REGISTRY,
)
STATE_BYTES = Histogram(
    "cxpulse_customer_state_bytes",
    "Size of a customer's state as written to the changelog (sampled).",
    buckets=(256, 512, 1024, 2048, 4096, 8192, 16384, 32768),
    registry=REGISTRY,
)
CHILD_PROCESS_RESTARTS = Counter(
    "cxpulse_child_process_restarts_total",
    "The worker's helper processes started again after one died (an OOM kill, say), by "
    "process: nothing is lost, but one that dies again and again wants memory or a look "
    "at the worker's log.",
    ["process"],
    registry=REGISTRY,
)
ROWS_PROCESS_FALLBACKS = Counter(
    "cxpulse_rows_process_fallbacks_total",
    "Parts of a take's rows the rows process could not make (it died, or a value it "
    "could not type), made on the event loop instead: nothing is lost, only the time.",
    registry=REGISTRY,
)
SCORE_PROCESS_FALLBACKS = Counter(
    "cxpulse_score_process_fallbacks_total",
    "Takes the scoring process could not score (it died, or could not start), scored on "
    "the event loop instead: nothing is lost, only the time.",
    registry=REGISTRY,
)
SCORE_PROCESS_SHARE = Gauge(
    "cxpulse_score_process_share",
    "The share of a take's events whose customers the scoring process scores while the "
    "event loop scores the others', as it follows both sides' seconds an event.",
    registry=REGISTRY,
)
SENTIMENT_SECONDS = Histogram(
    "cxpulse_sentiment_seconds",
    "Time to score the feedback texts of one batch (off the event loop).",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
    registry=REGISTRY,
)
CHECKPOINT_SECONDS = Histogram(
    "cxpulse_checkpoint_seconds",
    "A stateful step's checkpoint commit, from its cut until its offsets are acknowledged "
    "(its rows in ClickHouse, its states on disk and in the changelog), by table.",
    ["table"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
CHECKPOINT_WAIT_SECONDS = Counter(
    "cxpulse_checkpoint_wait_seconds",
    "Time a stateful step waited, at a cut, for its previous checkpoint's commit (one "
    "commit at a time): the step held up by its sink, by table.",
    ["table"],
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "cxpulse_batch_seconds",
    "Time a step spends on one batch or take, by step (label agent: validate, the "
    "experience agent's first step for raw messages; experience, the rest of its take; "
    "touchpoint_health; cases, a take of alerts and case commands).",
    ["agent"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)


ALERTS = Counter(
    "cxpulse_alerts_total",
    "Alerts emitted (new, or a repeat within the cooldown updating the count), by rule "
    "and severity.",
    ["rule", "severity"],
    registry=REGISTRY,
)
ALERT_LATENCY = Histogram(
    "cxpulse_alert_latency_seconds",
    "From the triggering event entering the pipeline (its record time on the internal "
    "topic) to the alert being sent.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
CASE_CHANGES = Counter(
    "cxpulse_case_changes_total",
    "Case changes applied by this worker (opened, updated, escalated, acknowledged, "
    "resolved, expired); an escalation also counts as a case_overdue alert in "
    "cxpulse_alerts_total.",
    ["change"],
    registry=REGISTRY,
)
CASES_OPEN = Gauge(
    "cxpulse_cases_open",
    "Cases not yet resolved or expired in the partitions this worker owns, by status "
    "(open, acknowledged), at its latest deadline check.",
    ["status"],
    registry=REGISTRY,
)
WEBHOOK_SENT = Counter(
    "cxpulse_webhook_sent_total", "Alerts delivered to the webhook.", registry=REGISTRY
)
WEBHOOK_FAILED = Counter(
    "cxpulse_webhook_failed_total",
    "Alerts the webhook did not accept after every retry.",
    registry=REGISTRY,
)
WEBHOOK_DROPPED = Counter(
    "cxpulse_webhook_dropped_total",
    "Alerts dropped because the webhook queue was full (oldest first).",
    registry=REGISTRY,
)

# -- cxpulse ingest (a process of its own: its /metrics shows these only) ----------------

INGEST_REGISTRY = CollectorRegistry(auto_describe=True)

INGEST_REQUESTS = Counter(
    "cxpulse_ingest_requests_total",
    "POST /events requests answered by cxpulse ingest, by HTTP status.",
    ["status"],
    registry=INGEST_REGISTRY,
)
INGEST_ACCEPTED = Counter(
    "cxpulse_ingest_events_accepted_total",
    "Events cxpulse ingest published to the touchpoint topic, acknowledged by Kafka.",
    registry=INGEST_REGISTRY,
)
INGEST_REJECTED = Counter(
    "cxpulse_ingest_events_rejected_total",
    "Items of POST /events that were not valid events (sent to the dead-letter topic), "
    "by reason kind; a body that cannot be read at all counts once, as not_readable.",
    ["reason"],
    registry=INGEST_REGISTRY,
)
INGEST_FAILED = Counter(
    "cxpulse_ingest_events_failed_total",
    "Valid events Kafka did not acknowledge (answered 503: the client resends them).",
    registry=INGEST_REGISTRY,
)
INGEST_SECONDS = Histogram(
    "cxpulse_ingest_request_seconds",
    "Time to answer POST /events, from its headers to Kafka's acknowledgements.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=INGEST_REGISTRY,
)
INGEST_IN_PROGRESS = Gauge(
    "cxpulse_ingest_requests_in_progress",
    "POST /events requests being read, checked or waiting for Kafka's acknowledgements.",
    registry=INGEST_REGISTRY,
)


class CollectionTimes:
    """The garbage collections of this process, by generation, the time they took, and
    the longest (``REFERENCE``).

    A collection stops every thread of the process, the event loop included, for as long
    as it scans, and what it scans grows with what the worker keeps alive between
    collections (states, rows waiting for their checkpoint). The callback only adds up
    numbers: taking a metric's lock inside a collection could deadlock on the lock of a
    metric the collection interrupted.
    """

    #: (name, type, labels, meaning) of what ``collect`` exports (the operations reference)
    REFERENCE = (
        (
            "cxpulse_gc_collections_total",
            "counter",
            "generation",
            "Garbage collections, by generation (2: the whole heap).",
        ),
        (
            "cxpulse_gc_longest_pause_seconds",
            "gauge",
            "",
            "The longest garbage collection since the worker started.",
        ),
        (
            "cxpulse_gc_seconds_total",
            "counter",
            "generation",
            "Time the garbage collector took (the event loop and every Python thread wait "
            "meanwhile), by generation.",
        ),
    )

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.counts[generation] += 1
        self.seconds[generation] += took
        if took > self.longest:
            self.longest = took

    def collect(self) -> Iterator[Metric]:
        (counted_name, _, _, counted), (longest_name, _, _, longest), (spent_name, _, _, spent) = (
            self.REFERENCE
        )
        # a counter family drops the name's "_total" and adds it back to its sample
        counts = CounterMetricFamily(counted_name, counted, labels=["generation"])
        seconds = CounterMetricFamily(spent_name, spent, labels=["generation"])
        for generation in range(3):
            counts.add_metric([str(generation)], self.counts[generation])
            seconds.add_metric([str(generation)], self.seconds[generation])
        yield counts
        yield GaugeMetricFamily(longest_name, longest, value=self.longest)
        yield seconds


_collection_times: list[CollectionTimes] = []


def time_collections(registry: CollectorRegistry = REGISTRY) -> CollectionTimes:
    """Time every garbage collection from now on (once per process) and export the times."""
    if not _collection_times:
        times = CollectionTimes()
        gc.callbacks.append(times)
        registry.register(times)
        _collection_times.append(times)
    return _collection_times[0]


def render(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The registry in the Prometheus text format, with its content type (without the
    charset parameter, which aiohttp wants separately; the text is ASCII anyway)."""
    return _generate_latest(registry), CONTENT_TYPE_LATEST.split("; charset")[0]
