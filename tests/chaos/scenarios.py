"""Chaos scenarios: each a function of (harness, short) that returns its ``Result``.

Add a scenario by writing one more function here and listing it in ``SCENARIOS``.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.chaos.harness import Harness, Result


def publish_during_restarts(h: Harness, short: bool) -> Result:
    """A worker is stopped gracefully and restarted again and again while a publisher
    keeps publishing; a burst is published right after each start, before Ready (the
    window in which a restart used to skip input)."""
    restarts = 3 if short else 30
    result = Result(f"publish during restarts x{restarts}")
    publisher = h.publish_in_background(total=0, per_tick=10, tick=0.5)
    worker = h.start_worker()
    h.wait_ready(worker)
    try:
        for _ in range(restarts):
            h.wait_processing(worker, rows=30)  # busy with the input, not idle
            h.stop(worker)
            worker = h.start_worker()
            h.publish(30)  # while the new worker joins, recovers and seeks
            h.wait_ready(worker)
            h.publish(30)
    finally:
        publisher.stop()
    return h.finish(worker, result)


def kill9_while_publishing(h: Harness, short: bool) -> Result:
    """kill -9 three times while a publisher sends a steady stream of events; a new
    worker starts at once after each kill."""
    total = 3_000 if short else 40_000
    kills = 3
    result = Result(f"kill -9 x{kills} ({total:,} events)")
    # Paced to last about as long as the kills take (~15 s a cycle on 2 busy cores).
    ticks = max(1, kills * 15 * 4)
    publisher = h.publish_in_background(
        total=total, per_tick=max(1, total // ticks), tick=0.25, batch_size=100
    )
    worker = h.start_worker()
    try:
        for _ in range(kills):
            h.wait_ready(worker)
            h.wait_processing(worker, rows=200)
            h.kill(worker)
            worker = h.start_worker()
        h.wait_ready(worker)
    finally:
        publisher.join()
        publisher.stop()
    return h.finish(worker, result)


SCENARIOS: dict[str, Callable[[Harness, bool], Result]] = {
    "restarts": publish_during_restarts,
    "kill9": kill9_while_publishing,
}
