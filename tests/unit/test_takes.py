"""How much of a take a message is worth (streams/pipeline/takes.py): its events by its
count header (raw input: by its bytes), and never so little that a take could hold more
than TAKE_MESSAGES messages, whatever they hold (a backlog of messages without the
header, from another producer or an earlier worker, would otherwise be taken 32,000
messages at a time)."""

from __future__ import annotations

from types import SimpleNamespace

from cxpulse.streams.pipeline.takes import EVENT_BYTES, TAKE_EVENTS, TAKE_MESSAGES, worth
from cxpulse.streams.runtime import count_headers


def message(headers: object, value: bytes = b"[]") -> object:
    return SimpleNamespace(headers=headers, value=value)


def test_a_message_counts_its_events_by_its_header() -> None:
    assert worth(message(count_headers(500))) == 500
    assert worth(message(dict(count_headers(TAKE_EVENTS)))) == TAKE_EVENTS


def test_small_and_headerless_messages_still_bound_the_take() -> None:
    floor = TAKE_EVENTS // TAKE_MESSAGES
    for m in (message(count_headers(1)), message(None), message([]), message({"x": b"1"})):
        assert worth(m) == floor
    # the take fills after TAKE_MESSAGES such messages at most
    assert floor * TAKE_MESSAGES >= TAKE_EVENTS - floor
    assert floor * (TAKE_MESSAGES + 1) > TAKE_EVENTS


def test_a_raw_message_counts_by_its_bytes() -> None:
    """Raw input carries no count header: a message of 500 events of ~500 bytes counts
    for more than 500, so a take of raw input is bounded by its bytes (~13 MB at most)."""
    envelope = b"[" + b",".join([b"{" + b"x" * 500 + b"}"] * 500) + b"]"
    assert worth(message(None, envelope)) == len(envelope) // EVENT_BYTES > 500
    assert worth(message(None, b"{}")) == TAKE_EVENTS // TAKE_MESSAGES
    assert worth(message(None, None)) == TAKE_EVENTS // TAKE_MESSAGES  # a tombstone


def test_a_full_take_of_125_event_messages_is_still_32000_events() -> None:
    """The steady run's messages (500 raw events split over 4 partitions) are not held
    back by the message bound."""
    assert 125 * TAKE_MESSAGES >= TAKE_EVENTS
    assert worth(message(count_headers(125))) == 125
