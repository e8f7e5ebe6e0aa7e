"""Pure experience scoring: no faust, kafka, clickhouse, prometheus, yaml or sentiment libs.

Imports schemas and the standard library only; time is passed in. See docs/scoring.md.
"""

from cxpulse.streams.core.apply import (
    apply_event,
    apply_events,
    explanation,
    score_update,
)

__all__ = ["apply_event", "apply_events", "explanation", "score_update"]
