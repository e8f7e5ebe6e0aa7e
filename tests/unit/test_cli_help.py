"""``cxpulse worker --help`` and ``cxpulse ingest --help`` list their ``CXPULSE_*`` settings
as a table an 80-column terminal shows as a table: one row per setting, the name in the
first column, what it does and its default wrapped under the second (click reflowed the
list into one paragraph once, and rows of 250 characters wrapped to the terminal's first
column after that)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from cxpulse.streams.cli import cli
from cxpulse.streams.settings import Settings

ROW = re.compile(r"^    (CXPULSE_[A-Z0-9_]+)( +)(\S.*)$")


def settings_table(command: str) -> dict[str, str]:
    result = CliRunner().invoke(cli, [command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    table = lines[lines.index("  Environment:") + 2 :]
    assert all(len(line) <= 80 for line in table), [line for line in table if len(line) > 80]
    rows: dict[str, str] = {}
    column = None
    name = ""
    for line in table:
        if not line.strip():
            break
        m = ROW.match(line)
        if m:
            name = m.group(1)
            assert name not in rows, name
            start = 4 + len(name) + len(m.group(2))
            assert column in (None, start), (column, line)  # one column for every row
            column = start
            rows[name] = m.group(3)
        else:
            assert column is not None and line[:column].strip() == "", line
            assert line[column] != " ", line
            rows[name] += " " + line[column:]
    return rows


@pytest.mark.parametrize(
    ("command", "only"),
    [("worker", None), ("ingest", ("kafka_url", "topic_prefix", "partitions", "ingest_"))],
)
def test_the_settings_are_a_table_of_one_row_each(
    command: str, only: tuple[str, ...] | None
) -> None:
    rows = settings_table(command)
    wanted = [n for n in Settings.model_fields if only is None or n.startswith(only)]
    assert list(rows) == [f"CXPULSE_{n.upper()}" for n in wanted]
    for n in wanted:
        field = Settings.model_fields[n]
        assert rows[f"CXPULSE_{n.upper()}"] == f"{field.description} [default: {field.default}]"


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["publish", "--batch-size", "0", "events.jsonl"], "--batch-size"),
        (["publish", "--batch-size", "10001", "events.jsonl"], "--batch-size"),
        (["alerts", "--max", "0"], "--max"),
        (["alerts", "--idle-timeout", "0"], "--idle-timeout"),
        (["demo", "--live", "-1"], "--live"),
        (["demo", "--customers", "0"], "--customers"),
        (["demo", "--timeout", "-1"], "--timeout"),
        (["broker", "--port", "70000"], "--port"),
    ],
)
def test_a_number_out_of_range_is_one_line_before_anything_starts(
    args: list[str], option: str
) -> None:
    """Refused by the option itself, with the range (a batch size of 0 and 0 customers
    ended in tracebacks, a negative timeout started a demo that stopped at once)."""
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"Invalid value for '{option}'" in result.output and "range" in result.output
