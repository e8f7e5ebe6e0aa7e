"""What experience scoring produces and remembers: Moment, ScoreUpdate, CustomerState.

These are the core's own values, not a contract with the outside (that is
``cxpulse.schemas.events``, validated once at the boundary): compact msgspec Structs, built from
values the core computed itself and never validated again. ``Moment`` is one row of
ClickHouse's ``moments`` table (the emotion map); ``ScoreUpdate`` one row of ``scores``.
``CustomerState`` is the Faust table value, written to the changelog at every checkpoint
(``cxpulse.streams.state.customer`` gives its compact binary record), so it is built to stay
small: times are epoch seconds, peak-end memories are 3-tuples (an open episode's
per-factor and per-channel ones packed doubles in one ``bytes``, a slot each), event ids
are 48-bit hashes packed into raw bytes, and every list is bounded by the model's
``state`` and ``episodes`` sections. ``to_bytes``/``from_bytes`` are the JSON form of
earlier workers' changelogs (short keys), still read on upgrade.

The Structs are declared ``gc=False``: a worker holds one state per customer and makes
moments and states at every event, and the cycle collector would otherwise walk them all
at every collection. That is safe because none of them can refer back to itself: they
hold numbers, strings, tuples, lists and dicts of those, and each other, never a parent
(``tests/unit/test_scoring_core.py`` walks a state, its moments and its score update).
"""

from __future__ import annotations

import base64
import struct
from datetime import datetime
from itertools import starmap
from typing import Any, NamedTuple
from uuid import UUID

import msgspec

from cxpulse.schemas.vocabulary import CHANNELS, FACTORS

# (peak, end_t, end_value): the peak-end memory of one episode for one series (overall
# valence, a factor's gap, a channel's valence). ``peak`` is the value of largest absolute
# value (the negative one on a tie: bad is stronger than good); ``end`` is the value of the
# latest moment by event time (the lower value on a same-second tie), so combining two
# memories is associative and commutative, which is what makes out-of-order events safe.
PeakEnd = tuple[float, int, float]
# (weight_sum, weighted_value_sum) of decayed remembered values, normalised to a reference.
Decayed = tuple[float, float]

_SEEN = struct.Struct(">6sI")  # 48-bit event-id hash, event time in epoch seconds


class Explanation(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One moment that moved the score: its strongest factor and that factor's impact, and
    ``contribution``, the points of score it accounts for now (through its episode's peak
    or end and the decay; negative pulls the score below 50)."""

    event_id: UUID
    occurred_at: datetime
    touchpoint: str
    channel: str
    factor: str
    impact: float
    contribution: float = 0.0


class Moment(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One touchpoint event turned into an experience reading (a ``moments`` row).

    ``episode_id`` is the episode as known when the moment was processed: a later
    out-of-order event can extend or merge episodes, which relabels later moments only.
    ``late`` moments arrived beyond the allowed lateness: they are recorded for the emotion
    map but did not change the score. ``fallback`` moments were scored with their channel's
    defaults because the touchpoint type is not in the model. ``topics``: what its feedback
    text is about (``fees``, ``card_blocked``, ...), in the model's order.
    """

    event_id: UUID
    customer_id: str
    occurred_at: datetime
    channel: str
    touchpoint: str
    touchpoint_instance: str | None
    journey_stage: str
    journey_id: str | None
    intent: str | None
    outcome: str
    episode_id: str
    valence: float
    readings: dict[str, float]
    gaps: dict[str, float]
    impacts: dict[str, float]
    key_factor: str
    tier: str | None
    segment: str | None
    sentiment: float | None = None
    late: bool = False
    fallback: bool = False
    score_after: float
    #: Topics its feedback text names (model file ``feedback.topics``); last, with a
    #: default, so moments written before it still decode.
    topics: tuple[str, ...] = ()


class ScoreUpdate(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The customer's experience score as of event time ``as_of`` (a ``scores`` row).

    ``version`` grows by one with every event that changed the state, so
    ``(customer_id, version)`` is a deterministic key for idempotent inserts.
    """

    customer_id: str
    version: int
    as_of: datetime
    score: float
    factor_scores: dict[str, float]
    channel_scores: dict[str, float]
    confidence: float
    episodes: int
    tier: str | None
    segment: str | None
    explanation: list[Explanation]
    #: what the moments not listed account for: the listed contributions and the rest
    #: sum to ``score - 50``
    explanation_rest: float = 0.0
    #: the customer's last NPS answer and when it was given: their relationship signal
    nps: int | None = None
    nps_at: datetime | None = None


class KeyMoment(
    msgspec.Struct,
    frozen=True,
    gc=False,
    kw_only=True,
    omit_defaults=True,
    rename={
        "event_id": "id",
        "touchpoint": "tp",
        "channel": "ch",
        "factor": "f",
        "impact": "i",
        "share": "sh",
        "end_t": "et",
    },
):
    """An explanation candidate: a moment that is its episode's peak or end, with its
    strongest factor's impact.

    Inside an open episode (``Episode.peak_m`` / ``end_m``) its share of the episode's
    remembered valence follows from the episode. Once the episode is folded it is kept in
    ``CustomerState.key_moments`` with ``share`` (the valence it adds to the remembered
    ``(peak + end) / 2``: half its valence, all of it when it is both) and ``end_t`` (the
    episode's end, whose decay weighs it).

    What a candidate contributes is not kept: it follows from the state as of its
    watermark (``cxpulse.streams.core.explanation``), and is worked out when a score
    update or a rule asks. (Records of earlier workers hold it, as ``c``: it is ignored.)
    """

    event_id: str  # UUID hex, 32 chars
    t: int
    touchpoint: str
    channel: str
    factor: str
    impact: float
    share: float = 0.0
    end_t: int = 0


#: The series an episode remembers besides its overall valence, one slot each: the
#: factors (of the gaps), then the channels (of the valences), in the vocabulary's order.
SERIES: tuple[str, ...] = (*FACTORS, *CHANNELS)
#: Slots below this are factors, the others channels.
FACTOR_SLOTS = len(FACTORS)
FACTOR_SLOT = {name: i for i, name in enumerate(FACTORS)}
CHANNEL_SLOT = {name: FACTOR_SLOTS + i for i, name in enumerate(CHANNELS)}
FACTOR_BIT = {name: 1 << slot for name, slot in FACTOR_SLOT.items()}
CHANNEL_BIT = {name: 1 << slot for name, slot in CHANNEL_SLOT.items()}
#: The slots of each mask, in order (``SLOTS_OF[mask]``).
SLOTS_OF: tuple[tuple[int, ...], ...] = tuple(
    tuple(i for i in range(len(SERIES)) if m >> i & 1) for m in range(1 << len(SERIES))
)
#: ``MEMORIES[k]`` packs and unpacks k peak-end memories: little-endian doubles.
MEMORIES = tuple(struct.Struct(f"<{3 * k}d") for k in range(len(SERIES) + 1))


def memories_of(factors: dict[str, PeakEnd], channels: dict[str, PeakEnd]) -> tuple[int, bytes]:
    """``(mask, series)`` of per-name peak-end memories (``Episode``); names outside the
    vocabulary have no slot and are left out (the core never makes them: the channel is
    the contract's and the factors the model's, both the vocabulary's)."""
    by_slot: dict[int, PeakEnd] = {}
    for name, pe in factors.items():
        slot = FACTOR_SLOT.get(name)
        if slot is not None:
            by_slot[slot] = pe
    for name, pe in channels.items():
        slot = CHANNEL_SLOT.get(name)
        if slot is not None:
            by_slot[slot] = pe
    mask = 0
    flat: list[float] = []
    for slot in sorted(by_slot):
        mask |= 1 << slot
        flat += by_slot[slot]
    return mask, MEMORIES[len(by_slot)].pack(*flat)


class Episode(
    msgspec.Struct,
    frozen=True,
    gc=False,
    kw_only=True,
    omit_defaults=True,
    rename={
        "journey": "j",
        "start": "s",
        "count": "n",
        "overall": "v",
        "mask": "m",
        "series": "x",
        "peak_m": "pm",
        "end_m": "em",
    },
):
    """An open episode's peak-end memory; its moments themselves are not kept.

    ``journey`` is set for journey episodes (grouped by journey_id); session episodes
    (no journey_id) are grouped by the gap rule over ``[start, end]``. ``peak_m`` and
    ``end_m`` are the moments whose valences are its peak and its end (the very same
    KeyMoment when one moment is both), None when that valence is 0 (it moves nothing)
    or the episode was written before they were kept: the explanation's candidates.

    The per-factor and per-channel memories are one flat value, not a dict of tuples:
    ``mask`` has bit ``i`` set for each ``SERIES`` slot the episode has, and ``series``
    is their ``(peak, end_t, end)`` triples in slot order as packed doubles
    (``MEMORIES``). An open episode is then five objects rather than twenty-odd, and a
    customer has up to ``episodes.max_open`` of them that every update walks, packs and
    keeps in memory. ``factors`` and ``channels`` read them as dicts.
    """

    journey: str | None = None
    start: int
    count: int
    overall: PeakEnd
    mask: int = 0
    series: bytes = b""
    peak_m: KeyMoment | None = None
    end_m: KeyMoment | None = None

    @classmethod
    def of(
        cls,
        *,
        journey: str | None = None,
        start: int,
        count: int,
        overall: PeakEnd,
        factors: dict[str, PeakEnd],
        channels: dict[str, PeakEnd],
        peak_m: KeyMoment | None = None,
        end_m: KeyMoment | None = None,
    ) -> Episode:
        """An episode from its memories as dicts (``memories_of``)."""
        mask, series = memories_of(factors, channels)
        return cls(
            journey=journey,
            start=start,
            count=count,
            overall=overall,
            mask=mask,
            series=series,
            peak_m=peak_m,
            end_m=end_m,
        )

    def memories(self) -> list[tuple[int, PeakEnd]]:
        """``(slot, (peak, end_t, end))`` of every series the episode has, in slot order."""
        slots = SLOTS_OF[self.mask]
        flat = MEMORIES[len(slots)].unpack(self.series)
        return [
            (slot, (flat[3 * j], int(flat[3 * j + 1]), flat[3 * j + 2]))
            for j, slot in enumerate(slots)
        ]

    @property
    def factors(self) -> dict[str, PeakEnd]:
        return {SERIES[i]: pe for i, pe in self.memories() if i < FACTOR_SLOTS}

    @property
    def channels(self) -> dict[str, PeakEnd]:
        return {SERIES[i]: pe for i, pe in self.memories() if i >= FACTOR_SLOTS}

    @property
    def end(self) -> int:
        return self.overall[1]


class Folded(
    msgspec.Struct,
    frozen=True,
    gc=False,
    kw_only=True,
    omit_defaults=True,
    rename={"ref": "r", "count": "n", "overall": "v", "factors": "f", "channels": "c"},
):
    """Closed episodes, folded into decayed sums normalised to ``ref`` (epoch seconds).

    Weight of an episode is ``2 ** ((end - ref) / half_life)``; moving ``ref`` forward
    rescales the sums, so they never overflow and the mean does not depend on ``ref``.
    """

    ref: int = 0
    count: int = 0
    overall: Decayed = (0.0, 0.0)
    factors: dict[str, Decayed] = msgspec.field(default_factory=dict)
    channels: dict[str, Decayed] = msgspec.field(default_factory=dict)


class FailureMark(NamedTuple):
    """A failure repeated_failure may count (an array in the state, for size)."""

    t: int
    touchpoint: str
    instance: str | None  # so an alert can say where the failures happened
    event_id: str  # UUID hex: the alert names the events that triggered it


class ContactMark(NamedTuple):
    """A call-center contact repeat_contact may count."""

    t: int
    intent: str | None
    event_id: str


class TryMark(NamedTuple):
    """The latest unsuccessful try of an intent on one channel."""

    t: int
    event_id: str


class IntentTries(NamedTuple):
    """What channel_hopping remembers of one intent: when it last succeeded (``ok``, 0 if
    never seen) and, per channel, the latest unsuccessful try after that success. A
    success settles every earlier try, so the tries of each channel reduce to one."""

    ok: int
    tries: dict[str, TryMark]


class CustomerState(
    msgspec.Struct,
    gc=False,
    kw_only=True,
    omit_defaults=True,
    rename={
        "customer_id": "id",
        "version": "ver",
        "segment": "seg",
        "profile_t": "pt",
        "watermark": "wm",
        "floor": "fl",
        "seen": "ids",
        "episodes": "ep",
        "folded": "fo",
        "key_moments": "km",
        "failures": "rf",
        "contacts": "rc",
        "intents": "ih",
        "score_trail": "st",
        "score": "sc",
        "confidence": "cf",
        "episode_count": "ne",
        "alert_memory": "am",
        "nps": "np",
        "nps_t": "npt",
    },
):
    """Everything remembered about one customer (the Faust table value).

    ``watermark`` is the newest event time seen; ``floor`` the newest event time whose id
    was evicted from ``seen`` (events at or before it are treated as late, which keeps
    duplicate detection exact although ``seen`` is bounded). ``seen`` is the packed id set
    (``pack_ids``). ``score_trail`` holds the highest score per hour over the last 24 h,
    with the time it was reached (sharp_drop); ``alert_memory`` is free for the alert
    rules' own small flags (low_score armed, cooldowns). ``nps`` is the customer's last
    NPS answer (by event time, ``nps_t``): their relationship signal, not a moment.

    The counting rules' memory is one bounded collection per rule, so a busy rule cannot
    crowd out another's window (``cxpulse.streams.core.trail``): ``failures`` (repeated_failure),
    ``contacts`` (repeat_contact) and ``intents`` (channel_hopping). States written with
    the older single ``tr`` list are read into these.

    The core never changes a state it was given: it builds the next one. What follows
    from the state as of its watermark is not kept in it: the per-factor and per-channel
    sub-scores and the explanation's contributions are worked out when a score update
    asks (``cxpulse.streams.core.score_update``); records of earlier workers that hold
    sub-scores (``fs``, ``cs``) read, those values ignored.
    """

    customer_id: str
    version: int = 0
    tier: str | None = None
    segment: str | None = None
    profile_t: int = 0
    watermark: int = 0
    floor: int = 0
    seen: bytes = b""
    episodes: list[Episode] = msgspec.field(default_factory=list)
    folded: Folded = msgspec.field(default_factory=Folded)
    key_moments: list[KeyMoment] = msgspec.field(default_factory=list)
    failures: list[FailureMark] = msgspec.field(default_factory=list)
    contacts: list[ContactMark] = msgspec.field(default_factory=list)
    intents: dict[str, IntentTries] = msgspec.field(default_factory=dict)
    score_trail: list[tuple[int, float]] = msgspec.field(default_factory=list)
    score: float = 50.0
    confidence: float = 0.0
    episode_count: int = 0
    alert_memory: dict[str, int | float | str] = msgspec.field(default_factory=dict)
    nps: int | None = None
    nps_t: int = 0

    def to_bytes(self) -> bytes:
        """The JSON form of earlier workers' changelogs (short keys, defaults left out).
        Workers write ``cxpulse.streams.state.customer.encode``; this stays for reading and
        comparing what an upgrade finds."""
        return _json_encoder.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> CustomerState:
        """A state of the JSON form, with the older single ``tr`` list read into the
        per-rule memory, so an upgraded worker keeps the week of contacts its changelog
        holds."""
        if b'"tr"' in data or b'"ep"' in data:
            raw = msgspec.json.decode(data)
            if isinstance(raw, dict):
                read = with_memories(_legacy_trail(raw) if "tr" in raw else raw)
                if read is not raw:
                    data = _json_encoder.encode(read)
        return _json_state.decode(data)

    # -- the packed id set ------------------------------------------------------------

    def seen_ids(self) -> list[tuple[bytes, int]]:
        """``(hash48, event_time)`` pairs, oldest first."""
        return unpack_ids(self.seen)


_json_encoder = msgspec.json.Encoder()
_json_state = msgspec.json.Decoder(CustomerState)


def with_memories(data: dict[str, Any]) -> dict[str, Any]:
    """A state's builtins (its encoded field names) with every episode's memories as
    dicts (``f`` and ``c``, as states before ``Episode.series`` had them) made ``m`` and
    ``x`` (``memories_of``); ``data`` itself when no episode has them."""
    if not any("f" in e or "c" in e for e in data.get("ep") or ()):
        return data
    episodes = []
    for e in data["ep"]:
        if "f" in e or "c" in e:
            e = dict(e)
            e["m"], e["x"] = memories_of(e.pop("f", None) or {}, e.pop("c", None) or {})
        episodes.append(e)
    return {**data, "ep": episodes}


def _legacy_trail(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    failures: list[list[Any]] = []
    contacts: list[list[Any]] = []
    intents: dict[str, list[Any]] = {}
    for e in sorted(data.pop("tr") or (), key=lambda e: e.get("t", 0)):
        t, channel, outcome, intent = e.get("t", 0), e.get("ch"), e.get("o"), e.get("in")
        event_id = e.get("id") or ""
        if outcome == "failure":
            failures.append([t, e.get("tp", ""), None, event_id])
        if channel == "call_center":
            contacts.append([t, intent, event_id])
        if intent is not None:
            tries = intents.setdefault(intent, [0, {}])[1]
            if outcome == "success":
                intents[intent] = [t, {}]
            else:
                tries[channel] = [t, event_id]
    data.setdefault("rf", failures)
    data.setdefault("rc", contacts)
    data.setdefault("ih", {k: v for k, v in intents.items() if v[1]})
    return data


def pack_ids(entries: list[tuple[bytes, int]]) -> bytes:
    """Inverse of ``unpack_ids``: the packed id set of ``(hash48, event_time)`` pairs."""
    return b"".join(starmap(_SEEN.pack, entries))


def unpack_ids(raw: bytes) -> list[tuple[bytes, int]]:
    """``(hash48, event_time)`` pairs of a packed id set, oldest first.

    A length that is not a whole number of entries fails with ``struct.error``."""
    if len(raw) % _SEEN.size == 0:
        return list(_SEEN.iter_unpack(raw))
    return [_SEEN.unpack_from(raw, i) for i in range(0, len(raw), _SEEN.size)]


def seen_text(packed: bytes) -> str:
    """A packed id set (``pack_ids``) as base64 text: the touchpoint health state's form."""
    return base64.b64encode(packed).decode()


def seen_bytes(text: str) -> bytes:
    """Inverse of ``seen_text``."""
    return base64.b64decode(text) if text else b""


def unpack_seen(text: str) -> list[tuple[bytes, int]]:
    """The ids of a set in its text form (``seen_text``)."""
    return unpack_ids(seen_bytes(text))
