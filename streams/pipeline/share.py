"""How a take's customers are shared between the scoring process and the event loop.

The experience step scores a take's customers in two places at once: the scoring process
(``score_process``) scores some while the event loop scores the others, and the step goes
on when both are done. A customer's work is its own, so any share gives the same states,
moments and alerts; it only decides how long the take waits for its slower side. That
side is not always the same one: the event loop also runs the worker's other agents, the
scoring process is one more process on the machine's cores, and what a customer costs
grows with its state through the day. ``Share`` follows what each side took for its
events, take after take, so both tend to finish together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def split(
    by_customer: Mapping[str, list[T]], share: float
) -> tuple[dict[str, list[T]], dict[str, list[T]]]:
    """The customers in two, in their order: the first holding about ``share`` of the
    events, the rest."""
    total = sum(map(len, by_customer.values()))
    first: dict[str, list[T]] = {}
    rest: dict[str, list[T]] = {}
    taken = 0
    for customer_id, batch in by_customer.items():
        if taken < share * total:
            first[customer_id] = batch
            taken += len(batch)
        else:
            rest[customer_id] = batch
    return first, rest


class Share:
    """The share of a take's events given to the scoring process.

    After each take, ``observe`` gets each side's events and seconds; the share that would
    have made both take as long (each side's seconds an event, as measured) is where the
    share moves, a ``step`` of the way (one slow take on a noisy machine does not swing
    it), kept within ``[low, high]`` so that each side always has events to be measured by.
    """

    __slots__ = ("high", "low", "share", "step")

    def __init__(
        self, share: float = 0.5, *, low: float = 0.1, high: float = 0.9, step: float = 0.25
    ) -> None:
        if not 0.0 < low <= share <= high < 1.0:
            raise ValueError(f"a share of {share} outside ({low}, {high}) in (0, 1)")
        self.share, self.low, self.high, self.step = share, low, high, step

    def observe(
        self, there_events: int, there_seconds: float, here_events: int, here_seconds: float
    ) -> float:
        """Move the share towards the balance of what this take's two sides took; the new
        share. A take one side had nothing of (or no time for) says nothing."""
        if min(there_events, here_events) <= 0 or min(there_seconds, here_seconds) <= 0.0:
            return self.share
        there = there_seconds / there_events
        here = here_seconds / here_events
        balanced = here / (here + there)
        moved = self.share + self.step * (balanced - self.share)
        self.share = min(self.high, max(self.low, moved))
        return self.share
