"""Event time as the core keeps it: whole epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def epoch(dt: datetime) -> int:
    """Event time in whole epoch seconds, as the scoring core stores it:
    ``int(dt.timestamp() // 1)``, for an aware ``dt``.

    Computed from ``dt - 1970-01-01 UTC`` (days and seconds, exact integers), which is
    the timestamp's floor exactly while the time is within 2**32 s of 1970 (years 1834
    to 2106, so every valid event): there a float holds the seconds to better than half
    a microsecond, so ``timestamp()`` cannot round up across a whole second. It runs for
    every event, twice, and ``timestamp()`` through pydantic's time zone cost twice as
    much. Outside that range, and for a naive ``dt``, it is ``timestamp()`` itself.
    """
    if dt.tzinfo is not None:
        delta = dt - _EPOCH
        if -_EXACT_DAYS < delta.days < _EXACT_DAYS:
            return delta.days * 86400 + delta.seconds
    return int(dt.timestamp() // 1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EXACT_DAYS = 2**32 // 86400 - 1  # whole days within 2**32 seconds of the epoch
