"""Start a worker: check what it depends on, create its topics, then run Faust.

Every check fails fast with one line that says what is wrong and how to fix it, before
Faust starts and buries the cause in a retry loop or a traceback.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import time

import faust

from streams import metrics, topics
from streams.app import TABLE_NAMES, create_app, default_connect
from streams.settings import ConfigError, Settings

log = logging.getLogger(__name__)


def cluster_id(settings: Settings) -> str:
    """The Kafka cluster id ('' when the broker does not say)."""
    from streams.admin import _admin

    admin = _admin(settings)
    try:
        return str(admin.describe_cluster().get("cluster_id") or "")
    finally:
        admin.close()


def adapt_to_broker(settings: Settings) -> Settings:
    """Work around what a broker gets wrong, when the settings leave it open.

    tansu (the bundled broker) reports a partition's end offset as if the last record
    batch held one record. Faust recovers a table by reading its changelog up to that
    end offset, so on tansu the worker reads the true end offsets off the records
    (``streams.kafka_consumer.true_end_offsets``) and producers batch as usual.
    """
    if settings.broker_end_offsets_exact is not None:
        return settings
    if cluster_id(settings).startswith("tansu"):
        log.info("tansu broker: table recovery reads end offsets off the records")
        return settings.model_copy(update={"broker_end_offsets_exact": False})
    return settings


def preflight(settings: Settings) -> Settings:
    """Model valid, Kafka reachable, topics created with their partition counts,
    ClickHouse usable. Returns the settings adapted to the broker."""
    from schemas.model import ModelError
    from streams.admin import check_kafka, ensure_topics
    from streams.model_check import load_model

    try:
        load_model(settings.model_path)
    except ModelError as exc:
        raise ConfigError(f"{exc} (CXPULSE_MODEL_PATH={settings.model_path})") from None

    check_kafka(settings)
    settings = adapt_to_broker(settings)
    ensure_topics(settings, topics.all_topics(settings, TABLE_NAMES))
    try:
        backend = default_connect(settings)()
    except Exception as exc:
        raise ConfigError(
            f"ClickHouse at {settings.clickhouse_display_url} is not usable: {first_line(exc)} "
            "(check CXPULSE_CLICKHOUSE_URL; for the embedded default use chdb:///./var/chdb)"
        ) from None
    close = getattr(backend, "close", None)
    if close is not None:
        close()
    return settings


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_worker(settings: Settings) -> None:
    """Run the Faust worker in the foreground until SIGINT/SIGTERM.

    ``kill -QUIT <pid>`` prints every thread's stack to the worker's stderr and keeps it
    running (as a JVM's thread dump does), even when the event loop itself is stuck: the
    way to see where a worker that stopped making progress is waiting. (``kill -USR1``
    is Faust's own dump of threads and asyncio tasks, which needs a live event loop.)
    """
    faulthandler.register(signal.SIGQUIT, all_threads=True, chain=False)
    started = time.monotonic()
    process_started = started - process_age()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings = preflight(settings)
    app = create_app(settings)
    log.info("preflight done in %.1fs", time.monotonic() - started)
    worker = ReadyTimedWorker(
        app, loglevel=settings.log_level.lower(), quiet=True, process_started=process_started
    )
    worker.execute_from_commandline()


class ReadyTimedWorker(faust.Worker):
    """A Faust worker that records how long it took to become Ready.

    Start-up time is what an operator waits through on every deploy and restart (and what
    a rebalance costs the partitions that move), so it is a metric
    (``cxpulse_worker_ready_seconds``) and a log line, not a guess.
    """

    def __init__(self, *args: object, process_started: float, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._process_started = process_started

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        seconds = time.monotonic() - self._process_started
        metrics.WORKER_READY_SECONDS.set(seconds)
        log.info("ready %.1fs after the worker process started", seconds)


def process_age() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 where that is unavailable),
    so the ready time includes interpreter start-up and imports, as an operator sees it."""
    try:
        with open("/proc/self/stat") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            up = float(uptime.read().split()[0])
        return max(0.0, up - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0
