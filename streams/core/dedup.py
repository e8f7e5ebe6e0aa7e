"""Duplicate detection: the same event twice changes nothing.

Faust re-delivers events whose offsets were not committed after a restart, and producers
retry, so every customer state remembers the ids of its recent events, as 48-bit hashes
(collisions among a customer's last ~128 events are negligible: ~1e-11). The set is
bounded; when an id is evicted, ``floor`` moves up to its event time and anything at or
before the floor is treated as late (it does not change the state), so a duplicate can
never be counted twice, even one arriving after its id was forgotten.

During a call the core, and the touchpoint health step for an instance, work on the
packed set itself (``Seen``): it searches the bytes for an event's id and keeps the ids
it adds aside, so a call costs the same however many ids the state remembers; a full set
drops its oldest ids off the front of the bytes. A call that adds many ids indexes the
set once instead.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, insort
from operator import itemgetter
from uuid import UUID

from cxpulse.schemas.scoring import pack_ids, unpack_ids
from cxpulse.streams.core import ids


def id_hash(event_id: UUID) -> bytes:
    """48 bits of blake2b of the id: UUIDv1/v7 share time prefixes, so slicing would not do."""
    return hashlib.blake2b(ids.bytes_of(event_id), digest_size=6).digest()


_TIME_THEN_HASH = itemgetter(1, 0)
_TIME = itemgetter(1)


def kept(seen: dict[bytes, int], horizon: int) -> list[tuple[bytes, int]]:
    """What a state stores of ``seen``: its ids of event time ``horizon`` or later (older
    events are late in any case), oldest first (event time, then hash).

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
    """A state's packed id set during one call: membership, ``remember`` (add an id,
    evict the oldest beyond the cap, move the floor to the evicted id's time) and the
    packed ids to store.

    The packed bytes stay as they are while a call adds a few ids in time order: it only
    asks whether its events' ids are in them (a search of the bytes at entry boundaries)
    and keeps the ids it adds aside; a full set drops its oldest ids off the front of the
    bytes (they are sorted: an offset moves, the bytes are not copied). Unpacking every id
    and packing them all again, per call, was most of the cost of deduplication.

    A call of more than ``INDEX_AFTER`` events (``expected``: a busy touchpoint instance,
    hundreds a call, each evicting one) indexes the set at once, and a call that must
    evict an id it added (an event older than every id kept) when it comes to that
    (``_Index``: a dict for membership, the ids sorted oldest first for eviction).
    Either way the set is the one the plain definition (a dict; the oldest by event time,
    then hash, evicted) gives, and ``stored`` the bytes ``pack_ids(kept(...))`` of it does.
    """

    __slots__ = ("added", "index", "oldest_added", "packed", "start")

    def __init__(self, packed: bytes = b"", expected: int = 0) -> None:
        self.packed = packed  # the state's ids, oldest first (event time, then hash)
        self.start = 0  # where its ids not yet evicted begin (a multiple of _ENTRY)
        self.added: dict[bytes, int] = {}  # ids remembered during this call
        #: the oldest of them, ``(event time, hash)``, kept rather than searched for
        self.oldest_added: tuple[int, bytes] | None = None
        #: every id, once the call indexed the set
        self.index: _Index | None = self._indexed() if expected > INDEX_AFTER else None

    def __contains__(self, h: bytes) -> bool:
        if self.index is not None:
            return h in self.index.times
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
        """Add ``h`` (event time ``t``; not in the set: the caller asked), evict the
        oldest beyond ``cap``, return the new floor."""
        index = self.index
        if index is not None:
            index.add(h, t)
            return index.evict(cap, floor)
        added = self.added
        added[h] = t
        oldest = self.oldest_added
        if oldest is None or (t, h) < oldest:
            oldest = self.oldest_added = (t, h)
        packed, start = self.packed, self.start
        excess = (len(packed) - start) // _ENTRY + len(added) - cap
        if excess <= 0:
            return floor
        # a full set: the oldest id goes, which is the state's first while every added
        # id is newer (events in order); else the index decides
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
        index = self.index = self._indexed()
        return index.evict(cap, floor)

    def _indexed(self) -> _Index:
        times = dict(unpack_ids(self.packed[self.start :]))
        times.update(self.added)
        return _Index(times)

    def stored(self, horizon: int) -> bytes:
        """The packed ids of event time ``horizon`` or later, oldest first: the state's
        bytes (less the ids that aged out) followed by the added ones, when these sort
        after them, as ids of events arriving in order do; else with the added ones
        spliced in where they sort (``_merged``)."""
        if self.index is not None:
            return self.index.stored(horizon)
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
                    return _merged(packed, new)
        return packed + pack_ids(new) if new else packed


def _merged(packed: bytes, new: list[tuple[bytes, int]]) -> bytes:
    """``packed`` (ids oldest first: event time, then hash) with ``new`` (in the same
    order, none of them in it) each in its place: the bytes ``pack_ids(kept(...))`` gives
    for the union, without unpacking the set. Each new id goes where a bisection of the
    packed entries' times puts it (then its hash among those of the same time), the
    bytes between copied as they are, its entry written as ``pack_ids`` writes one.

    Why: a touchpoint instance's events come from many customers and several partitions,
    so a call's ids often sort among the stored ones; unpacking the 256 ids, sorting them
    with the new ones and packing them again (~64 µs a call) was over a third of the
    health step's time in a steady flow (docs/benchmarks.md, session 38)."""
    n = len(packed) // _ENTRY
    pieces: list[bytes] = []
    copied = 0  # entries of ``packed`` copied so far
    for h, t in new:
        lo, hi = copied, n  # the first entry not older than (t, h): a bisection on times
        while lo < hi:
            mid = (lo + hi) // 2
            if _time_at(packed, mid * _ENTRY) < t:
                lo = mid + 1
            else:
                hi = mid
        while lo < n and _time_at(packed, lo * _ENTRY) == t and _hash_at(packed, lo) < h:
            lo += 1  # the same time: then by hash
        pieces.append(packed[copied * _ENTRY : lo * _ENTRY])
        pieces.append(h + t.to_bytes(_ENTRY - _HASH, "big"))
        copied = lo
    pieces.append(packed[copied * _ENTRY :])
    return b"".join(pieces)


def _hash_at(packed: bytes, i: int) -> bytes:
    """The hash of the ``i``-th packed entry."""
    return packed[i * _ENTRY : i * _ENTRY + _HASH]


#: A call of more events than this indexes the set at once (``_Index``): searching the
#: packed bytes and evicting off their front costs ~1.5 µs more an event than the index,
#: which costs ~35–50 µs to build for a full set of 256.
INDEX_AFTER = 48


class _Index:
    """Every id of a set as a dict (hash → event time) for membership, and as a list
    sorted oldest first (event time, then hash), of which the first ``start`` are
    evicted: an id in time order is appended and the oldest is the next one from the
    front, so a full set evicting at every id neither searches for its oldest nor sorts
    again to be stored."""

    __slots__ = ("entries", "start", "times")

    def __init__(self, times: dict[bytes, int]) -> None:
        self.times = times
        self.entries: list[tuple[bytes, int]] = sorted(times.items(), key=_TIME_THEN_HASH)
        self.start = 0

    def add(self, h: bytes, t: int) -> None:
        self.times[h] = t
        entries = self.entries
        if len(entries) == self.start or (t, h) > _TIME_THEN_HASH(entries[-1]):
            entries.append((h, t))
        else:  # out of order: in its place among the kept ones
            insort(entries, (h, t), lo=self.start, key=_TIME_THEN_HASH)

    def evict(self, cap: int, floor: int) -> int:
        """Drop the oldest ids beyond ``cap``; the floor moves up to their times."""
        entries, times = self.entries, self.times
        while len(times) > cap:
            oldest, oldest_t = entries[self.start]
            self.start += 1
            del times[oldest]
            floor = max(floor, oldest_t)
        return floor

    def stored(self, horizon: int) -> bytes:
        start = bisect_left(self.entries, horizon, lo=self.start, key=_TIME)
        return pack_ids(self.entries[start:])


def _time_at(packed: bytes, offset: int) -> int:
    """The event time of the packed entry at ``offset``: after its hash, 4 bytes big-endian."""
    return int.from_bytes(packed[offset + _HASH : offset + _ENTRY], "big")
