"""Duplicate detection: the same event twice changes nothing.

Faust re-delivers events whose offsets were not committed after a restart, and producers
retry, so every customer state remembers the ids of its recent events, as 48-bit hashes
(collisions among a customer's last ~128 events are negligible: ~1e-11). The set is
bounded; when an id is evicted, ``floor`` moves up to its event time and anything at or
before the floor is treated as late (it does not change the state), so a duplicate can
never be counted twice, even one arriving after its id was forgotten.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from operator import itemgetter
from uuid import UUID


def id_hash(event_id: UUID) -> bytes:
    """48 bits of blake2b of the id: UUIDv1/v7 share time prefixes, so slicing would not do."""
    return hashlib.blake2b(event_id.bytes, digest_size=6).digest()


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


_TIME_THEN_HASH = itemgetter(1, 0)
_TIME = itemgetter(1)


def kept(seen: dict[bytes, int], horizon: int) -> list[tuple[bytes, int]]:
    """What a state stores of ``seen``: the ids ``prune`` would keep, oldest first (event
    time, then hash).

    Sorted first, so the ids to forget are a prefix, found by bisection: a customer
    state is written on every batch, and a Python loop over its ~128 ids to prune them
    cost more than the sort.
    """
    entries = sorted(seen.items(), key=_TIME_THEN_HASH)
    start = bisect_left(entries, horizon, key=_TIME)
    return entries[start:] if start else entries
