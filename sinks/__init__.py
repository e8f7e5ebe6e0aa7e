"""ClickHouse out: the writer that runs (``cxpulse.sinks.writer``: inserts off the event loop,
retried with backpressure, refused rows set aside), the backends (server, chDB, memory),
table DDL and errors. The backends block; the writer runs them on its own thread.

The names below load on first use: the settings import ``cxpulse.sinks.urls`` only, and a
client install (``pip install cxpulse``) must not import the backends and every table's
row models with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cxpulse.sinks.base import Backend, Row
    from cxpulse.sinks.clickhouse import open_backend
    from cxpulse.sinks.errors import (
        SinkConfigError,
        SinkError,
        SinkLocked,
        SinkUnavailable,
        SinkWriteError,
    )

_EXPORTS = {
    "Backend": "base",
    "Row": "base",
    "open_backend": "clickhouse",
    "SinkConfigError": "errors",
    "SinkError": "errors",
    "SinkLocked": "errors",
    "SinkUnavailable": "errors",
    "SinkWriteError": "errors",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
