"""What experience scoring produces and remembers: Moment, ScoreUpdate, CustomerState.

``Moment`` is one row of ClickHouse's ``moments`` table (the emotion map); ``ScoreUpdate``
one row of ``scores`` and one message on ``cx.scores``. ``CustomerState`` is the Faust table
value: it is written to the changelog topic on EVERY update, so it is built to stay small:
times are epoch seconds, peak-end memories are 3-tuples, event ids are 48-bit hashes packed
into one base64 string, every list is bounded by the model's ``state`` and ``episodes``
sections, and JSON keys are short aliases (``to_bytes``/``from_bytes``).
"""

from __future__ import annotations

import base64
import struct
from datetime import datetime
from itertools import starmap
from typing import Annotated, Any, NamedTuple, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

# (peak, end_t, end_value): the peak-end memory of one episode for one series (overall
# valence, a factor's gap, a channel's valence). ``peak`` is the value of largest absolute
# value (the negative one on a tie: bad is stronger than good); ``end`` is the value of the
# latest moment by event time (the lower value on a same-second tie), so combining two
# memories is associative and commutative, which is what makes out-of-order events safe.
PeakEnd = tuple[float, int, float]
# (weight_sum, weighted_value_sum) of decayed remembered values, normalised to a reference.
Decayed = tuple[float, float]

_SEEN = struct.Struct(">6sI")  # 48-bit event-id hash, event time in epoch seconds

_M = TypeVar("_M", bound=BaseModel)


def build(cls: type[_M], **fields: Any) -> _M:
    """Construct a model from ALREADY VALID values, giving every field.

    The scoring core builds several of these per event from values it computed itself;
    pydantic's ``model_construct`` costs ~5 us each (it resolves defaults and aliases),
    this ~1 us. Not for untrusted input: validate that with ``model_validate``.

    It fills the four slots every pydantic model has through their descriptors, taken
    once from ``BaseModel`` (a quarter faster than ``object.__setattr__`` by name, which
    looks each one up again). pydantic models define no ``__new__`` of their own.
    """
    obj = _new(cls)
    _set_dict(obj, fields)
    _set_fields_set(obj, set(fields))
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


_new = object.__new__
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


class _Row(BaseModel):
    """Output rows: frozen, so a row handed to a sink cannot change under it."""

    model_config = ConfigDict(frozen=True)


class Explanation(_Row):
    """One moment that moved the score: its strongest factor and that factor's impact."""

    event_id: UUID
    occurred_at: datetime
    touchpoint: str
    channel: str
    factor: str
    impact: float


class Moment(_Row):
    """One touchpoint event turned into an experience reading (a ``moments`` row).

    ``episode_id`` is the episode as known when the moment was processed: a later
    out-of-order event can extend or merge episodes, which relabels later moments only.
    ``late`` moments arrived beyond the allowed lateness: they are recorded for the emotion
    map but did not change the score. ``fallback`` moments were scored with their channel's
    defaults because the touchpoint type is not in the model.
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


class ScoreUpdate(_Row):
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


class _State(BaseModel):
    """State parts: short JSON keys (aliases), readable Python names."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class Episode(_State):
    """An open episode's peak-end memory; its moments themselves are not kept.

    ``journey`` is set for journey episodes (grouped by journey_id); session episodes
    (no journey_id) are grouped by the gap rule over ``[start, end]``.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    journey: Annotated[str | None, Field(alias="j")] = None
    start: Annotated[int, Field(alias="s")]
    count: Annotated[int, Field(alias="n")]
    overall: Annotated[PeakEnd, Field(alias="v")]
    factors: Annotated[dict[str, PeakEnd], Field(alias="f")]
    channels: Annotated[dict[str, PeakEnd], Field(alias="c")]

    @property
    def end(self) -> int:
        return self.overall[1]

    @property
    def episode_id(self) -> str:
        if self.journey is None:
            return f"s:{self.start}"
        return f"j:{self.journey}:{self.start}"  # a journey may have several episodes


class Folded(_State):
    """Closed episodes, folded into decayed sums normalised to ``ref`` (epoch seconds).

    Weight of an episode is ``2 ** ((end - ref) / half_life)``; moving ``ref`` forward
    rescales the sums, so they never overflow and the mean does not depend on ``ref``.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    ref: Annotated[int, Field(alias="r")] = 0
    count: Annotated[int, Field(alias="n")] = 0
    overall: Annotated[Decayed, Field(alias="v")] = (0.0, 0.0)
    factors: Annotated[dict[str, Decayed], Field(alias="f")] = Field(default_factory=dict)
    channels: Annotated[dict[str, Decayed], Field(alias="c")] = Field(default_factory=dict)


def _no_folded() -> Folded:
    """A state's default ``folded``: nothing folded yet.

    Built, not validated: ``to_bytes`` leaves defaults out, and to know the default
    pydantic calls the factory for every state it writes; ``Folded()`` ran the validator
    each time, a fifth of the cost of writing a state. The same value either way.
    """
    folded = build(Folded, ref=0, count=0, overall=(0.0, 0.0), factors={}, channels={})
    _set_fields_set(folded, set())  # as Folded(): no field given
    return folded


class KeyMoment(_State):
    """An explanation candidate: a moment's strongest factor impact."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    event_id: Annotated[str, Field(alias="id")]  # UUID hex, 32 chars
    t: int
    touchpoint: Annotated[str, Field(alias="tp")]
    channel: Annotated[str, Field(alias="ch")]
    factor: Annotated[str, Field(alias="f")]
    impact: Annotated[float, Field(alias="i")]


class FailureMark(NamedTuple):
    """A failure repeated_failure may count (a JSON array in the state, for size)."""

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


class CustomerState(_State):
    """Everything remembered about one customer (the Faust table value).

    ``watermark`` is the newest event time seen; ``floor`` the newest event time whose id
    was evicted from ``seen`` (events at or before it are treated as late, which keeps
    duplicate detection exact although ``seen`` is bounded). ``score_trail`` holds the
    highest score per hour over the last 24 h, with the time it was reached (sharp_drop);
    ``alert_memory`` is free for the alert rules' own small flags (low_score armed,
    cooldowns).

    The counting rules' memory is one bounded collection per rule, so a busy rule cannot
    crowd out another's window (``streams.core.trail``): ``failures`` (repeated_failure),
    ``contacts`` (repeat_contact) and ``intents`` (channel_hopping). States written with
    the older single ``tr`` list are read into these.
    """

    customer_id: Annotated[str, Field(alias="id")]
    version: Annotated[int, Field(alias="ver")] = 0
    tier: str | None = None
    segment: Annotated[str | None, Field(alias="seg")] = None
    profile_t: Annotated[int, Field(alias="pt")] = 0
    watermark: Annotated[int, Field(alias="wm")] = 0
    floor: Annotated[int, Field(alias="fl")] = 0
    seen: Annotated[str, Field(alias="ids")] = ""
    episodes: Annotated[list[Episode], Field(alias="ep")] = Field(default_factory=list)
    folded: Annotated[Folded, Field(alias="fo")] = Field(default_factory=_no_folded)
    key_moments: Annotated[list[KeyMoment], Field(alias="km")] = Field(default_factory=list)
    failures: Annotated[list[FailureMark], Field(alias="rf")] = Field(default_factory=list)
    contacts: Annotated[list[ContactMark], Field(alias="rc")] = Field(default_factory=list)
    intents: Annotated[dict[str, IntentTries], Field(alias="ih")] = Field(default_factory=dict)
    score_trail: Annotated[list[tuple[int, float]], Field(alias="st")] = Field(default_factory=list)
    score: Annotated[float, Field(alias="sc")] = 50.0
    factor_scores: Annotated[dict[str, float], Field(alias="fs")] = Field(default_factory=dict)
    channel_scores: Annotated[dict[str, float], Field(alias="cs")] = Field(default_factory=dict)
    confidence: Annotated[float, Field(alias="cf")] = 0.0
    episode_count: Annotated[int, Field(alias="ne")] = 0
    alert_memory: Annotated[dict[str, int | float | str], Field(alias="am")] = Field(
        default_factory=dict
    )

    def to_bytes(self) -> bytes:
        """Compact JSON (aliases, defaults left out): the changelog record.

        The serializer's bytes as they are: ``model_dump_json`` is the same call made
        into a ``str``, which was then encoded back (written for every state update)."""
        return self.__pydantic_serializer__.to_json(self, by_alias=True, exclude_defaults=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> CustomerState:
        return cls.model_validate_json(data)

    @model_validator(mode="before")
    @classmethod
    def _legacy_trail(cls, data: Any) -> Any:
        """Read a state written with the single ``tr`` list into the per-rule memory, so
        an upgraded worker keeps the week of contacts its changelog holds."""
        if not isinstance(data, dict) or "tr" not in data:
            return data
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

    # -- the packed id set ------------------------------------------------------------

    def seen_ids(self) -> list[tuple[bytes, int]]:
        """``(hash48, event_time)`` pairs, oldest first."""
        return unpack_seen(self.seen)


def pack_seen(entries: list[tuple[bytes, int]]) -> str:
    """Inverse of ``CustomerState.seen_ids``."""
    return base64.b64encode(b"".join(starmap(_SEEN.pack, entries))).decode()


def unpack_seen(packed: str) -> list[tuple[bytes, int]]:
    """``(hash48, event_time)`` pairs of a packed id set, oldest first.

    ``iter_unpack`` does in C what a loop of ``unpack_from`` did in Python (run for every
    customer batch); a length that is not a whole number of entries takes that loop, so
    a damaged set fails with the same error as before.
    """
    raw = base64.b64decode(packed) if packed else b""
    if len(raw) % _SEEN.size == 0:
        return list(_SEEN.iter_unpack(raw))
    return [_SEEN.unpack_from(raw, i) for i in range(0, len(raw), _SEEN.size)]
