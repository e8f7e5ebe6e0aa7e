"""The explanation: the few moments that moved the score most.

A moment's pull on the score is its strongest factor impact (importance x gap) times the
decay weight of its time, so candidates are ranked by ``log2|impact| + t / half_life``: a
rank that does not depend on when it is computed (moving the reference time adds the same
constant to every rank), so a candidate list kept from earlier stays correctly ordered and
needs no recomputation. Ties go to the older event id for determinism.
"""

from __future__ import annotations

import math

from cxpulse.schemas.scoring import KeyMoment


def rank(km: KeyMoment, half_life_s: float) -> float:
    return math.log2(abs(km.impact)) + km.t / half_life_s


def order_key(impact: float, t: int, event_id: str, half_life_s: float) -> tuple[float, str]:
    """Where a candidate goes in the list: ascending is strongest first, ties by id.
    ``-rank`` of a KeyMoment with these fields, without building one."""
    return (-(math.log2(abs(impact)) + t / half_life_s), event_id)


def keep_top(
    candidates: list[KeyMoment], new: KeyMoment, size: int, half_life_s: float
) -> list[KeyMoment]:
    """Insert ``new`` and keep the ``size`` strongest, strongest first."""
    if new.impact == 0:
        return candidates
    merged = [*candidates, new]
    merged.sort(key=lambda k: order_key(k.impact, k.t, k.event_id, half_life_s))
    return merged[:size]


def bar(candidates: list[KeyMoment], size: int, half_life_s: float) -> tuple[float, str] | None:
    """The ``order_key`` a new moment must be below for ``keep_top`` to change the list;
    None when any moment with an impact would change it.

    Why: most moments of a customer whose list is full are weaker than its weakest, and
    checking that first spares building their KeyMoment and sorting. Exact: a full list
    (``size`` long) already in order is returned unchanged by ``keep_top`` exactly when
    the new key is not below its last (a tie goes after it: the sort is stable). A list
    out of order (written under another half-life) or of another length gets None, so
    ``keep_top`` sorts or cuts it as before. A list ``keep_top`` returned is in order, so
    its bar is its last entry's key when it is full.
    """
    if len(candidates) != size:
        return None
    keys = [order_key(k.impact, k.t, k.event_id, half_life_s) for k in candidates]
    if any(keys[i] > keys[i + 1] for i in range(len(keys) - 1)):
        return None
    return keys[-1]
