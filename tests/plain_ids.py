"""The plain definition of a state's id set, which ``cxpulse.streams.core.dedup.Seen``
works out faster: a dict (48-bit id hash → event time) of at most ``cap`` ids; adding one
beyond the cap evicts the oldest (event time, then hash), and the floor moves up to its
time; ids older than the lateness horizon are forgotten (``dedup.kept`` stores the rest).
The tests hold the fast forms to it."""

from __future__ import annotations


def remember(seen: dict[bytes, int], h: bytes, t: int, cap: int, floor: int) -> int:
    """Add ``h`` (event time ``t``); evict the oldest beyond ``cap``; return the new floor."""
    seen[h] = t
    while len(seen) > cap:
        oldest = min(seen, key=lambda k: (seen[k], k))
        floor = max(floor, seen.pop(oldest))
    return floor


def prune(seen: dict[bytes, int], horizon: int) -> None:
    """Forget ids older than the lateness horizon: such events are late in any case."""
    for h in [h for h, t in seen.items() if t < horizon]:
        del seen[h]
