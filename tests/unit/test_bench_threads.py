"""The benchmark's CPU figures by thread (``make bench``, the event → alert run: what the
worker's main thread, chDB's merges, its native pools and its other Python threads used,
the main thread's wait for a CPU, and the machine's idle share by window) and the
libraries they depend on: read from this very process's real threads, the machine's own
counters and what is installed."""

from __future__ import annotations

import os
import threading
import time

from tests.benchmarks.pipeline import (
    MEASURED_LIBRARIES,
    THREAD_GROUPS,
    LatencyRun,
    cost_by_window,
    library_versions,
    machine_cpu_seconds,
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


def test_the_machines_idle_share_falls_while_a_thread_spins() -> None:
    """``machine_cpu_seconds`` reads the whole machine's CPU time: a thread that spins for
    ``SPIN_S`` adds at least most of that to the time used (other processes may add
    more), and the idle time never runs backwards."""
    before = machine_cpu_seconds()
    assert before is not None
    _spin(SPIN_S)
    after = machine_cpu_seconds()
    assert after is not None
    idle, every = after[0] - before[0], after[1] - before[1]
    assert idle >= 0
    assert every - idle >= SPIN_S * 0.8  # the clock's ticks: 10 ms each


def test_each_window_says_how_idle_the_machine_was() -> None:
    """``cost_by_window`` gives per window the events scored a second, the main thread's
    µs an event and the machine's idle share, from the window samples as the run takes
    them (a window whose machine figures are missing says None, not 0)."""
    lat = LatencyRun(rate=5_000, seconds=30)
    # (monotonic s, main thread CPU s, moments scored, (idle s, all s) of the machine)
    lat.window_samples = [
        (0.0, 1.0, 0.0, (100.0, 200.0)),
        (10.0, 7.0, 50_000.0, (105.0, 220.0)),  # 5 of 20 core-seconds idle
        (20.0, 14.0, 100_000.0, None),
        (30.0, 20.0, 150_000.0, (120.0, 260.0)),
    ]
    costs = cost_by_window(lat)
    assert [round(rate) for rate, _, _ in costs] == [5_000, 5_000, 5_000]
    assert [round(us) for _, us, _ in costs] == [120, 140, 120]
    assert [idle for _, _, idle in costs] == [0.25, None, None]


def test_the_libraries_the_figures_depend_on_are_named_with_their_versions() -> None:
    """``make bench`` prints the versions of the libraries its ratios depend on (the
    in-process target divides by pydantic-core's speed): read from what is installed."""
    from importlib.metadata import version

    found = library_versions(("pydantic-core", "msgspec", "no-such-distribution-here"))
    assert found == {
        "pydantic-core": version("pydantic-core"),
        "msgspec": version("msgspec"),
        "no-such-distribution-here": "not installed",
    }
    assert "pydantic-core" in MEASURED_LIBRARIES
