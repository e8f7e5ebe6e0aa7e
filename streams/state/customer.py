"""The customer state's changelog form: versioned msgpack, compressed with a fixed dictionary.

Every assignment to the customer table writes one changelog record (at each checkpoint,
for every customer changed since the last one), and a restart, a rebalance or a miss of
the state cache reads them back, so their encode and decode time is the worker's and
their size and decode time its recovery time. msgspec does all of it in C:

- a record is ``FORMAT`` then one zstandard frame (level 2; no magic number, no
  dictionary id, no checksum: the version byte says which dictionary) of the state as
  msgspec's msgpack map of the ``CustomerState`` Struct (its short field names, defaults
  left out);
- the frame is compressed with a dictionary trained on sample records
  (``streams/data/customer-state-v4.zdict``, 32 KiB: the field keys, the vocabulary's
  names, the default model's touchpoints and simulated customers' records, made by
  ``cxpulse.streams.dev.state_dictionary``), so what every record repeats costs a few
  bits and a small record needs no entropy tables of its own; the dictionary is part of
  the format, pinned by its hash in the tests;
- decoding is msgspec's typed decoder into the very Structs (floats are float64, exact).

Version 4 (2026-12-05) keeps each open episode's per-factor and per-channel memories as
one packed value (``Episode.mask`` and ``Episode.series``) instead of two maps of
arrays, and has its own dictionary. Version 3 records (the same map with those memories
as maps, under ``customer-state-v3.zdict``), versions 1 and 2 (a positional array:
vocabulary indexes for factor and channel names, floats as integers of thousandths where
exact, times as offsets, raw event ids) and the JSON of earlier workers
(``CustomerState.to_bytes``) still read, so a worker upgraded over an existing changelog
keeps every customer's state; an episode's memory of a name outside the vocabulary,
which no version of the core made, has no slot and is not read. Version 2 (2026-12-04)
added each open episode's peak and end moments, the folded candidates' share, episode
end and contribution, and the last NPS answer and its time; version 1 records are read
with none of them (their candidates then say nothing and are dropped by the core; no NPS
is known).

Contributions and sub-scores are no longer kept (they follow from the state as of its
watermark, and a score update works them out: ``cxpulse.streams.core.score_update``): a
candidate's ``c`` and a state's ``fs`` and ``cs`` in an earlier record are ignored, and
a worker of before reads a record without them (it works them out itself at every
update), so the layout did not change.

Changing the layout (or the dictionary): a new version byte, and ``decode`` keeps reading
the old ones (``tests/data/customer-state-v2.tsv`` and ``-v3.tsv`` hold records to read).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib import resources
from typing import Any

import msgspec
import zstandard

from cxpulse.schemas.scoring import (
    ContactMark,
    CustomerState,
    Episode,
    FailureMark,
    Folded,
    IntentTries,
    KeyMoment,
    PeakEnd,
    TryMark,
    with_memories,
)
from cxpulse.schemas.vocabulary import CHANNELS, FACTORS
from cxpulse.streams.state.table_codec import compact_value_type

FORMAT = b"\xc1\x04"
FORMAT_V3 = b"\xc1\x03"
FORMAT_V2 = b"\xc1\x02"
FORMAT_V1 = b"\xc1\x01"

#: The dictionary of this format's records, a file of the package.
DICTIONARY = "customer-state-v4.zdict"
#: The dictionary of version 3 records (still read).
DICTIONARY_V3 = "customer-state-v3.zdict"
#: The zstandard level records are compressed at (the dictionary is trained at it too).
LEVEL = 2

_encoder = msgspec.msgpack.Encoder()
_state = msgspec.msgpack.Decoder(CustomerState)
_positional = msgspec.msgpack.Decoder()
_PARAMS = zstandard.ZstdCompressionParameters.from_level(
    LEVEL,
    format=zstandard.FORMAT_ZSTD1_MAGICLESS,
    write_content_size=1,
    write_checksum=0,
    write_dict_id=0,
)


def _dictionary(name: str) -> zstandard.ZstdCompressionDict:
    raw = (resources.files("cxpulse.streams") / "data" / name).read_bytes()
    zdict = zstandard.ZstdCompressionDict(raw, dict_type=zstandard.DICT_TYPE_FULLDICT)
    zdict.precompute_compress(compression_params=_PARAMS)
    return zdict


_DICT = _dictionary(DICTIONARY)
_DICT_V3 = _dictionary(DICTIONARY_V3)


class _Codecs(threading.local):
    """A compressor and decompressors per thread (the disk writer encodes while the
    agent measures a record's size): zstandard's are not safe to share."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(dict_data=_DICT, compression_params=_PARAMS)
        self.compress = self.compressor.compress
        self.decompress = zstandard.ZstdDecompressor(
            dict_data=_DICT, format=zstandard.FORMAT_ZSTD1_MAGICLESS
        ).decompress
        self.decompress_v3 = zstandard.ZstdDecompressor(
            dict_data=_DICT_V3, format=zstandard.FORMAT_ZSTD1_MAGICLESS
        ).decompress


_codecs = _Codecs()
# The dictionaries' decompression tables are made on first use and then shared by every
# thread's decompressor: make them now, on import, rather than in two threads at once.
_codecs.decompress(_codecs.compress(b"\x80"))
_codecs.decompress_v3(
    zstandard.ZstdCompressor(dict_data=_DICT_V3, compression_params=_PARAMS).compress(b"\x80")
)


def encode(state: CustomerState) -> bytes:
    """The changelog record of ``state`` (``pack`` then ``seal_many``, for one state)."""
    return FORMAT + _codecs.compress(pack(state))


def pack(state: CustomerState) -> bytes:
    """The first of a record's two stages: the state as msgpack, not yet compressed.

    The experience step's checkpoint packs each state as the step sets it, while the
    state's objects are still in the CPU's caches: a late-day state of the event → alert
    run (up to 16 open episodes, ~3 KB) packs there in ~8 µs, against ~25–40 µs at the
    commit, when its few hundred objects are read back cold from all over the heap.
    ``seal_many`` finishes the records."""
    return _encoder.encode(state)


def seal_many(packed: Sequence[bytes]) -> list[bytes]:
    """The changelog records of packed states (``pack``): the very bytes ``encode`` gives
    each, with the compression of all of them in one call (zstandard's
    ``multi_compress_to_buffer``).

    Why one call: zstandard releases the GIL for each compression, and a thread that has
    released it waits for its turn again (up to the interpreter's switch interval, 5 ms)
    while another thread runs Python. The checkpoint seals a cut's states on a thread
    beside the busy event loop: one state at a time, 1,500 states took ~4 s there against
    ~5 ms alone; in one call they take ~5 ms either way. A zstandard without that call
    (its CFFI backend) compresses one state at a time."""
    if not packed:
        return []
    raw: list[bytes | bytearray | memoryview] = list(packed)
    try:
        frames = _codecs.compressor.multi_compress_to_buffer(raw, threads=0)
    except (AttributeError, NotImplementedError):
        return [FORMAT + _codecs.compress(r) for r in raw]
    return [FORMAT + frames[i].tobytes() for i in range(len(raw))]


def unpack(packed: bytes) -> CustomerState:
    """The state of its first stage (``pack``): the inverse of ``pack``, exact."""
    return _state.decode(packed)


def unseal(data: bytes) -> bytes | None:
    """A record's first stage (what ``pack`` gave), when it is of this format; None for
    the records of earlier versions, which have none (``decode`` reads them)."""
    if data[:2] != FORMAT:
        return None
    return _codecs.decompress(memoryview(data)[2:])


def decode(data: bytes) -> CustomerState:
    """The state of a changelog record: of this format, version 3, 2 or 1, or the earlier
    JSON."""
    prefix = data[:2]
    if prefix == FORMAT:
        return _state.decode(_codecs.decompress(memoryview(data)[2:]))
    if prefix == FORMAT_V3:
        raw = _positional.decode(_codecs.decompress_v3(memoryview(data)[2:]))
        return msgspec.convert(with_memories(raw), CustomerState)
    if prefix in (FORMAT_V2, FORMAT_V1):
        return _decode_positional(data, prefix == FORMAT_V1)
    return CustomerState.from_bytes(data)


def table_value_type() -> type:
    """The customer table's ``value_type``: its values encoded and decoded by this module,
    in two stages (``pack``, then ``seal_many`` at the checkpoint), and held by the store
    on disk in their first stage (``unpack``, ``unseal``: see
    ``cxpulse.streams.state.store``)."""
    return compact_value_type(
        "cxpulse-customer-state",
        decode,
        encode,
        pack=pack,
        seal_many=seal_many,
        unpack=unpack,
        unseal=unseal,
    )


# -- versions 2 and 1 ---------------------------------------------------------------------


def _val(x: float | int) -> float:
    return x / 1000 if type(x) is int else x  # an int here is always thousandths


def _unhex(v: bytes | str) -> str:
    return v.hex() if isinstance(v, bytes) else v


def _read_peak_ends(flat: list[Any], names: tuple[str, ...], start: int) -> dict[str, PeakEnd]:
    return {
        _named(flat[i], names): (
            _val(flat[i + 1]),
            flat[i + 2] + start,
            _val(flat[i + 3]),
        )
        for i in range(0, len(flat), 4)
    }


def _read_decayed(flat: list[Any], names: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    return {
        _named(flat[i], names): (
            _val(flat[i + 1]),
            _val(flat[i + 2]),
        )
        for i in range(0, len(flat), 3)
    }


def _read_moment(v: list[Any] | None, start: int) -> KeyMoment | None:
    if v is None:
        return None
    return KeyMoment(
        event_id=_unhex(v[0]),
        t=v[1] + start,
        touchpoint=v[2],
        channel=_named(v[3], CHANNELS),
        factor=_named(v[4], FACTORS),
        impact=_val(v[5]),
    )  # v[6], its contribution then, is worked out now (``core.explanation``)


def _decode_positional(data: bytes, v1: bool) -> CustomerState:
    """A record of version 2 or 1: one msgpack array, the fields in a fixed order."""
    (
        customer_id,
        version,
        tier,
        segment,
        profile_t,
        watermark,
        floor,
        seen,
        episodes,
        folded,
        key_moments,
        failures,
        contacts,
        intents,
        trail,
        score,
        _factor_scores,  # worked out now: see score_update
        _channel_scores,
        confidence,
        episode_count,
        alert_memory,
        *nps,
    ) = _positional.decode(memoryview(data)[2:])
    ref, count, weight, value, fo_factors, fo_channels = folded
    return CustomerState(
        customer_id=customer_id,
        version=version,
        tier=tier,
        segment=segment,
        profile_t=profile_t,
        watermark=watermark,
        floor=floor,
        seen=seen,
        episodes=[_read_episode(e) for e in episodes],
        folded=Folded(
            ref=ref,
            count=count,
            overall=(_val(weight), _val(value)),
            factors=_read_decayed(fo_factors, FACTORS),
            channels=_read_decayed(fo_channels, CHANNELS),
        ),
        key_moments=_read_key_moments(key_moments, 6 if v1 else 9),
        failures=[
            FailureMark(failures[i], failures[i + 1], failures[i + 2], _unhex(failures[i + 3]))
            for i in range(0, len(failures), 4)
        ],
        contacts=[
            ContactMark(contacts[i], contacts[i + 1], _unhex(contacts[i + 2]))
            for i in range(0, len(contacts), 3)
        ],
        intents={
            intents[i]: IntentTries(
                intents[i + 1],
                {
                    _named(tries[j], CHANNELS): TryMark(tries[j + 1], _unhex(tries[j + 2]))
                    for tries in (intents[i + 2],)
                    for j in range(0, len(tries), 3)
                },
            )
            for i in range(0, len(intents), 3)
        },
        score_trail=[(trail[i], _val(trail[i + 1])) for i in range(0, len(trail), 2)],
        score=_val(score),
        confidence=_val(confidence),
        episode_count=episode_count,
        alert_memory=alert_memory,
        nps=nps[0] if nps else None,
        nps_t=nps[1] if nps else 0,
    )


def _read_episode(e: list[Any]) -> Episode:
    journey, start, n, peak, dt, end, factors, channels = e[:8]
    pm = _read_moment(e[8], start) if len(e) > 8 else None
    em = (pm if e[9] is True else _read_moment(e[9], start)) if len(e) > 9 else None
    return Episode.of(
        journey=journey,
        start=start,
        count=n,
        overall=(_val(peak), start + dt, _val(end)),
        factors=_read_peak_ends(factors, FACTORS, start),
        channels=_read_peak_ends(channels, CHANNELS, start),
        peak_m=pm,
        end_m=em,
    )


def _read_key_moments(flat: list[Any], width: int) -> list[KeyMoment]:
    """Folded candidates: version 1 wrote six fields each (no share: they say nothing of
    what they contribute), version 2 nine."""
    out = []
    for i in range(0, len(flat), width):
        k = KeyMoment(
            event_id=_unhex(flat[i]),
            t=flat[i + 1],
            touchpoint=flat[i + 2],
            channel=_named(flat[i + 3], CHANNELS),
            factor=_named(flat[i + 4], FACTORS),
            impact=_val(flat[i + 5]),
        )
        if width == 9:
            k = KeyMoment(
                event_id=k.event_id,
                t=k.t,
                touchpoint=k.touchpoint,
                channel=k.channel,
                factor=k.factor,
                impact=k.impact,
                share=_val(flat[i + 6]),
                end_t=k.t + flat[i + 7],
            )  # flat[i + 8], its contribution then: worked out now
        out.append(k)
    return out


def _named(v: int | str, names: tuple[str, ...]) -> str:
    return names[v] if isinstance(v, int) else v
