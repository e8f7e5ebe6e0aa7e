"""ClickHouse out: the writer that runs (``sinks.writer``: inserts off the event loop,
retried with backpressure, refused rows set aside), the backends (server, chDB, memory),
table DDL and errors. The backends block; the writer runs them on its own thread.
"""

from sinks.base import Backend, Row
from sinks.clickhouse import open_backend
from sinks.errors import (
    SinkConfigError,
    SinkError,
    SinkLocked,
    SinkUnavailable,
    SinkWriteError,
)

__all__ = [
    "Backend",
    "Row",
    "SinkConfigError",
    "SinkError",
    "SinkLocked",
    "SinkUnavailable",
    "SinkWriteError",
    "open_backend",
]
