"""The explanation: the few moments that moved the score most.

A moment's pull on the score is its strongest factor impact (importance x gap) times the
decay weight of its time, so candidates are ranked by ``log2|impact| + t / half_life``: a
rank that does not depend on when it is computed (moving the reference time adds the same
constant to every rank), so a candidate list kept from earlier stays correctly ordered and
needs no recomputation. Ties go to the older event id for determinism.
"""

from __future__ import annotations

import math

from schemas.scoring import KeyMoment


def rank(km: KeyMoment, half_life_s: float) -> float:
    return math.log2(abs(km.impact)) + km.t / half_life_s


def keep_top(
    candidates: list[KeyMoment], new: KeyMoment, size: int, half_life_s: float
) -> list[KeyMoment]:
    """Insert ``new`` and keep the ``size`` strongest, strongest first."""
    if new.impact == 0:
        return candidates
    merged = [*candidates, new]
    merged.sort(key=lambda k: (-rank(k, half_life_s), k.event_id))
    return merged[:size]
