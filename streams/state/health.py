"""The touchpoint health table's value, ``HealthState``, and its changelog record.

A record is ``FORMAT`` (``0xC1``, the one byte msgpack never uses and JSON never starts
with, then the version byte) and the state as msgspec's msgpack map of its short field
names, defaults left out: encoded and decoded in C, into the very Struct. Records of
earlier workers are the JSON of the same names (``{"k": ...}``, pydantic's), still read,
so a worker upgraded over an existing changelog keeps every instance's health; in such a
state, failures written before they had times (bare ids) are read as of time 0, so no
alert lists them as within its window.

Changing the layout: a new version byte, and ``decode`` keeps reading the old ones.
"""

from __future__ import annotations

from typing import Any

import msgspec

FORMAT = b"\xc1\x01"


#: The fields' names in a record (those of the JSON records before ``FORMAT``).
NAMES = {
    "key": "k",
    "channel": "ch",
    "touchpoint": "tp",
    "watermark": "wm",
    "floor": "fl",
    "seen": "ids",
    "fine": "f",
    "hourly": "h",
    "first": "t0",
    "failures": "rf",
    "alert_memory": "am",
}


class HealthState(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False, rename=NAMES):
    """Touchpoint health of one instance (the health table's value), kept small.

    ``key`` is the touchpoint instance, or the touchpoint type for events without one.
    ``fine`` holds ``(bucket start, attempts, failures)`` per ``health.bucket_minutes`` for
    the short window plus the allowed lateness; ``hourly`` the same per hour over the
    baseline window: about 35 triples in all, whatever the volume. ``seen`` packs recent
    event-id hashes like ``CustomerState.seen`` (events at or before ``floor`` are late),
    ``failures`` the ``(event time, hex id, customer tag)`` of the latest failures (an
    alert lists those of its window and counts their customers; states written before the
    tag existed hold pairs), ``first`` the event time of the first event counted (how much
    history the baseline really has) and ``alert_memory`` the open touchpoint_degraded
    alerts.
    """

    key: str
    channel: str = ""
    touchpoint: str = ""
    watermark: int = 0
    floor: int = 0
    seen: str = ""
    fine: list[tuple[int, int, int]] = []
    hourly: list[tuple[int, int, int]] = []
    first: int = 0
    failures: list[tuple[Any, ...]] = []
    alert_memory: dict[str, int | float | str] = {}

    def to_bytes(self) -> bytes:
        """The changelog record (``encode``)."""
        return encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> HealthState:
        """A state from its changelog record, of any version (``decode``)."""
        return decode(data)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(HealthState)


def encode(state: HealthState) -> bytes:
    return FORMAT + _encoder.encode(state)


def decode(data: bytes) -> HealthState:
    if data[:2] == FORMAT:
        return _decoder.decode(memoryview(data)[2:])
    old = msgspec.json.decode(data)  # a record of earlier workers: the same short names
    failures = old.get("rf") if isinstance(old, dict) else None
    if isinstance(failures, list):  # ids written before failures had times: time 0
        old["rf"] = [[0, f] if isinstance(f, str) else f for f in failures]
    return msgspec.convert(old, HealthState)
