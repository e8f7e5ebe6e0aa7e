"""``round`` of floats to 2 or 3 decimals, memoised: the very same numbers, faster.

Why. ``round(x, n)`` goes through a correctly rounded decimal conversion and costs as
much as ten float operations, and the core rounds some twenty numbers per event. Most
recur: readings of the same outcomes and efforts, gaps against the same few
expectations, impacts of those gaps, sub-scores of one-episode series (measured on
simulated traffic: 95 % of the gaps and impacts, 75 % of the sub-scores were seen
before). A float's rounding depends on its value alone, so a cache hit is ``round``'s
own result.

Only nonzero floats are cached: ``0.0`` and ``-0.0`` are equal keys that round to
different signs, and an ``int`` key would equal its float (``round`` keeps ints ints).
Everything else goes to ``round``. Each cache is cleared when it reaches ``MAX_ENTRIES``,
so memory stays bounded whatever the values.
"""

from __future__ import annotations

MAX_ENTRIES = 1 << 16

_R2: dict[float, float] = {}
_R3: dict[float, float] = {}


def r2(x: float) -> float:
    """``round(x, 2)``."""
    if type(x) is float and x:
        r = _R2.get(x)
        if r is None:
            if len(_R2) >= MAX_ENTRIES:
                _R2.clear()
            r = _R2[x] = round(x, 2)
        return r
    return round(x, 2)


def r3(x: float) -> float:
    """``round(x, 3)``."""
    if type(x) is float and x:
        r = _R3.get(x)
        if r is None:
            if len(_R3) >= MAX_ENTRIES:
                _R3.clear()
            r = _R3[x] = round(x, 3)
        return r
    return round(x, 3)
