"""The benchmark's CPU figures by thread (``make bench``, the event → alert run: what the
worker's main thread, chDB's merges, its native pools and its other Python threads used,
and the main thread's wait for a CPU): read from this very process's real threads."""

from __future__ import annotations

import os
import threading
import time

from tests.benchmarks.pipeline import (
    THREAD_GROUPS,
    run_queue_seconds,
    thread_cpu_seconds,
    thread_groups_used,
)

#: CPU a busy thread spins for, seconds: well above the clock's tick (10 ms).
SPIN_S = 0.3


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_python_threads_cpu_is_counted_apart_from_the_main_threads() -> None:
    """A Python thread keeps the process's name for the OS, so it counts as one of the
    worker's Python threads; the main thread is the one whose id is the process's."""
    pid = os.getpid()
    before = thread_cpu_seconds(pid)
    assert before[pid][0] == "main thread"
    worker = threading.Thread(target=_spin, args=(SPIN_S,))
    worker.start()
    worker.join()  # ended: its CPU is gone with it, so measure one that is still there
    ready, stop = threading.Event(), threading.Event()

    def spin_then_wait() -> None:
        _spin(SPIN_S)
        ready.set()
        stop.wait()

    alive = threading.Thread(target=spin_then_wait)
    alive.start()
    try:
        ready.wait(30)
        _spin(SPIN_S)
        used = thread_groups_used(before, thread_cpu_seconds(pid))
    finally:
        stop.set()
        alive.join()
    assert set(used) <= set(THREAD_GROUPS)
    # each spun SPIN_S of CPU; the tick is 10 ms and other threads of the suite may run
    assert used["main thread"] >= SPIN_S - 0.02
    assert used["Python threads"] >= SPIN_S - 0.02
    assert used.get("chDB merges", 0.0) == 0.0


def test_a_threads_wait_in_the_run_queue_is_read_and_grows() -> None:
    pid = os.getpid()
    first = run_queue_seconds(pid, pid)
    assert first is not None and first >= 0
    _spin(0.05)
    second = run_queue_seconds(pid, pid)
    assert second is not None and second >= first
    assert run_queue_seconds(pid, 2**22 + 12345) is None  # no such thread
