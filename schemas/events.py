"""The touchpoint event contract, version 1.

This module is the single source of truth for what upstream systems publish on
``cx.touchpoints``: the JSON Schema in ``schemas/touchpoint_event.v1.json`` and the
ClickHouse columns are derived from these models, never written by hand.

Every string and collection has a size bound so one malformed or hostile producer
cannot blow up a worker's memory or a ClickHouse row.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from cxpulse.schemas.vocabulary import CHANNELS, Channel, JourneyStage, Outcome, Tier

__all__ = ["CHANNELS", "Channel", "Feedback", "JourneyStage", "Outcome", "Tier", "TouchpointEvent"]

SCHEMA_VERSION: Literal[1] = 1


# Identifiers are short, printable and free of whitespace so they are safe as Kafka keys,
# ClickHouse values and log fields.
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")
]
InstanceId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9/][A-Za-z0-9._:@/-]*$"),
]
# Intents and segments are lower-case slugs (``card_blocked``, ``retail_banking``).
Slug = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")]
LanguageTag = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
# A touchpoint *type* is a dotted lower-case name such as ``atm.withdrawal``.
TouchpointType = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
]
ShortText = Annotated[str, StringConstraints(max_length=128)]
Seconds = Annotated[float, Field(ge=0, le=86_400)]
Millis = Annotated[float, Field(ge=0, le=3_600_000)]
Count = Annotated[int, Field(ge=0, le=1_000)]
# Finite numbers only: Python's json and pydantic read NaN and Infinity, which JSON has no
# words for; re-encoded on an internal topic they would become null and be refused there.
AttributeValue = (
    Annotated[str, StringConstraints(max_length=256)]
    | int
    | Annotated[float, Field(allow_inf_nan=False)]
    | bool
)

#: The range of ``occurred_at`` (UTC, end excluded). Why these bounds:
#: - the stores cannot hold times outside it: ClickHouse 18.16's ``DateTime`` is a
#:   UInt32 of epoch seconds (1970..2106) and clickhouse-driver refuses to encode a
#:   negative one, so an insert holding an event from 1969 would fail on every retry; the
#:   customer state packs event times as unsigned 32-bit seconds too;
#: - no real interaction is that old or that far ahead: a date before 2000 is a device
#:   whose clock was reset (1970-01-01, 1999-12-31) or a default value, and such an event
#:   would only distort scores and lateness. It goes to the dead-letter topic instead.
OCCURRED_AT_MIN = datetime(2000, 1, 1, tzinfo=UTC)
OCCURRED_AT_END = datetime(2100, 1, 1, tzinfo=UTC)
#: ``occurred_at`` on the wire: an RFC 3339 date-time with its offset (``Z`` or ``±hh:mm``).
#: The JSON Schema states it as a pattern: most validators do not enforce
#: ``format: date-time``, and one that let an offset-less time pass would disagree with
#: the worker.
#: Each number within its range, as the worker reads them (a 25th hour, a 13th month, a
#: 60th second or a +24:00 offset fail in both); what a pattern cannot say (February 30,
#: the 2000..2100 bounds) the description does.
_DATE_TIME = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
)
_OFFSET = r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
RFC3339_WITH_OFFSET = _DATE_TIME + _OFFSET + "$"
#: The same shape with the offset left open: a time without one gets pydantic's own
#: reason ("Input should have timezone info").
#: Numbers out of their range pass here and get pydantic's reason ("month value is outside
#: expected range of 1-12").
_RFC3339_SHAPE = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?$"
)
_RFC3339_HINT = "an RFC 3339 string with an offset, such as 2026-12-04T09:30:00+08:00"


def _rfc3339_only(value: Any) -> Any:
    """Refuse what pydantic would otherwise read as a time: an epoch number (``1764840600``
    or ``"1764840600"``), a date alone, or any other shape than RFC 3339."""
    if isinstance(value, datetime):
        return value  # built in Python, not read from the wire
    if isinstance(value, str):
        if _RFC3339_SHAPE.match(value):
            return value
        raise PydanticCustomError("rfc3339", "Input should be {hint}", {"hint": _RFC3339_HINT})
    names = {bool: "a boolean", int: "a number", float: "a number", list: "an array"}
    kind = "null" if value is None else names.get(type(value), "an object")
    raise PydanticCustomError(
        "rfc3339", "Input should be {hint}, not {kind}", {"hint": _RFC3339_HINT, "kind": kind}
    )


EventTime = Annotated[
    AwareDatetime,
    Field(
        ge=OCCURRED_AT_MIN,
        lt=OCCURRED_AT_END,
        description=(
            "When the interaction happened: an RFC 3339 date-time with its UTC offset "
            "(2026-12-04T09:30:00+08:00 or ...Z; not an epoch number, not without offset); "
            "from 2000-01-01T00:00:00Z (included) to 2100-01-01T00:00:00Z (excluded)."
        ),
        json_schema_extra={"pattern": RFC3339_WITH_OFFSET},
    ),
    # After the bounds: they stay native datetime checks (and their reasons readable).
    BeforeValidator(_rfc3339_only),
]


class _Strict(BaseModel):
    """Unknown fields are rejected: a typo in a producer must surface, not vanish."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class WebDetails(_Strict):
    """A page view or web request: effort is latency and steps."""

    kind: Literal["web"] = "web"
    latency_ms: Millis | None = None
    http_status: Annotated[int, Field(ge=100, le=599)] | None = None
    page: ShortText | None = None
    steps: Count | None = None


class AppDetails(_Strict):
    """A mobile app screen or API call: effort is latency and steps; crashes are outcomes."""

    kind: Literal["app"] = "app"
    latency_ms: Millis | None = None
    http_status: Annotated[int, Field(ge=100, le=599)] | None = None
    screen: ShortText | None = None
    app_version: Annotated[str, StringConstraints(max_length=32)] | None = None
    os: Literal["ios", "android", "other"] | None = None
    steps: Count | None = None


class CallCenterDetails(_Strict):
    """An IVR or agent call: effort is waiting, handling, transfers and IVR steps."""

    kind: Literal["call_center"] = "call_center"
    wait_seconds: Seconds | None = None
    handle_seconds: Seconds | None = None
    transfers: Count | None = None
    ivr_steps: Count | None = None
    queue: ShortText | None = None
    agent_id: Identifier | None = None


class StoreDetails(_Strict):
    """A branch or store visit: effort is the queue and the service time."""

    kind: Literal["store"] = "store"
    queue_seconds: Seconds | None = None
    service_seconds: Seconds | None = None
    terminal_id: Identifier | None = None
    staff_id: Identifier | None = None


class AtmDetails(_Strict):
    """An ATM session: effort is response time; an error code explains a failure."""

    kind: Literal["atm"] = "atm"
    response_ms: Millis | None = None
    error_code: Annotated[str, StringConstraints(max_length=32)] | None = None
    cash_dispensed: bool | None = None


ChannelDetails = Annotated[
    WebDetails | AppDetails | CallCenterDetails | StoreDetails | AtmDetails,
    Field(discriminator="kind"),
]


class Feedback(_Strict):
    """What the customer told us: survey answers and free text (English or Chinese)."""

    nps: Annotated[int, Field(ge=0, le=10)] | None = None
    csat: Annotated[int, Field(ge=1, le=5)] | None = None
    ces: Annotated[int, Field(ge=1, le=7)] | None = None
    text: Annotated[str, StringConstraints(max_length=2_000)] | None = None
    language: LanguageTag | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Feedback:
        if self.nps is None and self.csat is None and self.ces is None and not self.text:
            raise ValueError("feedback needs at least one of nps, csat, ces or text")
        return self


class TouchpointEvent(_Strict):
    """One customer interaction at one touchpoint: a *moment* in CX terms.

    ``event_id`` is the idempotency key end to end: a replayed event is recognised by it
    in the experience state and deduplicated by it in ClickHouse.
    """

    event_id: UUID
    schema_version: Literal[1] = SCHEMA_VERSION
    occurred_at: EventTime
    customer_id: Identifier
    channel: Channel
    touchpoint: TouchpointType
    touchpoint_instance: InstanceId | None = None
    journey_stage: JourneyStage
    journey_id: Identifier | None = None
    intent: Slug | None = None
    outcome: Outcome
    details: ChannelDetails | None = None
    feedback: Feedback | None = None
    tier: Tier | None = None
    segment: Slug | None = None
    attributes: Annotated[
        dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], AttributeValue],
        Field(max_length=32),
    ] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _details_match_channel(self) -> TouchpointEvent:
        if self.details is not None and self.details.kind != self.channel:
            raise ValueError(
                f"details.kind is {self.details.kind!r} but channel is {self.channel!r}: "
                "send the details of the event's own channel"
            )
        return self
