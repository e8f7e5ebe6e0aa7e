"""cxpulse: touchpoint events from Kafka, scored per customer, into ClickHouse.

One installed namespace. The repository keeps its folders at the top level, and the build
maps them into this package (pyproject.toml, ``[tool.setuptools] package-dir``):

    streams/  ->  cxpulse.streams   (worker, agents, CLI, settings, publisher SDK)
    schemas/  ->  cxpulse.schemas   (the event contract and every row, pydantic)
    sinks/    ->  cxpulse.sinks     (ClickHouse backends)

The client API is exported here, lazily, so ``from cxpulse import Publisher`` needs only
the base install (``pip install cxpulse``: pydantic, kafka-python) and importing
``cxpulse`` never imports the worker's dependencies (Faust, chDB, the sentiment
analysers; ``pip install 'cxpulse[worker]'``)::

    from cxpulse import Publisher, load_settings

    with Publisher(load_settings(kafka_url="kafka://127.0.0.1:9092")) as publisher:
        publisher.publish_many(events)  # dicts or TouchpointEvent; invalid ones are counted
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cxpulse.schemas.envelope import (
        MAX_BATCH_EVENTS,
        MAX_MESSAGE_BYTES,
        Rejected,
        decode_message,
        describe_validation_error,
        encode_batch,
    )
    from cxpulse.schemas.events import CHANNELS, SCHEMA_VERSION, Feedback, TouchpointEvent
    from cxpulse.streams.partitioning import partition_for
    from cxpulse.streams.publisher import (
        InputError,
        Publisher,
        PublishError,
        PublishSummary,
        Rejection,
        publish_source,
        validate_event,
    )
    from cxpulse.streams.settings import ConfigError, Settings, get_settings, load_settings

# name -> the module that defines it (imported on first use)
_EXPORTS: dict[str, str] = {
    # the event contract
    "TouchpointEvent": "cxpulse.schemas.events",
    "Feedback": "cxpulse.schemas.events",
    "CHANNELS": "cxpulse.schemas.events",
    "SCHEMA_VERSION": "cxpulse.schemas.events",
    # the wire envelope (a Kafka message is a JSON array of events)
    "encode_batch": "cxpulse.schemas.envelope",
    "decode_message": "cxpulse.schemas.envelope",
    "describe_validation_error": "cxpulse.schemas.envelope",
    "Rejected": "cxpulse.schemas.envelope",
    "MAX_BATCH_EVENTS": "cxpulse.schemas.envelope",
    "MAX_MESSAGE_BYTES": "cxpulse.schemas.envelope",
    "partition_for": "cxpulse.streams.partitioning",
    # the publisher SDK
    "Publisher": "cxpulse.streams.publisher",
    "PublishSummary": "cxpulse.streams.publisher",
    "Rejection": "cxpulse.streams.publisher",
    "PublishError": "cxpulse.streams.publisher",
    "InputError": "cxpulse.streams.publisher",
    "publish_source": "cxpulse.streams.publisher",
    "validate_event": "cxpulse.streams.publisher",
    # the settings the SDK reads (CXPULSE_* environment variables)
    "Settings": "cxpulse.streams.settings",
    "ConfigError": "cxpulse.streams.settings",
    "load_settings": "cxpulse.streams.settings",
    "get_settings": "cxpulse.streams.settings",
}

__all__ = [
    "CHANNELS",
    "MAX_BATCH_EVENTS",
    "MAX_MESSAGE_BYTES",
    "SCHEMA_VERSION",
    "ConfigError",
    "Feedback",
    "InputError",
    "PublishError",
    "PublishSummary",
    "Publisher",
    "Rejected",
    "Rejection",
    "Settings",
    "TouchpointEvent",
    "decode_message",
    "describe_validation_error",
    "encode_batch",
    "get_settings",
    "load_settings",
    "partition_for",
    "publish_source",
    "validate_event",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cxpulse' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
