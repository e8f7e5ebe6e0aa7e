"""Reading ``cxpulse publish`` input: format detection, line numbers, one-line errors, and
per-event validation. No Kafka here: the round trip is in tests/integration."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from cxpulse.schemas.envelope import MAX_MESSAGE_BYTES
from cxpulse.schemas.events import TouchpointEvent
from cxpulse.streams import publisher
from cxpulse.streams.admin import KafkaUnavailable
from cxpulse.streams.dev.broker import free_port
from cxpulse.streams.publisher import (
    InputError,
    Oversize,
    PublishSummary,
    Rejection,
    SourceItem,
    iter_source,
    print_summary,
    publish_source,
    validate_event,
)
from cxpulse.streams.settings import load_settings


def event(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-20T09:30:00+00:00",
        "customer_id": "C-1",
        "channel": "web",
        "touchpoint": "web.login",
        "journey_stage": "post_purchase",
        "outcome": "success",
    }
    doc.update(overrides)
    return doc


def write(tmp_path: Path, data: bytes | str, name: str = "in.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def items(path: Path | str, stdin: io.BytesIO | None = None) -> list[SourceItem]:
    return list(iter_source(path, stdin))


def lines_of(path: Path) -> list[int]:
    return [item.line for item in items(path)]


# -- JSON Lines ------------------------------------------------------------------------------


def test_json_lines_keep_editor_line_numbers_across_blank_lines(tmp_path: Path) -> None:
    a, b = json.dumps(event()), json.dumps(event())
    path = write(tmp_path, f"\n{a}\n\n   \n{b}\n\n")
    got = items(path)
    assert [i.line for i in got] == [2, 5]
    assert [json.loads(i.value) for i in got] == [json.loads(a), json.loads(b)]


def test_json_lines_with_crlf_bom_and_no_final_newline(tmp_path: Path) -> None:
    a, b = json.dumps(event()), json.dumps(event())
    path = write(tmp_path, b"\xef\xbb\xbf" + f"{a}\r\n{b}".encode())
    got = items(path)
    assert [i.line for i in got] == [1, 2]
    assert all(isinstance(validate_event(i.value), TouchpointEvent) for i in got)


def test_bad_json_lines_are_items_rejected_with_reasons_not_fatal(tmp_path: Path) -> None:
    good = json.dumps(event())
    path = write(tmp_path, f"{good}\n{{broken\n[1, 2]\n{json.dumps(event(channel='fax'))}\n")
    got = items(path)
    assert [i.line for i in got] == [1, 2, 3, 4]
    reasons = [validate_event(i.value) for i in got]
    assert isinstance(reasons[0], TouchpointEvent)
    assert isinstance(reasons[1], str) and reasons[1].startswith("not JSON")
    assert reasons[2] == "expected a JSON object, got array"
    assert isinstance(reasons[3], str) and reasons[3].startswith("channel:")


def test_invalid_utf8_in_one_line_rejects_that_line_only(tmp_path: Path) -> None:
    good = json.dumps(event()).encode()
    bad = json.dumps(event(customer_id="C-X")).encode().replace(b"C-X", b"C-\xff")
    got = items(write(tmp_path, good + b"\n" + bad + b"\n"))
    assert isinstance(validate_event(got[0].value), TouchpointEvent)
    assert isinstance(validate_event(got[1].value), str)


def test_stdin_dash_reads_the_given_stream(tmp_path: Path) -> None:
    stream = io.BytesIO(f"{json.dumps(event())}\n{json.dumps(event())}\n".encode())
    assert [i.line for i in items("-", stream)] == [1, 2]


# -- JSON arrays and pretty-printed objects ---------------------------------------------------


def test_json_array_items_carry_the_line_they_start_on(tmp_path: Path) -> None:
    docs = [event(), event(), event()]
    path = write(tmp_path, json.dumps(docs, indent=2), "in.json")
    got = items(path)
    assert [i.value for i in got] == docs
    text = path.read_text().splitlines()
    for item in got:
        assert text[item.line - 1].strip() == "{", item.line
    assert got[0].line == 2


def test_compact_json_array_on_one_line(tmp_path: Path) -> None:
    docs = [event(), 7, event()]
    got = items(write(tmp_path, json.dumps(docs), "in.json"))
    assert [i.line for i in got] == [1, 1, 1]
    assert validate_event(got[1].value) == "expected a JSON object, got number"


def test_empty_array_has_no_items(tmp_path: Path) -> None:
    assert items(write(tmp_path, "  [ \n ]\n", "in.json")) == []


def test_array_detected_after_leading_blank_lines(tmp_path: Path) -> None:
    got = items(write(tmp_path, "\n\n" + json.dumps([event()]), "in.json"))
    assert [i.line for i in got] == [3]


def test_pretty_printed_objects_one_after_another(tmp_path: Path) -> None:
    a, b = event(), event()
    got = items(write(tmp_path, json.dumps(a, indent=2) + "\n" + json.dumps(b, indent=2)))
    assert [i.value for i in got] == [a, b]
    assert got[0].line == 1 and got[1].line == len(json.dumps(a, indent=2).splitlines()) + 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[\n{"a": 1},\n{"b": \n', "invalid JSON"),
        ('[{"a": 1} {"b": 2}]', "expected ',' or ']'"),
        ('[{"a": 1}]\n[{"b": 2}]', "unexpected data after the JSON array"),
    ],
)
def test_broken_json_array_is_one_line_error_naming_the_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text, "in.json")
    with pytest.raises(InputError) as err:
        items(path)
    assert message in str(err.value)
    assert "line" in str(err.value) and "\n" not in str(err.value)


def test_array_that_is_not_utf8_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not UTF-8"):
        items(write(tmp_path, b'[{"a": "\xff"}]', "in.json"))


def one_line_input_error(path: Path) -> str:
    with pytest.raises(InputError) as err:
        items(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


def test_an_array_nested_too_deeply_is_one_line_naming_where_not_a_recursion_error(
    tmp_path: Path,
) -> None:
    """The file of the bug report: Python's JSON decoder recurses per level, so 100,000
    levels raised RecursionError. The outer '[' is the file's array, its first item
    starts at column 2."""
    path = write(tmp_path, "[" * 100_000 + "]" * 100_000, "deep.json")
    assert one_line_input_error(path) == (
        "cannot read the item at line 1 column 2: nested too deeply "
        "(too many levels of arrays or objects inside each other)"
    )


def test_a_deep_item_after_good_ones_names_its_own_line_and_column(tmp_path: Path) -> None:
    good = json.dumps(event())
    text = f'[\n  {good},\n  {{"attributes": {"[" * 5000}{"]" * 5000}}}\n]\n'
    path = write(tmp_path, text, "in.json")
    with pytest.raises(InputError, match=r"at line 3 column 3: nested too deeply"):
        list(iter_source(path))
    # The good item before it was read first: what the publisher sent, it sent.
    assert next(iter_source(path)).line == 2


def test_a_number_of_too_many_digits_in_an_array_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[\n{"event_id": ' + "9" * 5000 + "}\n]", "in.json")
    message = one_line_input_error(path)
    assert message.startswith("cannot read the item at line 2 column 1: a number has too many")
    assert "set_int_max_str_digits" not in message  # Python's advice is not the user's fix


def test_pretty_printed_objects_nested_too_deeply_are_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "a": ' + "[" * 100_000 + "]" * 100_000 + "\n}\n")
    assert one_line_input_error(path).startswith("cannot read the item at line 1 column 1:")


def test_a_json_lines_line_nested_too_deeply_is_rejected_with_its_line(tmp_path: Path) -> None:
    """JSON Lines need no InputError: each line is its own item, so a bad one is a
    rejection with its line number and the lines after it are read as usual. The reason
    gives the column only ("line 1" of the pydantic parser would contradict line 2)."""
    good = json.dumps(event())
    path = write(tmp_path, f"{good}\n{'[' * 100_000}{']' * 100_000}\n{{broken\n{good}\n")
    got = items(path)
    assert [i.line for i in got] == [1, 2, 3, 4]
    reasons = [validate_event(i.value) for i in got]
    assert isinstance(reasons[0], TouchpointEvent) and isinstance(reasons[3], TouchpointEvent)
    assert isinstance(reasons[1], str) and reasons[1].startswith("not JSON: recursion limit")
    assert "line" not in reasons[1]
    assert reasons[2] == "not JSON: key must be a string at column 2"  # the 'b' of {broken


def test_string_items_of_an_array_are_strings_not_json_text(tmp_path: Path) -> None:
    """A JSON string holding an event's JSON is a string, not an event (as in JSON Lines)."""
    inner = json.dumps(event())
    got = items(write(tmp_path, json.dumps(["x", inner, event()]), "in.json"))
    reasons = [validate_event(i.value) for i in got]
    assert reasons[:2] == ["expected a JSON object, got string"] * 2
    assert isinstance(reasons[2], TouchpointEvent)


def test_a_read_failing_midway_is_an_input_error() -> None:
    import errno

    class Failing(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(InputError, match=r"^cannot read stdin: Input/output error$"):
        items("-", io.BufferedReader(Failing()))  # type: ignore[arg-type]


# -- unusable files ---------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_input_is_an_error(tmp_path: Path, content: str) -> None:
    with pytest.raises(InputError, match="is empty"):
        items(write(tmp_path, content))


def test_input_that_is_neither_format_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="neither JSON Lines nor a JSON array"):
        items(write(tmp_path, "event_id,customer_id\n1,C-1\n", "in.csv"))


def test_missing_file_and_directory_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot read .*nope\.jsonl"):
        items(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="cannot read"):
        items(tmp_path)


def test_publish_source_reports_a_missing_file_before_touching_kafka(tmp_path: Path) -> None:
    settings = load_settings(kafka_url=f"kafka://127.0.0.1:{free_port()}")
    with pytest.raises(InputError, match="cannot read"):
        publish_source(tmp_path / "missing.jsonl", settings)


def test_publish_source_with_kafka_unreachable_is_one_line(tmp_path: Path) -> None:
    settings = load_settings(kafka_url=f"kafka://127.0.0.1:{free_port()}")
    path = write(tmp_path, json.dumps(event()) + "\n")
    with pytest.raises(KafkaUnavailable) as err:
        publish_source(path, settings, connect_timeout=0.3)
    message = str(err.value)
    assert "cannot reach Kafka" in message and "cxpulse broker" in message
    assert "\n" not in message


# -- validation and the summary ----------------------------------------------------------------


def test_validate_event_accepts_models_mappings_bytes_and_text() -> None:
    doc = event()
    model = TouchpointEvent.model_validate(doc)
    assert validate_event(model) is model
    assert validate_event(doc) == model
    assert validate_event(json.dumps(doc)) == model
    assert validate_event(json.dumps(doc).encode()) == model


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (None, "expected a JSON object, got null"),
        ("[]", "expected a JSON object, got array"),
        (b'"x"', "expected a JSON object, got string"),
        (3.5, "expected a JSON object, got number"),
        ({"event_id": "x"}, "event_id: Input should be a valid UUID"),
        (
            event(occurred_at="1969-12-31T23:59:59+00:00"),
            "occurred_at: Input should be greater than or equal to 2000-01-01T00:00:00Z",
        ),
        (
            json.dumps(event(occurred_at="2100-01-01T00:00:00Z")),
            "occurred_at: Input should be less than 2100-01-01T00:00:00Z",
        ),
        (
            b'{"event_id": "x", "n": ' + b"9" * 5000 + b"}",
            "not JSON",
        ),
    ],
)
def test_validate_event_reasons(item: Any, reason: str) -> None:
    result = validate_event(item)
    assert isinstance(result, str) and result.startswith(reason), result


def test_print_summary_lists_the_first_rejections_with_lines() -> None:
    summary = PublishSummary(
        "cx.touchpoints", "kafka://127.0.0.1:9092", sent=1000, messages=2, seconds=0.5
    )
    summary.rejected = 7
    summary.rejections = [Rejection(f"line {n}", f"reason {n}") for n in range(1, 8)]
    out = io.StringIO()
    print_summary(summary, out, limit=3)
    text = out.getvalue()
    assert text.startswith(
        "sent 1000 events in 2 messages to topic cx.touchpoints at kafka://127.0.0.1:9092"
    )
    assert "rejected 7 invalid events" in text
    assert "  line 1: reason 1\n" in text and "line 4" not in text
    assert "... and 4 more" in text


# -- bounded reading ---------------------------------------------------------------------------

OVER = MAX_MESSAGE_BYTES + 1_000_000  # an item past the 8 MiB message limit


def test_a_line_over_the_message_limit_is_rejected_with_its_line_and_size(tmp_path: Path) -> None:
    good = json.dumps(event())
    big = '{"attributes": {"a": "' + "x" * OVER + '"}}'
    got = items(write(tmp_path, f"{good}\n{big}\n\n{good}"))
    assert [i.line for i in got] == [1, 2, 4]
    assert isinstance(got[1].value, Oversize) and got[1].value.size == len(big)
    reason = validate_event(got[1].value)
    assert reason == (
        f"{len(big):,} bytes, over the 8 MiB message limit (not read): an event is at most "
        "a few KiB, see docs/wire-format.md"
    )
    assert isinstance(validate_event(got[2].value), TouchpointEvent)


def test_a_last_line_over_the_limit_without_newline_is_rejected(tmp_path: Path) -> None:
    got = items(write(tmp_path, "{" + "x" * OVER))
    assert [(i.line, i.value) for i in got] == [(1, Oversize(OVER + 1))]


@pytest.mark.parametrize("indent", [None, 1])
def test_an_array_item_over_the_limit_is_skipped_and_the_rest_read(
    tmp_path: Path, indent: int | None
) -> None:
    a, b = event(), event()
    big = {"attributes": {"a": "x" * OVER, "b": '\\"[{'}}
    text = json.dumps([a, big, "y" * OVER, b], indent=indent)
    got = items(write(tmp_path, text, "in.json"))
    assert [type(i.value) for i in got] == [dict, Oversize, Oversize, dict]
    inside = json.dumps(big, indent=indent).replace("\n", "\n" + " " * (indent or 0))
    assert inside in text and got[1].value.size == len(inside)
    assert got[2].value.size == OVER + 2  # a string item, with its quotes
    assert got[3].value == b
    if indent:
        assert [i.line for i in got] == [2, 11, 17, 18]


CHUNKED_INPUTS = [
    "\n".join(json.dumps(event(intent=f"i{n}")) for n in range(5)) + "\n\n",
    json.dumps([event(attributes={"q": 'a "quoted" \\ [x]'}), 7, 's\\"t', None, event()], indent=2),
    json.dumps(event(), indent=2) + "\n" + json.dumps(event(), indent=2),
    '[{"a": 1} {"b": 2}]',
    '[\n{"a": 1},\n{"b": \n',
    "[1, 2",
    "[1,]",
    '[{"a": [1, 2}, {"b": "' + "z" * 40 + '"}]',  # a bracket closed by the wrong one
    '[{"a": 1}]\n[{"b": 2}]',
    "\ufeff[\n  12e3 ,\n true\n]",
]


@pytest.mark.parametrize("text", CHUNKED_INPUTS)
def test_reading_in_tiny_chunks_gives_the_same_items_and_errors(
    tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items, lines and error messages do not depend on where the reads split the input
    (an escape, a string's quote or a bracket cut between two reads)."""
    path = write(tmp_path, text, "in.json")

    def outcome() -> Any:
        try:
            return [(i.line, i.value, i.size) for i in items(path)]
        except InputError as exc:
            return exc.message

    whole = outcome()
    for chunk in (1, 2, 3, 7):
        monkeypatch.setattr(publisher, "READ_CHUNK", chunk)
        assert outcome() == whole, chunk


def test_empty_input_says_the_file_had_no_events(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        items(write(tmp_path, "\n \n"))
    assert "holds no events" in err.value.message and "valid events" not in err.value.message
