"""ClickHouse out: the sink interface, batching, and the backends (server, chDB, memory).

Everything here blocks; the Faust agents run it in an executor thread (see
``streams.sink_writer``).
"""

from sinks.base import Backend, Row, Sink
from sinks.batching import Batcher
from sinks.clickhouse import ClickHouseSink, open_backend, retrying
from sinks.errors import (
    SinkConfigError,
    SinkError,
    SinkLocked,
    SinkUnavailable,
    SinkWriteError,
)

__all__ = [
    "Backend",
    "Batcher",
    "ClickHouseSink",
    "Row",
    "Sink",
    "SinkConfigError",
    "SinkError",
    "SinkLocked",
    "SinkUnavailable",
    "SinkWriteError",
    "open_backend",
    "retrying",
]
