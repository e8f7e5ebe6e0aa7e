"""Duplicate detection: the same event twice changes nothing.

Faust re-delivers events whose offsets were not committed after a restart, and producers
retry, so every customer state remembers the ids of its recent events, as 48-bit hashes
(collisions among a customer's last ~128 events are negligible: ~1e-11). The set is
bounded; when an id is evicted, ``floor`` moves up to its event time and anything at or
before the floor is treated as late (it does not change the state), so a duplicate can
never be counted twice, even one arriving after its id was forgotten.

During a call the core works on the packed set itself (``Seen``): it searches the bytes
for an event's id and keeps the ids it adds aside, so a call costs the same however many
ids the state remembers; a full set drops its oldest ids off the front of the bytes.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from operator import itemgetter
from uuid import UUID

from cxpulse.schemas.scoring import pack_ids, unpack_ids


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


_HASH = 6  # bytes of an id's hash (``id_hash``)
_ENTRY = len(pack_ids([(bytes(_HASH), 0)]))  # bytes per id in a packed id set: hash, time


class Seen:
    """The working form of a state's packed id set during one call.

    The packed bytes stay as they are: a call only asks whether its events' ids are in
    them (a search of the bytes at entry boundaries) and adds a few, so unpacking every id
    into a dict and packing them all again, per call, was most of the cost of
    deduplication. The ids added are kept aside; a full set drops its oldest ids off the
    front of the bytes (they are sorted: an offset moves, the bytes are not copied), and
    only when an added id would be the one to go (an event older than every id kept) is
    it turned into the dict ``remember`` works on. ``stored`` gives the same bytes as
    ``pack_ids(kept(...))`` of that dict would.

    The touchpoint health step works on its instances' sets the same way: a busy
    instance's call adds hundreds of ids, and evicts one at each.
    """

    __slots__ = ("added", "oldest_added", "packed", "start", "whole")

    def __init__(self, packed: bytes = b"") -> None:
        self.packed = packed  # the state's ids, oldest first (event time, then hash)
        self.start = 0  # where its ids not yet evicted begin (a multiple of _ENTRY)
        self.added: dict[bytes, int] = {}  # ids remembered during this call
        #: the oldest of them, ``(event time, hash)``: a busy touchpoint instance adds
        #: hundreds of ids a call, and evicts at each, so it is kept, not searched for
        self.oldest_added: tuple[int, bytes] | None = None
        self.whole: dict[bytes, int] | None = None  # every id, once one was evicted

    def __contains__(self, h: bytes) -> bool:
        if self.whole is not None:
            return h in self.whole
        if h in self.added:
            return True
        packed = self.packed
        i = packed.find(h, self.start)
        while i >= 0:
            if i % _ENTRY == 0:
                return True
            i = packed.find(h, i + 1)
        return False

    def remember(self, h: bytes, t: int, cap: int, floor: int) -> int:
        """``remember`` on the set: add ``h`` (event time ``t``), evict the oldest beyond
        ``cap``, return the new floor."""
        if self.whole is None:
            added = self.added
            added[h] = t  # h is not in the set (the caller asked): added only grows
            oldest = self.oldest_added
            if oldest is None or (t, h) < oldest:
                oldest = self.oldest_added = (t, h)
            packed, start = self.packed, self.start
            excess = (len(packed) - start) // _ENTRY + len(added) - cap
            if excess <= 0:
                return floor
            # a full set: the oldest id goes, which is the state's first while every
            # added id is newer (events in order); else the dict decides
            while excess and start < len(packed):
                first = (_time_at(packed, start), packed[start : start + _HASH])
                if first > oldest:
                    break
                floor = max(floor, first[0])
                start += _ENTRY
                excess -= 1
            self.start = start
            if not excess:
                return floor
            self.whole = dict(unpack_ids(packed[start:]))
            self.whole.update(added)
            return remember(self.whole, h, t, cap, floor)  # h is in already: evicts only
        return remember(self.whole, h, t, cap, floor)

    def stored(self, horizon: int) -> bytes:
        """The packed ids ``prune`` would keep at ``horizon``, oldest first: the state's
        bytes (less the ids that aged out) followed by the added ones, when these sort
        after them, as ids of events arriving in order do."""
        if self.whole is not None:
            return pack_ids(kept(self.whole, horizon))
        packed = self.packed[self.start :] if self.start else self.packed
        added = self.added
        if len(added) == 1:  # the usual call: one event
            new = [e for e in added.items() if e[1] >= horizon]
        else:
            new = kept(added, horizon)
        if packed:
            if _time_at(packed, 0) < horizon:  # ids aged out: a prefix, found by bisection
                n = len(packed) // _ENTRY
                start = bisect_left(range(n), horizon, key=lambda i: _time_at(packed, i * _ENTRY))
                packed = packed[start * _ENTRY :]
            if packed and new:
                last = len(packed) - _ENTRY
                last_t = _time_at(packed, last)
                if (new[0][1], new[0][0]) <= (last_t, packed[last : last + _HASH]):
                    return pack_ids(kept({**dict(unpack_ids(packed)), **added}, horizon))
        return packed + pack_ids(new) if new else packed


def _time_at(packed: bytes, offset: int) -> int:
    """The event time of the packed entry at ``offset``: after its hash, 4 bytes big-endian."""
    return int.from_bytes(packed[offset + _HASH : offset + _ENTRY], "big")
