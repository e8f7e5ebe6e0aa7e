"""The worker's log filters (cxpulse.streams.logs) and its start-up line, on real loggers."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from cxpulse import native
from cxpulse.streams.app import tables_dir
from cxpulse.streams.logs import WorkerLogFilters
from cxpulse.streams.settings import load_settings
from cxpulse.streams.worker import startup_summary


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage()))


@pytest.fixture
def root() -> Iterator[tuple[logging.Logger, Collect, WorkerLogFilters]]:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    handler = Collect()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    filters = WorkerLogFilters(repeat_interval=60.0)
    filters.install(root)
    try:
        yield root, handler, filters
    finally:
        root.handlers, root.level = saved, level


def test_repeated_client_errors_are_logged_once_then_counted(
    root: tuple[logging.Logger, Collect, WorkerLogFilters],
) -> None:
    _, handler, filters = root
    client = logging.getLogger("aiokafka.client")
    for node in range(74):
        client.error("Unable connect to node with id %s: %s", node % 2, "refused")
    logging.getLogger("cxpulse.streams.worker").error("an error of our own")
    logging.getLogger("cxpulse.streams.worker").error("an error of our own")
    assert handler.lines == [
        ("ERROR", "Unable connect to node with id 0: refused"),
        ("ERROR", "an error of our own"),
        ("ERROR", "an error of our own"),  # only the Kafka clients' lines are counted
    ]
    filters.repeats.flush(final=True)
    assert handler.lines[-1] == (
        "ERROR",
        "Unable connect to node with id 1: refused [repeated 73 times in the last 0s]",
    )
    client.error("Unable connect to node with id %s: %s", 0, "refused")  # a new window
    assert handler.lines[-1] == ("ERROR", "Unable connect to node with id 0: refused")


def test_faust_tables_are_debug_and_keepalive_is_a_warning_until_ready(
    root: tuple[logging.Logger, Collect, WorkerLogFilters],
) -> None:
    logger, handler, filters = root
    faust_log = logging.getLogger("faust.transport.drivers.aiokafka")
    faust_log.info("Subscribed to topic(s): %s", {"cx.events", "cx.touchpoints"})
    faust_log.info("Highwater for active changelog partitions:\n%s", "+Highwater--+\n| x |")
    faust_log.info("Joined group %r", "cxpulse")
    assert handler.lines == [("INFO", "Joined group 'cxpulse'")]

    keepalive = logging.getLogger("faust.transport.consumer")
    keepalive.error("Thread keepalive is not responding...")
    assert handler.lines[-1][0] == "WARNING" and "while the worker starts" in handler.lines[-1][1]
    filters.keepalive.ready = True
    keepalive.error("Thread keepalive is not responding...")
    assert handler.lines[-1] == ("ERROR", "Thread keepalive is not responding...")

    logger.setLevel(logging.DEBUG)  # CXPULSE_LOG_LEVEL=debug shows the tables
    faust_log.info("Subscribed to topic(s): %s", {"cx.events"})
    assert handler.lines[-1][0] == "DEBUG"


def test_the_start_up_line_names_everything_and_masks_the_password() -> None:
    settings = load_settings(
        kafka_url="kafka://k1:9092",
        clickhouse_url="clickhouse://app:s3cret-pw@ch:9000/cx",
        web_port=6070,
        topic_prefix="acme",
        app_id="cx-acme",
    )
    line = startup_summary(settings)
    assert "s3cret-pw" not in line and "\n" not in line
    for part in (
        "consumes acme.touchpoints from Kafka kafka://k1:9092",
        "group cx-acme",
        "writes ClickHouse clickhouse://app:***@ch:9000/cx",
        f"keeps the customer table on local disk (RocksDB) in {tables_dir(settings)} ",
        "cx-acme-customer_state-changelog",
        "web port 6070",
        f"scoring core: {native.STATUS}",  # compiled, or Python and why (cxpulse/native.py)
    ):
        assert part in line, (part, line)
    memory = startup_summary(settings.model_copy(update={"state_store": "memory"}))
    assert "keeps the customer table in memory with changelogs " in memory, memory
