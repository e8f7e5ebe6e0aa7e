"""An event id's forms inside the core: its hex (what key moments, trails and alerts name
an event by) and the bytes its duplicate-detection hash is taken of.

Both follow from the 128-bit integer a ``uuid.UUID`` holds. ``UUID.hex`` and
``UUID.bytes`` are properties written in Python, so every read of them is an interpreted
call; the core and the rules read them for every event (its dedup hash, its key moment,
the counting rules' trail), about 3 % of the worker's in-process work (docs/benchmarks.md,
session 37). Here, compiled with the core, they are C calls on the integer, with the
values the properties give (``'%032x' % int`` and ``int.to_bytes(16, 'big')``; pinned by
``tests/unit/test_ids.py``). Event ids read anywhere in the core and the rules go through
this module.
"""

from __future__ import annotations

from uuid import UUID


def hex_of(event_id: UUID) -> str:
    """``event_id.hex``: 32 lowercase hex digits."""
    return f"{event_id.int:032x}"


def bytes_of(event_id: UUID) -> bytes:
    """``event_id.bytes``: the 16 bytes, big-endian."""
    return event_id.int.to_bytes(16, "big")
