"""The worker's garbage-collection metrics: every collection counted and timed by
generation, the longest pause kept, exported in the Prometheus format."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cxpulse.streams import metrics
from cxpulse.streams.metrics import CollectionTimes


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_collections_are_counted_and_timed_by_generation() -> None:
    times = CollectionTimes()
    registry = CollectorRegistry()
    registry.register(times)
    gc.callbacks.append(times)
    try:
        gc.collect()  # the whole heap
        gc.collect(0)
        gc.collect(0)
    finally:
        gc.callbacks.remove(times)
    seen = samples(registry)
    assert seen[("cxpulse_gc_collections_total", (("generation", "2"),))] == 1
    assert seen[("cxpulse_gc_collections_total", (("generation", "0"),))] >= 2
    whole = seen[("cxpulse_gc_seconds_total", (("generation", "2"),))]
    assert whole > 0
    longest = seen[("cxpulse_gc_longest_pause_seconds", ())]
    # the whole-heap collection was the only one of its generation: the longest is at least it
    assert longest >= whole
    assert (
        0
        < longest
        <= sum(seen[("cxpulse_gc_seconds_total", (("generation", str(g)),))] for g in range(3))
    )


def test_timing_is_installed_once_per_process() -> None:
    before = len(gc.callbacks)
    registry = CollectorRegistry()
    first = metrics.time_collections(registry)
    again = metrics.time_collections(registry)
    assert first is again and len(gc.callbacks) <= before + 1
    assert gc.callbacks.count(first) == 1


def test_the_reference_lists_what_the_collector_exports() -> None:
    registry = CollectorRegistry()
    registry.register(CollectionTimes())
    exported = {name for name, _ in samples(registry)}
    assert exported == {name for name, *_ in CollectionTimes.REFERENCE}
