"""The benchmark's memory figures by process (``make bench``: the worker's RSS with the
ClickHouse server backend, its sentiment process's, all its processes'): read from real
processes, a spawned pool as the worker's sentiment process is."""

from __future__ import annotations

import multiprocessing
import os

from cxpulse.streams.child_process import spawned_pool
from cxpulse.streams.pipeline.rows_process import NAME as ROWS_NAME
from cxpulse.streams.sentiment import NAME as SENTIMENT_NAME
from tests.benchmarks.pipeline import (
    descendants,
    process_hwm_kib,
    process_name,
    tree_hwm_kib,
    vm_hwm_kib,
)

#: How far two reads of one process's VmHWM may disagree (see the test): 4 MiB.
RSS_SLACK_KIB = 4 << 10


def _hold(n: int) -> int:
    """Make the child hold a known amount for its peak: 64 MiB."""
    block = bytearray(n)
    block[::4096] = b"x" * len(block[::4096])
    return len(block)


def _nothing() -> None:
    pass


def test_the_workers_children_are_named_by_what_they_are() -> None:
    """The sentiment process and the rows process are pools of one spawned process each
    (``cxpulse.streams.child_process``), which name themselves; the benchmark reads them
    by that name."""
    before = set(descendants(os.getpid()))  # the suite's own children (a broker, say)
    sentiment = spawned_pool(SENTIMENT_NAME, _nothing)
    rows = spawned_pool(ROWS_NAME, _nothing)
    try:
        assert sentiment.submit(_hold, 64 << 20).result(timeout=60) == 64 << 20
        assert rows.submit(_hold, 1 << 20).result(timeout=60) == 1 << 20
        names = sorted(process_name(pid) for pid in set(descendants(os.getpid())) - before)
        # The by-name figures add up to the tree's, read while no process of the tree
        # came, went or grew (the suite's other children may, meanwhile: read again).
        for _ in range(20):
            peaks = process_hwm_kib(os.getpid())
            tree = tree_hwm_kib(os.getpid())
            if peaks == process_hwm_kib(os.getpid()) and sum(peaks.values()) == tree:
                break
        else:
            raise AssertionError(f"by name {peaks} (sum {sum(peaks.values())}), tree {tree}")
    finally:
        sentiment.shutdown()
        rows.shutdown()
    # the tracker is one per process: started here, or by an earlier test of the process
    assert {"sentiment process", "rows process"} <= set(names)
    assert set(names) <= {"multiprocessing resource tracker", "sentiment process", "rows process"}
    assert {"worker", *names} <= set(peaks)
    # this process's own peak; two reads may differ by a few pages either way: the kernel
    # works VmHWM out from per-thread RSS counters it syncs every 64 page faults
    # (1,070,896 then 1,070,880 KiB, seen once in CI), so "a peak only grows" holds only
    # to that slack
    own = vm_hwm_kib(os.getpid()) or 0
    assert own > 0 and abs(peaks["worker"] - own) <= RSS_SLACK_KIB
    assert peaks["sentiment process"] >= 64 << 10  # KiB: the child's block is in its peak


def test_a_process_that_is_gone_has_no_figures() -> None:
    proc = multiprocessing.get_context("spawn").Process(target=os.getpid)
    proc.start()
    proc.join(60)
    assert process_hwm_kib(proc.pid) == {}
