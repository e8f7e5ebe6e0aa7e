"""The customer state's changelog form: compact, versioned msgpack.

Every assignment to the customer table writes one changelog record, and a restart or a
rebalance reads them all back, so their size and decode time are the worker's
recovery time. The JSON form (``CustomerState.to_bytes``) spends most of its bytes on
what a positional, typed layout does not need: key names, factor and channel names,
epoch seconds repeated inside every episode, hex ids, decimal floats. Here:

- a record is ``FORMAT`` then one msgpack array, the fields in a fixed order;
- factor and channel names are their index in the vocabulary (``FACTORS``,
  ``CHANNELS``; a name outside it is kept as text);
- a value the core rounded to 3 decimals is an integer of thousandths (exact: it is
  used only where ``k / 1000`` gives the very float back, else the float is kept);
- an episode's end times are offsets from its start; event ids are 16 raw bytes; the
  packed id set is raw bytes, not base64.

Decoding builds the same ``CustomerState`` (equal field by field: the property test
replays simulated traffic through both). A record without the prefix is the JSON of
earlier workers, read as before, so a worker upgraded over an existing changelog keeps
every customer's state.

Changing the layout: a new version byte, and ``decode`` keeps reading the old one.
Version 2 (2026-12-04) adds each open episode's peak and end moments, the folded
candidates' share, episode end and contribution, and every candidate's contribution
(the explanation adds up, ``cxpulse.streams.core.explain``), and the last NPS answer and
its time at the end; version 1 records are read with none of them (their candidates
then say nothing and are dropped by the core; no NPS is known).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

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
)
from cxpulse.schemas.vocabulary import CHANNELS, FACTORS

FORMAT = b"\xc1\x02"
FORMAT_V1 = b"\xc1\x01"

_FACTOR = {name: i for i, name in enumerate(FACTORS)}
_CHANNEL = {name: i for i, name in enumerate(CHANNELS)}

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def _num(v: float) -> float | int:
    """An exact integer of thousandths where there is one, else the value itself (NaN,
    infinities, -0.0, more decimals and non-floats keep their own form)."""
    if type(v) is not float or not math.isfinite(v) or (v == 0.0 and math.copysign(1.0, v) < 0):
        return v
    k = round(v * 1000)
    return k if k / 1000 == v and -(2**53) < k < 2**53 else v


def _val(x: float | int) -> float:
    return x / 1000 if type(x) is int else x  # an int here is always thousandths


def _name(v: str, vocabulary: dict[str, int]) -> int | str:
    i = vocabulary.get(v)
    return v if i is None else i


def _hex(h: str) -> bytes | str:
    if len(h) == 32:
        try:
            raw = bytes.fromhex(h)
        except ValueError:
            return h
        if raw.hex() == h:
            return raw
    return h


def _unhex(v: bytes | str) -> str:
    return v.hex() if isinstance(v, bytes) else v


def _peak_ends(series: dict[str, PeakEnd], vocabulary: dict[str, int], start: int) -> list[Any]:
    out: list[Any] = []
    for name, (peak, end_t, end) in series.items():
        out += (_name(name, vocabulary), _num(peak), end_t - start, _num(end))
    return out


def _read_peak_ends(flat: list[Any], names: tuple[str, ...], start: int) -> dict[str, PeakEnd]:
    return {
        _named(flat[i], names): (
            _val(flat[i + 1]),
            flat[i + 2] + start,
            _val(flat[i + 3]),
        )
        for i in range(0, len(flat), 4)
    }


def _decayed(series: dict[str, tuple[float, float]], vocabulary: dict[str, int]) -> list[Any]:
    out: list[Any] = []
    for name, (w, v) in series.items():
        out += (_name(name, vocabulary), _num(w), _num(v))
    return out


def _read_decayed(flat: list[Any], names: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    return {
        _named(flat[i], names): (
            _val(flat[i + 1]),
            _val(flat[i + 2]),
        )
        for i in range(0, len(flat), 3)
    }


def _scores(series: dict[str, float], vocabulary: dict[str, int]) -> list[Any]:
    out: list[Any] = []
    for name, v in series.items():
        out += (_name(name, vocabulary), _num(v))
    return out


def _read_scores(flat: list[Any], names: tuple[str, ...]) -> dict[str, float]:
    return {_named(flat[i], names): _val(flat[i + 1]) for i in range(0, len(flat), 2)}


def _moment(k: KeyMoment | None, start: int) -> list[Any] | None:
    """An open episode's peak or end moment: its time as an offset from the start."""
    if k is None:
        return None
    return [
        _hex(k.event_id),
        k.t - start,
        k.touchpoint,
        _name(k.channel, _CHANNEL),
        _name(k.factor, _FACTOR),
        _num(k.impact),
        _num(k.contribution),
    ]


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
        contribution=_val(v[6]),
    )


def encode(state: CustomerState) -> bytes:
    """The changelog record of ``state``."""
    episodes = []
    for e in state.episodes:
        peak, end_t, end = e.overall
        pm, em = e.peak_m, e.end_m
        same = pm is not None and em is not None and pm == em
        episodes.append(
            (
                e.journey,
                e.start,
                e.count,
                _num(peak),
                end_t - e.start,
                _num(end),
                _peak_ends(e.factors, _FACTOR, e.start),
                _peak_ends(e.channels, _CHANNEL, e.start),
                _moment(pm, e.start),
                True if same else _moment(em, e.start),  # True: the peak moment again
            )
        )
    fo = state.folded
    folded = (
        fo.ref,
        fo.count,
        _num(fo.overall[0]),
        _num(fo.overall[1]),
        _decayed(fo.factors, _FACTOR),
        _decayed(fo.channels, _CHANNEL),
    )
    key_moments: list[Any] = []
    for k in state.key_moments:
        key_moments += (
            _hex(k.event_id),
            k.t,
            k.touchpoint,
            _name(k.channel, _CHANNEL),
            _name(k.factor, _FACTOR),
            _num(k.impact),
            _num(k.share),
            k.end_t - k.t,
            _num(k.contribution),
        )
    failures: list[Any] = []
    for f in state.failures:
        failures += (f.t, f.touchpoint, f.instance, _hex(f.event_id))
    contacts: list[Any] = []
    for c in state.contacts:
        contacts += (c.t, c.intent, _hex(c.event_id))
    intents: list[Any] = []
    for intent, (ok, tries) in state.intents.items():
        flat: list[Any] = []
        for channel, (t, event_id) in tries.items():
            flat += (_name(channel, _CHANNEL), t, _hex(event_id))
        intents += (intent, ok, flat)
    trail: list[Any] = []
    for t, score in state.score_trail:
        trail += (t, _num(score))
    return FORMAT + _encoder.encode(
        (
            state.customer_id,
            state.version,
            state.tier,
            state.segment,
            state.profile_t,
            state.watermark,
            state.floor,
            state.seen,
            episodes,
            folded,
            key_moments,
            failures,
            contacts,
            intents,
            trail,
            _num(state.score),
            _scores(state.factor_scores, _FACTOR),
            _scores(state.channel_scores, _CHANNEL),
            _num(state.confidence),
            state.episode_count,
            state.alert_memory,
            state.nps,
            state.nps_t,
        )
    )


def decode(data: bytes) -> CustomerState:
    """The state of a changelog record, of this format, version 1 or the earlier JSON."""
    prefix = data[: len(FORMAT)]
    if prefix != FORMAT and prefix != FORMAT_V1:
        return CustomerState.from_bytes(data)
    v1 = prefix == FORMAT_V1
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
        factor_scores,
        channel_scores,
        confidence,
        episode_count,
        alert_memory,
        *nps,
    ) = _decoder.decode(memoryview(data)[len(FORMAT) :])
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
        factor_scores=_read_scores(factor_scores, FACTORS),
        channel_scores=_read_scores(channel_scores, CHANNELS),
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
    return Episode(
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
                contribution=_val(flat[i + 8]),
            )
        out.append(k)
    return out


def _named(v: int | str, names: tuple[str, ...]) -> str:
    return names[v] if isinstance(v, int) else v
