"""Every ClickHouse table and view cxpulse owns, in creation order.

One list, assembled from the row modules, so the sinks create, resolve and document
exactly what the stream writes. Add a table or view to its row module and to this list.
"""

from __future__ import annotations

from cxpulse.schemas.alert_rows import ALERT_SPECS
from cxpulse.schemas.case_rows import CASE_SPECS
from cxpulse.schemas.rows import SPECS as EVENT_SPECS
from cxpulse.schemas.rows import TableSpec, ViewSpec
from cxpulse.schemas.score_rows import SCORE_SPECS

SPECS: tuple[TableSpec | ViewSpec, ...] = (
    *EVENT_SPECS,
    *SCORE_SPECS,
    *ALERT_SPECS,
    *CASE_SPECS,
)
