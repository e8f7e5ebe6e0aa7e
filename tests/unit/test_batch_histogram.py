"""``metrics.BatchHistogram``: a batch of values observed at once exports what
prometheus_client's ``Histogram`` exports for the same values one by one."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from cxpulse.streams.metrics import BatchHistogram

BOUNDS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)

#: values on and beside every bound, far beyond the last, and anything in between
values = st.one_of(
    st.sampled_from(BOUNDS),
    st.sampled_from(BOUNDS).map(lambda b: math.nextafter(b, math.inf)),
    st.sampled_from(BOUNDS).map(lambda b: math.nextafter(b, -math.inf)),
    st.floats(min_value=0.0, max_value=1e7),
    st.just(math.inf),
)


def exported(registry: CollectorRegistry) -> list[str]:
    """The exposition's sample lines, without ``_created`` (which only Histogram has)."""
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(values, max_size=30), max_size=5))
def test_batches_export_what_histogram_exports_for_the_same_values(
    batches: list[list[float]],
) -> None:
    one_by_one, at_once = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("cx_lag_seconds", "Lag.", buckets=BOUNDS, registry=one_by_one)
    histogram = BatchHistogram("cx_lag_seconds", "Lag.", buckets=BOUNDS, registry=at_once)
    for batch in batches:
        for value in batch:
            reference.observe(value)
        histogram.observe_many(batch)
    assert exported(at_once) == exported(one_by_one)


def test_one_value_and_an_empty_batch() -> None:
    registry = CollectorRegistry()
    histogram = BatchHistogram("cx_score", "Score.", buckets=(50, 100), registry=registry)
    histogram.observe_many([])
    histogram.observe_many([50])
    histogram.observe_many(iter([50.5, 120.0]))
    get = registry.get_sample_value
    assert [get("cx_score_bucket", {"le": le}) for le in ("50.0", "100.0", "+Inf")] == [1, 2, 3]
    assert (get("cx_score_count"), get("cx_score_sum")) == (3, 220.5)
