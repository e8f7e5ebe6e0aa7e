"""Alert memory kept in the state for the early-warning rules (the alerts issue).

* ``trail``: the moments rules count: non-successes (repeated_failure), call-center
  contacts (repeat_contact) and anything with an intent (channel_hopping), over
  ``state.trail_hours`` (7 days by default, the longest rule window), at most
  ``state.trail_max`` entries, sorted by event time.
* ``score_trail``: the highest score of each hour over the last 24 h (sharp_drop: "falls 15
  points within 24 h" needs the highest recent score, not every one).
"""

from __future__ import annotations

import bisect

from schemas.scoring import TrailEntry

SCORE_TRAIL_S = 24 * 3600
_HOUR = 3600


def worth_keeping(channel: str, outcome: str, intent: str | None) -> bool:
    return outcome != "success" or channel == "call_center" or intent is not None


def add_trail(
    trail: list[TrailEntry], entry: TrailEntry, horizon: int, cap: int
) -> list[TrailEntry]:
    keys = [(e.t, e.touchpoint) for e in trail]
    trail.insert(bisect.bisect_right(keys, (entry.t, entry.touchpoint)), entry)
    start = 0
    while start < len(trail) and trail[start].t < horizon:
        start += 1
    start = max(start, len(trail) - cap)
    return trail[start:]


def add_score(trail: list[tuple[int, float]], t: int, score: float) -> list[tuple[int, float]]:
    bucket = t - t % _HOUR
    out = [(b, s) for b, s in trail if b > bucket - SCORE_TRAIL_S]
    for i, (b, s) in enumerate(out):
        if b == bucket:
            out[i] = (b, max(s, score))
            return out
    out.append((bucket, score))
    out.sort()
    return out
