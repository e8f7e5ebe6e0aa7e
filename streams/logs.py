"""What the worker's log shows: one line per problem, not one per retry, and no tables.

Faust (``mode``) configures the root logger when the worker starts; the worker then puts
these filters on its handlers (``install``):

- ``RepeatFilter``: the Kafka clients (aiokafka, kafka-python) log every failed
  connection attempt, metadata refresh and fetch as an ERROR: with the broker gone, some
  30 to 80 lines a second, for as long as it is gone. The first of each kind is logged;
  the same message again within ``interval`` seconds is counted instead, and the count
  is logged once the interval is over (``... [repeated 57 times in the last 10s]``),
  whether the message keeps coming or not (``flush``, on a timer of the worker).
- ``TableFilter``: Faust renders its start-up and rebalance bookkeeping (subscribed
  topics, assigned partitions, changelog highwaters and offsets) as text tables: some
  130 lines at every start and every rebalance. They are DEBUG lines here (shown with
  ``CXPULSE_LOG_LEVEL=debug``); the worker's own start-up line says what it consumes.
- ``KeepaliveFilter``: ``mode`` logs ``Thread keepalive is not responding...`` as an
  ERROR when the consumer thread's event loop has not run for 3 s. While the worker
  starts (CPU busy with imports, the sentiment models loading in their process, the
  group join) that happens without anything being wrong: a WARNING that says so until
  the worker is Ready, an ERROR after.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

#: Loggers whose repeated messages are counted instead of repeated (the Kafka clients).
REPEATING_LOGGERS = ("aiokafka", "kafka")
#: Loggers whose text tables are demoted to DEBUG.
TABLE_LOGGERS = ("faust", "aiokafka", "mode")
_SUMMARY = "_cxpulse_repeat_summary"


class RepeatFilter(logging.Filter):
    """Lets the first of a kind of WARNING or ERROR through, counts the same one again
    for ``interval`` seconds, then logs the count. A kind is (logger, level, message
    template): the arguments (a node id, an address) may differ."""

    def __init__(self, interval: float = 10.0, prefixes: tuple[str, ...] = REPEATING_LOGGERS):
        super().__init__()
        self.interval = interval
        self.prefixes = prefixes
        self._lock = threading.Lock()
        # kind -> [window start, repeats counted, the last repeat's text]
        self._seen: dict[tuple[str, int, str], list[Any]] = {}

    def _kind(self, record: logging.LogRecord) -> tuple[str, int, str] | None:
        if record.levelno < logging.WARNING or getattr(record, _SUMMARY, False):
            return None
        if not record.name.startswith(self.prefixes):
            return None
        return record.name, record.levelno, str(record.msg)

    def filter(self, record: logging.LogRecord) -> bool:
        kind = self._kind(record)
        if kind is None:
            return True
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(kind)
            if seen is not None and now - seen[0] < self.interval:
                seen[1] += 1
                seen[2] = _message(record)
                return False
            self._seen[kind] = [now, 0, ""]
        if seen is not None and seen[1]:
            _annotate(record, f"[repeated {seen[1] + 1} times in the last {now - seen[0]:.0f}s]")
        return True

    def flush(self, *, final: bool = False) -> None:
        """Log the counts of the kinds whose interval is over (all of them: ``final``)."""
        now = time.monotonic()
        due = []
        with self._lock:
            for kind, seen in list(self._seen.items()):
                if final or now - seen[0] >= self.interval:
                    del self._seen[kind]
                    if seen[1]:
                        due.append((kind, seen[1], now - seen[0], seen[2]))
        for (name, level, _), repeats, seconds, text in due:
            logging.getLogger(name).log(
                level,
                "%s [repeated %d times in the last %.0fs]",
                text,
                repeats,
                seconds,
                extra={_SUMMARY: True},
            )


class TableFilter(logging.Filter):
    """Turns Faust's text tables into DEBUG lines: dropped unless the root logs DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not record.name.startswith(TABLE_LOGGERS):
            return True
        if not is_table(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def is_table(record: logging.LogRecord) -> bool:
    """Whether Faust's log formatter renders this record as a text table: a non-empty
    set, list or mapping argument (``faust.worker.format_log_arguments``), or a message
    that holds one already (the recovery's highwater and offset tables)."""
    args = record.args
    values = args.values() if isinstance(args, Mapping) else (args or ())
    if isinstance(args, Mapping) and args:
        return True
    for arg in values:
        if isinstance(arg, set | frozenset | list | Mapping) and arg:
            return True
    return "\n+" in _message(record)


class KeepaliveFilter(logging.Filter):
    """``Thread keepalive is not responding`` as a WARNING until the worker is Ready."""

    TEXT = "Thread keepalive is not responding"

    def __init__(self) -> None:
        super().__init__()
        self.ready = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.ready or record.levelno != logging.ERROR or self.TEXT not in str(record.msg):
            return True
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        _annotate(
            record,
            "(while the worker starts: its consumer thread was held up for over 3 s, and goes on)",
        )
        return True


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a record whose arguments do not fit its template
        return str(record.msg)


def _annotate(record: logging.LogRecord, note: str) -> None:
    if note:
        # an empty tuple: mode's formatter turns None into (None,) and formats again
        record.msg, record.args = f"{_message(record).rstrip()} {note}", ()


class WorkerLogFilters:
    """The filters of one worker, installed on the root logger's handlers."""

    def __init__(self, repeat_interval: float = 10.0) -> None:
        self.repeats = RepeatFilter(repeat_interval)
        self.tables = TableFilter()
        self.keepalive = KeepaliveFilter()

    def install(self, root: logging.Logger) -> None:
        for handler in root.handlers:
            for f in (self.tables, self.keepalive, self.repeats):
                if f not in handler.filters:
                    handler.addFilter(f)
