"""The one-call path for batch messages (``envelope._whole_batch``: pydantic validates the
raw JSON array in one call) against the item-by-item path (``envelope._read_items``:
Python's JSON parser, then the model item by item), which gives every rejected item its
reason: whenever the one call returns events, the item-by-item path returns the very
same events and no rejection; whenever it does not, the message is read item by item.

The batches are generated well and badly: every field in the lax forms pydantic accepts
(numbers as strings, booleans for numbers, UUIDs in every spelling), values of the wrong
JSON type, missing and unknown fields, duplicate keys, numbers written as Python's parser
and pydantic's may read differently (NaN, Infinity, 1e400, -0, integers near the 4,300
digit limits), lone surrogates (escaped, and as bytes), invalid UTF-8, raw control
characters, whitespace and byte order marks.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cxpulse.schemas import envelope
from cxpulse.schemas.envelope import MAX_BATCH_EVENTS, UTF8_BOM, decode_message
from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.vocabulary import CHANNELS
from cxpulse.streams.pipeline.records import encode_events, record_of
from tests.unit.test_pipeline_records import field_by_field
from tests.unit.test_schema_contract import date_times

# -- JSON text with what a dict cannot say: repeated keys, numbers as written, raw bytes -----


@dataclass(frozen=True)
class Num:
    """A number as written in the JSON text (``1e400``, ``-0``, ``NaN``, 4,301 digits)."""

    text: str


@dataclass(frozen=True)
class Obj:
    """A JSON object as its members in order; a key may repeat."""

    pairs: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Style:
    ascii: bool  # \\u escapes for everything beyond ASCII, or UTF-8
    space: str  # after separators


def dump(value: Any, style: Style) -> bytes:
    return b"".join(_tokens(value, style))


def _text(s: str, style: Style) -> bytes:
    # A lone surrogate written as UTF-8 becomes the three bytes Python's parser reads
    # back (surrogatepass) and pydantic's refuses.
    return json.dumps(s, ensure_ascii=style.ascii).encode("utf-8", "surrogatepass")


def _tokens(value: Any, style: Style) -> Iterator[bytes]:
    sep = b"," + style.space.encode()
    if isinstance(value, Obj):
        yield b"{"
        for i, (k, v) in enumerate(value.pairs):
            if i:
                yield sep
            yield _text(k, style)
            yield b":" + style.space.encode()
            yield from _tokens(v, style)
        yield b"}"
    elif isinstance(value, list):
        yield b"["
        for i, v in enumerate(value):
            if i:
                yield sep
            yield from _tokens(v, style)
        yield b"]"
    elif isinstance(value, Num):
        yield value.text.encode()
    elif isinstance(value, str):
        yield _text(value, style)
    elif isinstance(value, float):
        yield json.dumps(value).encode()  # NaN and Infinity as Python writes them
    else:
        yield json.dumps(value).encode()


# -- values, fields, items ---------------------------------------------------------------------

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
texts = st.text(st.characters() | surrogates, max_size=12) | st.text(
    st.sampled_from("aZ9 _-.:/@\t\x00\x7f\u00e9\u4e2d\U0001f600"), max_size=8
)
#: Numbers both parsers read alike (as the same int or float).
NUMBERS_READ_ALIKE = [
    "-0",
    "-0.0",
    "0e0",
    "1E2",
    "1.5e+3",
    "2.4703282292062328e-324",
    "1.7976931348623157e308",
    "123456789012345678901234567890",
    "18446744073709551616",
    "9" * 4300,
    "-" + "9" * 4300,
]
#: Numbers only Python's parser reads (or reads in its own way), and numbers no JSON has.
NUMBERS_READ_APART = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 4301]
NUMBERS_READ_APART += ["9" * 5000 + ".5", "01", ".5", "1.", "+1"]
numbers_as_written = st.sampled_from(NUMBERS_READ_ALIKE + NUMBERS_READ_APART).map(Num)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | texts
    | numbers_as_written
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(st.tuples(texts, inner), max_size=3).map(lambda p: Obj(tuple(p)))
    ),
    max_leaves=6,
)


@dataclass(frozen=True)
class Field_:
    """A field's values: ``good`` ones (valid, in the lax forms pydantic accepts) and
    ``bad`` ones (just out of range, the wrong shape; any JSON value besides)."""

    good: st.SearchStrategy[Any]
    bad: st.SearchStrategy[Any]


def pick(draw: st.DrawFn, field: Field_, rate: int) -> Any:
    """A bad value ``rate`` times in 100, else a good one."""
    if draw(st.integers(0, 99)) < rate:
        return draw(field.bad | json_values)
    return draw(field.good)


def number(lo: int, hi: int, integral: bool) -> Field_:
    """A number in its range in every form lax mode reads, or one just outside it."""
    i = st.integers(lo, hi)
    good = [i, i.map(float), i.map(str), i.map(lambda n: f" {n} "), i.map(lambda n: f"{n:_}")]
    good.append(i.map(lambda n: Num(f"{n}e0")))
    out = st.sampled_from([lo - 1, hi + 1])
    bad = [out, out.map(str), st.booleans(), st.just("1e2"), st.just("")]
    if integral:
        bad += [i.map(lambda n: n + 0.5), i.map(lambda n: f"{n}.0")]
    else:
        x = st.floats(lo, hi)
        good += [x, x.map(repr), x.map(lambda v: Num(repr(v))), x.map(lambda v: Num(f"{v:e}"))]
        bad += [st.floats(hi, hi * 2, exclude_min=True), st.sampled_from(["inf", "nan"])]
    return Field_(st.one_of(good), st.one_of(bad))


def text_field(max_size: int) -> Field_:
    good = st.text(max_size=max_size) | st.just("x" * max_size)
    bad = st.just("x" * (max_size + 1)) | st.text(surrogates, min_size=1, max_size=3)
    return Field_(good, bad | st.integers(0, 9))


def pattern(regex: str, max_size: int) -> Field_:
    good = st.from_regex(regex, fullmatch=True).filter(lambda s: len(s) <= max_size)
    bad = st.sampled_from(["", " a", "a b", "x" * (max_size + 1), "é", "A.b", "-a"])
    return Field_(good, bad)


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    """A valid event time in the forms the contract allows."""
    moment = draw(st.datetimes(datetime(2000, 1, 2), datetime(2099, 12, 30)))
    digits = draw(st.integers(0, 9))
    fraction = "." + f"{moment.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]
    sign, hh, mm = draw(st.sampled_from("+-")), draw(st.integers(0, 23)), draw(st.integers(0, 59))
    offset = draw(st.sampled_from(["Z", "z", f"{sign}{hh:02d}:{mm:02d}"]))
    sep = draw(st.sampled_from("Tt"))
    return moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + (fraction if digits else "") + offset


identifier = pattern(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,63}", 64)
slug = pattern(r"[a-z0-9_.-]{1,64}", 64)
FIELDS: dict[str, Field_] = {
    "event_id": Field_(
        st.uuids().flatmap(
            lambda u: st.sampled_from(
                [str(u), str(u).upper(), u.hex, f"urn:uuid:{u}", "{" + str(u) + "}"]
            )
        ),
        st.uuids().map(lambda u: str(u)[:-1]) | st.just(""),
    ),
    "schema_version": Field_(
        st.sampled_from([1, 1.0, True, Num("1e0"), Num("1.0")]), st.sampled_from(["1", 2, 0])
    ),
    "occurred_at": Field_(rfc3339(), date_times()),
    "customer_id": identifier,
    "touchpoint": pattern(r"[a-z0-9_]{1,12}(\.[a-z0-9_]{1,12}){0,3}", 64),
    "touchpoint_instance": pattern(r"[A-Za-z0-9/][A-Za-z0-9._:@/-]{0,40}", 128),
    "journey_stage": Field_(
        st.sampled_from(["pre_purchase", "purchase", "post_purchase"]), st.just("Purchase")
    ),
    "journey_id": identifier,
    "intent": slug,
    "outcome": Field_(st.sampled_from(["success", "failure", "abandoned"]), st.just("ok")),
    "tier": Field_(st.sampled_from(["A", "B", "C"]), st.sampled_from(["a", "D"])),
    "segment": slug,
}
DETAILS: dict[str, dict[str, Field_]] = {
    "web": {
        "latency_ms": number(0, 3_600_000, False),
        "http_status": number(100, 599, True),
        "page": text_field(128),
        "steps": number(0, 1000, True),
    },
    "app": {
        "latency_ms": number(0, 3_600_000, False),
        "http_status": number(100, 599, True),
        "screen": text_field(128),
        "app_version": text_field(32),
        "os": Field_(st.sampled_from(["ios", "android", "other"]), st.just("IOS")),
        "steps": number(0, 1000, True),
    },
    "call_center": {
        "wait_seconds": number(0, 86_400, False),
        "handle_seconds": number(0, 86_400, False),
        "transfers": number(0, 1000, True),
        "ivr_steps": number(0, 1000, True),
        "queue": text_field(128),
        "agent_id": identifier,
    },
    "store": {
        "queue_seconds": number(0, 86_400, False),
        "service_seconds": number(0, 86_400, False),
        "terminal_id": identifier,
        "staff_id": identifier,
    },
    "atm": {
        "response_ms": number(0, 3_600_000, False),
        "error_code": text_field(32),
        "cash_dispensed": Field_(
            st.booleans() | st.sampled_from(["true", "no", 0, 1, 1.0, "1", "on"]),
            st.sampled_from([2, "maybe", 0.5]),
        ),
    },
}
FEEDBACK: dict[str, Field_] = {
    "nps": number(0, 10, True),
    "csat": number(1, 5, True),
    "ces": number(1, 7, True),
    "text": text_field(2000),
    "language": Field_(
        st.sampled_from(["en", "zh", "zh-Hans", "yue-HK"]), st.sampled_from(["EN", "e", "en-"])
    ),
}
ATTRIBUTE_VALUES = Field_(
    st.one_of(
        st.text(max_size=20),
        st.just("y" * 256),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.sampled_from(NUMBERS_READ_ALIKE).map(Num),
    ),
    st.one_of(st.just("y" * 257), st.none(), st.just([1]), st.floats(), numbers_as_written),
)
ATTRIBUTE_KEYS = text_field(64)


def members(draw: st.DrawFn, fields: dict[str, Field_], rate: int) -> list[tuple[str, Any]]:
    names = draw(st.lists(st.sampled_from(sorted(fields)), unique=True))
    return [(k, pick(draw, fields[k], rate)) for k in names]


def roughen(draw: st.DrawFn, pairs: list[tuple[str, Any]], rate: int) -> Obj:
    """The members in any order; sometimes a key twice (the last one counts), a member
    missing, or an unknown one."""
    pairs = list(draw(st.permutations(pairs)))
    if pairs and draw(st.integers(0, 99)) < 3 * rate:
        k, _ = draw(st.sampled_from(pairs))
        pairs.insert(draw(st.integers(0, len(pairs))), (k, draw(json_values)))
    if pairs and draw(st.integers(0, 99)) < rate:
        del pairs[draw(st.integers(0, len(pairs) - 1))]
    if draw(st.integers(0, 99)) < rate:
        pairs.append((draw(st.sampled_from(["extra", "Kind", "customerId"])), 1))
    return Obj(tuple(pairs))


@st.composite
def items(draw: st.DrawFn, rate: int) -> Any:
    """One item of a batch: an event object, valid when ``rate`` is 0, and with about
    ``rate`` in 100 of its values bad; now and then (by ``rate``) not an object at all."""
    if draw(st.integers(0, 399)) < rate:
        return draw(json_values)
    channel = draw(st.sampled_from(CHANNELS))
    channel_field = Field_(st.just(channel), st.just("email"))
    required = ["event_id", "occurred_at", "customer_id", "touchpoint", "journey_stage", "outcome"]
    optional = draw(st.lists(st.sampled_from(sorted(set(FIELDS) - set(required))), unique=True))
    pairs = [(k, pick(draw, FIELDS[k], rate)) for k in required + optional]
    pairs.append(("channel", pick(draw, channel_field, rate)))
    if draw(st.booleans()):
        kind = channel if draw(st.integers(0, 99)) >= rate else draw(st.sampled_from(CHANNELS))
        body = [*members(draw, DETAILS[kind], rate), ("kind", kind)]
        pairs.append(("details", roughen(draw, body, rate)))
    if draw(st.booleans()):
        body = members(draw, FEEDBACK, rate)
        if not any(k in ("nps", "csat", "ces") for k, _ in body):
            body.append(("text", draw(st.text(min_size=1, max_size=5))))
        pairs.append(("feedback", roughen(draw, body, rate)))
    if draw(st.booleans()):
        n = draw(st.integers(0, 32 if draw(st.integers(0, 99)) >= rate else 34))
        keys = draw(st.lists(ATTRIBUTE_KEYS.good.filter(bool), min_size=n, max_size=n))
        if draw(st.integers(0, 99)) < rate:
            keys.append(draw(ATTRIBUTE_KEYS.bad | st.just("")))
        values = [pick(draw, ATTRIBUTE_VALUES, rate) for _ in keys]
        pairs.append(("attributes", roughen(draw, list(zip(keys, values, strict=True)), rate)))
    return roughen(draw, pairs, rate)


@st.composite
def messages(draw: st.DrawFn, rate: int | None = None) -> bytes:
    """A batch message; ``rate`` (drawn when not given) sets how bad its items are."""
    if rate is None:
        rate = draw(st.sampled_from([0, 0, 1, 3, 10, 30]))
    batch = draw(st.lists(items(rate), min_size=1 if rate == 0 else 0, max_size=6))
    style = Style(draw(st.booleans()), draw(st.sampled_from(["", " ", "\n  ", "\t"])))
    body = dump(batch, style)
    if draw(st.integers(0, 199)) < rate:  # bytes no JSON text may hold
        cut = draw(st.integers(0, len(body)))
        junk = draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\t", b"\x01", b"\\x", b" "]))
        body = body[:cut] + junk + body[cut:]
    before = draw(st.sampled_from([b"", b" ", b"\r\n", UTF8_BOM, UTF8_BOM + b"\n"]))
    after = draw(st.sampled_from([b"", b" ", b"\n"]))
    if draw(st.integers(0, 199)) < rate:
        after += draw(st.sampled_from([b"\x00", b"x", b",", b"]"]))
    return before + body + after


# -- the property --------------------------------------------------------------------------


def paths(message: bytes) -> tuple[list[TouchpointEvent] | None, tuple[Any, Any]]:
    """(what the one call returns, what the item-by-item path returns) for a message."""
    text = message[len(UTF8_BOM) :] if message.startswith(UTF8_BOM) else message
    return envelope._whole_batch(text), envelope._read_items(message, text)


def fingerprint(value: Any) -> Any:
    """A value with the exact type of everything in it (1, 1.0 and True are equal)."""
    if isinstance(value, dict):
        return [(fingerprint(k), fingerprint(v)) for k, v in value.items()]
    if isinstance(value, list | tuple):
        return [fingerprint(v) for v in value]
    if hasattr(value, "__dict__") and hasattr(value, "model_fields_set"):
        return (type(value).__name__, sorted(value.model_fields_set), fingerprint(value.__dict__))
    return (type(value).__name__, repr(value))


def record_bytes(event: TouchpointEvent) -> bytes | str:
    try:
        return encode_events([record_of(event)])
    except Exception as exc:  # an attribute integer beyond 64 bits: the same in both
        return repr(exc)


def assert_same_events(fast: list[TouchpointEvent], slow: list[TouchpointEvent]) -> None:
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert a == b
        assert fingerprint(a) == fingerprint(b)
        assert a.model_dump_json() == b.model_dump_json()
        assert record_of(a) == record_of(b) == field_by_field(a)
        assert record_bytes(a) == record_bytes(b)


def check(message: bytes) -> bool:
    """The property for one message; True when the one call was taken."""
    fast, (events, rejected) = paths(message)
    if fast is not None:
        assert rejected == [], [r.reason for r in rejected]
        assert_same_events(fast, events)
        assert decode_message(message) == (fast, [])
    else:
        assert decode_message(message) == (events, rejected)
    return fast is not None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=messages())
def test_the_one_call_returns_exactly_what_the_item_by_item_path_does(message: bytes) -> None:
    event("one call" if check(message) else "item by item")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=messages(rate=0))
def test_batches_valid_item_by_item_take_the_one_call(message: bytes) -> None:
    """Well-formed batches of events in every lax form: when the item-by-item path finds
    nothing to reject, the one call was taken (it is the normal case, not a rare one)."""
    fast, (_, rejected) = paths(message)
    assert (fast is not None) is (rejected == []), [r.reason for r in rejected]
    event("one call" if check(message) else "item by item")


# -- hand-written cases ---------------------------------------------------------------------

EVENT = (
    '{"event_id":"6f1c2a1e-0000-4000-8000-000000000001","occurred_at":"2026-12-04T09:30:00Z",'
    '"customer_id":"C-1","channel":"web","touchpoint":"web.login","journey_stage":"purchase",'
    '"outcome":"success"%s}'
)


def batch(extra: str = "", *, around: tuple[bytes, bytes] = (b"", b"")) -> bytes:
    item = (EVENT % extra).encode("utf-8", "surrogatepass")
    return around[0] + b"[" + item + b"," + (EVENT % "").encode() + b"]" + around[1]


ONE_CALL = {
    "plain": batch(),
    "last of duplicate keys": batch(',"attributes":{"a":1,"b":2,"a":3}'),
    "duplicate top-level key": batch(',"customer_id":"C-2"'),
    "duplicate discriminator": batch(',"details":{"kind":"app","kind":"web"}'),
    "4300-digit integer": batch(',"attributes":{"n":' + "9" * 4300 + "}"),
    "negative 4300-digit integer": batch(',"attributes":{"n":-' + "9" * 4300 + "}"),
    "integer beyond 64 bits": batch(',"attributes":{"n":18446744073709551616}'),
    "exponent float": batch(',"attributes":{"n":1E2,"m":123456789012345678901234567890e-10}'),
    "negative zeros": batch(',"attributes":{"n":-0,"m":-0.0}'),
    "subnormal and largest floats": batch(
        ',"attributes":{"n":2.4703282292062328e-324,"m":1.7976931348623157e308}'
    ),
    "escaped surrogate pair": batch(',"attributes":{"s":"\\ud83d\\ude00"}'),
    "escaped NUL": batch(',"attributes":{"s\\u0000":"\\u0000"}'),
    "raw DEL": batch(',"attributes":{"s":"\x7f"}'),
    "U+FFFF": batch(',"attributes":{"s":"\uffff"}'),
    "schema_version 1.0": batch(',"schema_version":1.0'),
    "schema_version true": batch(',"schema_version":true'),
    "numbers as strings": batch(
        ',"details":{"kind":"web","latency_ms":" 1.5 ","steps":"1_0","http_status":"200"}'
    ),
    "booleans as numbers": batch(',"details":{"kind":"web","latency_ms":true,"steps":false}'),
    "integral float for an integer": batch(',"details":{"kind":"web","steps":1e2}'),
    "upper-case UUID": batch(',"event_id":"6F1C2A1E-0000-4000-8000-000000000002"'),
    "UUID as hex": batch(',"event_id":"6f1c2a1e000040008000000000000002"'),
    "UUID as URN": batch(',"event_id":"urn:uuid:6f1c2a1e-0000-4000-8000-000000000002"'),
    "UUID in braces": batch(',"event_id":"{6f1c2a1e-0000-4000-8000-000000000002}"'),
    "lower-case t and z": batch(',"occurred_at":"2026-12-04t09:30:00z"'),
    "nanoseconds": batch(',"occurred_at":"2026-12-04T09:30:00.123456789+08:00"'),
    "whitespace around": batch(around=(b" \r\n\t", b"\n ")),
    "byte order mark": batch(around=(UTF8_BOM, b"")),
}
ITEM_BY_ITEM = {
    "NaN": batch(',"attributes":{"n":NaN}'),
    "Infinity": batch(',"details":{"kind":"web","latency_ms":Infinity}'),
    "1e400": batch(',"attributes":{"n":1e400}'),
    "4301-digit integer": batch(',"attributes":{"n":' + "9" * 4301 + "}"),
    "5000-digit float": batch(',"attributes":{"n":' + "9" * 5000 + ".5}"),
    "escaped lone surrogate": batch(',"attributes":{"s":"\\ud800"}'),
    "lone surrogate as bytes": batch(',"attributes":{"s":"\ud800"}'),
    "surrogate key": batch(',"attributes":{"\\udc00":1}'),
    "invalid UTF-8": batch(',"attributes":{"s":"@"}').replace(b"@", b"\xff\xc0\x80"),
    "raw tab in a string": batch(',"attributes":{"s":"\t"}'),
    "leading zero": batch(',"attributes":{"n":01}'),
    "bad escape": batch(',"attributes":{"s":"\\x"}'),
    "schema_version as a string": batch(',"schema_version":"1"'),
    "a float for an integer": batch(',"details":{"kind":"web","steps":1.5}'),
    "details of another channel": batch(',"details":{"kind":"web","kind":"app"}'),
    "unknown field": batch(',"extra":1'),
    "trailing garbage": batch(around=(b"", b" x")),
    "trailing NUL": batch(around=(b"", b"\x00")),
    "two byte order marks": batch(around=(UTF8_BOM + UTF8_BOM, b"")),
    "not an object": b'[1, "a", null]',
    "empty batch": b"[ ]",
    "too many events": b"[" + b",".join([(EVENT % "").encode()] * (MAX_BATCH_EVENTS + 1)) + b"]",
}


@pytest.mark.parametrize("name", sorted(ONE_CALL))
def test_the_one_call_reads_what_python_reads_alike(name: str) -> None:
    assert check(ONE_CALL[name]) is True


@pytest.mark.parametrize("name", sorted(ITEM_BY_ITEM))
def test_what_the_two_parsers_may_read_differently_goes_item_by_item(name: str) -> None:
    assert check(ITEM_BY_ITEM[name]) is False


def test_an_unchanged_reason_for_a_bad_item_next_to_good_ones() -> None:
    message = batch(',"attributes":{"n":NaN}')
    events, rejected = decode_message(message)
    assert [str(e.event_id)[-1] for e in events] == ["1"]
    assert [(r.index, r.kind) for r in rejected] == [(0, "string_type")]
    assert rejected[0].reason.startswith("attributes.n.constrained-str: Input should be a valid")


def test_with_a_lower_integer_digit_limit_the_message_goes_item_by_item() -> None:
    """pydantic's parser reads 4,300 digits whatever the process allows; Python's parser
    keeps to the process's limit, which then makes the message not JSON."""
    message = batch(',"attributes":{"n":' + "9" * 1200 + "}")
    assert check(message) is True
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(1000)
    try:
        assert check(message) is False
        events, rejected = decode_message(message)
        assert events == [] and [r.kind for r in rejected] == ["not_json"]
    finally:
        sys.set_int_max_str_digits(before)


def test_the_generated_text_is_what_python_writes_for_plain_values() -> None:
    """The test's own writer, for values a dict can hold: json.dumps's text."""
    value = [{"a": [1, 2.5, None, True, "x\u00e9\ud800"], "b": {"c": ""}}, "s"]
    obj = [Obj((("a", [1, 2.5, None, True, "x\u00e9\ud800"]), ("b", Obj((("c", ""),))))), "s"]
    for ascii_ in (True, False):
        ours = dump(obj, Style(ascii_, " "))
        assert ours == json.dumps(value, ensure_ascii=ascii_).encode("utf-8", "surrogatepass")
