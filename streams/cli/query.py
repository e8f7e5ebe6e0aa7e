"""``cxpulse query``: read-only SQL against the configured ClickHouse."""

from __future__ import annotations

import click

from cxpulse.streams.cli.common import settings_from


@click.command()
@click.argument("sql")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "table", "tsv", "csv", "json"]),
    default="auto",
    show_default=True,
    help="auto = a table on a terminal, TSV in a pipe",
)
def query(sql: str, fmt: str) -> None:
    """Run a read-only SQL query on the configured ClickHouse and print the result.

    With the embedded chDB, a running worker answers the query (its directory can be
    open in one process only); without a worker the directory is read directly.
    """
    from cxpulse.streams.query import print_result, run_query

    columns, rows = run_query(settings_from(), sql)
    print_result(columns, rows, fmt)
