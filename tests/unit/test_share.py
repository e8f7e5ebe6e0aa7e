"""How a take's customers are shared between the scoring process and the event loop:
``split`` cuts a take by its events in the customers' order, and ``Share`` moves towards
the share that lets both sides finish together, a step at a time, within its bounds."""

from __future__ import annotations

from typing import Any

import pytest

from cxpulse.streams.pipeline.share import Share, split


def test_a_take_is_split_by_its_events_in_the_customers_order() -> None:
    by_customer: dict[str, list[Any]] = {"a": [1, 2, 3], "b": [4], "c": [5, 6], "d": [7, 8]}
    first, rest = split(by_customer, 0.5)
    assert (list(first), list(rest)) == (["a", "b"], ["c", "d"])  # 4 of 8 events
    assert split(by_customer, 0.0) == ({}, by_customer)
    assert split({"a": [1]}, 0.5) == ({"a": [1]}, {})
    assert split({}, 0.5) == ({}, {})


def test_the_share_moves_towards_the_side_that_is_faster_an_event() -> None:
    share = Share(step=0.25)
    # the scoring process took 3 µs an event, the event loop 1: balanced, it would take
    # a quarter of the events; the share moves a quarter of the way there
    assert share.observe(500, 1.5e-3, 500, 0.5e-3) == pytest.approx(0.5 + 0.25 * (0.25 - 0.5))
    for _ in range(40):
        share.observe(1000, 3e-3 * 1000 / 1000, 1000, 1e-3)
    assert share.share == pytest.approx(0.25, abs=1e-3)
    # the other way round: the event loop busy with the worker's other agents
    for _ in range(40):
        share.observe(100, 1e-4, 100, 4e-4)
    assert share.share == pytest.approx(0.8, abs=1e-3)


def test_the_share_stays_within_its_bounds_and_ignores_a_one_sided_take() -> None:
    share = Share(0.5, low=0.2, high=0.7, step=1.0)
    assert share.observe(10, 1.0, 10, 1e-6) == 0.2  # the child far slower: its floor
    assert share.observe(10, 1e-6, 10, 1.0) == 0.7  # far faster: its ceiling
    assert share.observe(0, 0.0, 10, 1.0) == 0.7  # the child had nothing: nothing learnt
    assert share.observe(10, 1.0, 0, 0.0) == 0.7
    with pytest.raises(ValueError, match="outside"):
        Share(0.95)
