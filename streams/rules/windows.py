"""Counting windows, shared by the rules that count (repeated_failure, repeat_contact,
channel_hopping): the fullest window around a moment, the entry that completed the
pattern (the alert id's seed) and the ids an alert lists.

Counting windows are "any window of the rule's length that contains the moment", which
is what lets an event arriving late (within the allowed lateness) complete a pattern
that straddles it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Protocol, TypeVar

from cxpulse.schemas.model import ExperienceModel


class Timed(Protocol):
    @property
    def t(self) -> int: ...
    @property
    def event_id(self) -> str: ...


_T = TypeVar("_T", bound=Timed)


def densest(entries: Sequence[_T], t: int, window: int) -> list[_T]:
    """The entries of the fullest window of length ``window`` that contains ``t`` (the
    earliest such window on a tie), in event-time order. Windows are inclusive: "3 within
    30 min" means the first and the third are at most 30 min apart."""
    ordered = sorted(entries, key=lambda e: (e.t, e.event_id))
    times = [e.t for e in ordered]
    # a window is a slice of the ordered entries: its bounds found by bisection
    lo = hi = 0
    for start in sorted({s for s in times if t - window <= s <= t}):
        first, end = bisect_left(times, start), bisect_right(times, start + window)
        if end - first > hi - lo:
            lo, hi = first, end
    return ordered[lo:hi]


def opener(best: Sequence[_T], count: int, t: int, model: ExperienceModel) -> _T:
    """The entry that completed the pattern, whose id seeds the alert id: the ``count``-th
    of the window, the same whatever order the events arrived in. Once that one is older
    than a cooldown before the moment (a pattern that goes on, seen again after its
    alert's cooldown), the first later entry: a new case needs a new id, not the old
    case's id with count 1. The moment itself always qualifies, so one exists."""
    since = t - int(model.alerts.cooldown_hours * 3600)
    return next(e for e in best[count - 1 :] if e.t >= since)


def ids(entries: Sequence[Timed], fallback: str) -> list[str]:
    """The entries' event ids (an entry from an old state may have none), else ``fallback``."""
    found = [e.event_id for e in entries if e.event_id]
    return found or [fallback]
