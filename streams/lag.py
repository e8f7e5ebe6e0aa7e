"""Consumer lag per partition, for ``cxpulse_consumer_lag{topic,partition}``.

Lag is what Kafka's own tools call it: a partition's end offset minus the group's
committed offset (the records a restart would read again; 0 when everything fetched is
processed, durable and committed). The end offset is the larger of the highwater the
consumer's last fetch response carried and one past the last record fetched: the
bundled broker's end offsets count a record batch as one record, the records
themselves cannot be wrong.

Read on a timer of the worker off what the consumer keeps (Faust's committed offsets,
aiokafka's highwater per assigned partition, ``Consumer.fetched_end``, one dictionary
entry per partition set as messages are fetched): nothing is added per event, and
nothing waits on the broker.
"""

from __future__ import annotations

import logging
from typing import Any

from cxpulse.streams import metrics

log = logging.getLogger(__name__)

#: Seconds between updates of the gauge.
INTERVAL = 2.0


def consumer_lag(consumer: Any) -> dict[tuple[str, int], int]:
    """{(topic, partition): lag} of the stream partitions assigned to ``consumer`` (a
    Faust consumer); changelog partitions (read by table recovery) are left out."""
    is_changelog = getattr(consumer, "_is_changelog_tp", lambda tp: False)
    committed = consumer._committed_offset
    fetched_end = getattr(consumer, "fetched_end", {})
    lags: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        if is_changelog(tp):
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # not assigned any more (a rebalance), or no fetch yet
            highwater = None
        end = max(highwater or 0, fetched_end.get(tp, 0))
        lags[(tp.topic, tp.partition)] = max(0, end - (committed.get(tp) or 0))
    return lags


class LagGauge:
    """Sets the gauge from ``consumer_lag`` and removes the partitions no longer
    assigned (they are another worker's after a rebalance)."""

    def __init__(self) -> None:
        self.shown: set[tuple[str, int]] = set()

    def update(self, consumer: Any) -> None:
        try:
            lags = consumer_lag(consumer)
        except Exception as exc:  # the consumer is starting or stopping
            log.debug("consumer lag not updated: %r", exc)
            return
        for topic, partition in self.shown - lags.keys():
            metrics.CONSUMER_LAG.remove(topic, str(partition))
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(topic, str(partition)).set(lag)
        self.shown = set(lags)


def register(app: Any, interval: float = INTERVAL) -> LagGauge:
    gauge = LagGauge()

    @app.timer(interval)
    async def update_consumer_lag() -> None:
        gauge.update(app.consumer)

    return gauge
