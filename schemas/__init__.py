"""pydantic models: the single source of truth for events, dead letters and rows."""

from cxpulse.schemas.events import CHANNELS, SCHEMA_VERSION, Feedback, TouchpointEvent

__all__ = ["CHANNELS", "SCHEMA_VERSION", "Feedback", "TouchpointEvent"]
