"""ClickHouse DDL derived from the row specs in ``cxpulse.schemas.rows``, per server capability.

Nothing here names a table or a column: adding a table or a view to ``cxpulse.schemas.rows.SPECS``
is all it takes to create it. The server's version decides the dialect, because cxpulse
runs on a current ClickHouse in production, on chDB (current) embedded, and on Debian's
18.16 in CI, which lacks DateTime64, TTL and (without an experimental flag)
LowCardinality. Old servers get the nearest type that keeps the column's meaning:
``DateTime`` (seconds) for ``DateTime64``, ``String`` for ``LowCardinality(String)``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cxpulse.schemas.rows import Column, TableSpec, ViewSpec

from .errors import SinkConfigError, SinkWriteError

log = logging.getLogger(__name__)

#: The oldest server cxpulse creates tables on (custom partitioning, UUID, column comments).
MIN_VERSION = (18, 1)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the server's SQL dialect supports, as far as our DDL is concerned."""

    version: tuple[int, ...]
    datetime64: bool
    low_cardinality: bool
    ttl: bool

    @classmethod
    def from_version(cls, version: str) -> Capabilities:
        """Capabilities of the server whose ``SELECT version()`` returned ``version``."""
        parts = tuple(int(p) for p in re.findall(r"\d+", version)[:4])
        if not parts:
            raise SinkConfigError(f"cannot read ClickHouse version {version!r}")
        if parts < MIN_VERSION:
            raise SinkConfigError(
                f"ClickHouse {version} is too old: cxpulse needs "
                f"{'.'.join(map(str, MIN_VERSION))} or newer; upgrade the server"
            )
        return cls(
            version=parts,
            datetime64=parts >= (20, 1),
            # Experimental (behind allow_experimental_low_cardinality_type) until 19.x.
            low_cardinality=parts >= (19, 3),
            ttl=parts >= (19, 6),
        )


_LOW_CARDINALITY = re.compile(r"LowCardinality\(([^()]*(?:\([^()]*\))?[^()]*)\)")
_DATETIME64 = re.compile(r"DateTime64\(\s*\d+\s*(?:,\s*('[^']*')\s*)?\)")


def column_type(column: Column, caps: Capabilities) -> str:
    """The column's type as this server can take it."""
    t = column.type
    if not caps.low_cardinality:
        t = _LOW_CARDINALITY.sub(r"\1", t)
    if not caps.datetime64:
        t = _DATETIME64.sub(lambda m: f"DateTime({m.group(1)})" if m.group(1) else "DateTime", t)
    if t != column.type and column.fallback:
        return column.fallback
    return t


def quote_ident(name: str) -> str:
    """Backquote a table, column or database name, refusing anything unusual."""
    if not _IDENT.match(name):
        raise SinkConfigError(
            f"{name!r} is not a valid ClickHouse name: use letters, digits and _ only"
        )
    return f"`{name}`"


def string_literal(text: str) -> str:
    """A ClickHouse string literal: backslashes and quotes escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def create_database_sql(database: str) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)}"


def create_table_sql(spec: TableSpec, caps: Capabilities, database: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for one table spec.

    The ``ENGINE ... PARTITION BY ... ORDER BY`` form is understood by every server from
    18.x on; the partition key is monthly so old data can be dropped a month at a time,
    and every copy of a row lands in the same partition as the original (the key decides
    the partition), which is where ReplacingMergeTree deduplicates.
    """
    cols = ",\n".join(
        f"    {quote_ident(name)} {column_type(col, caps)} COMMENT {string_literal(col.doc)}"
        for name, col in spec.columns
    )
    version = f"({quote_ident(spec.version)})" if spec.version else ""
    order_by = ", ".join(quote_ident(c) for c in spec.order_by)
    sql = (
        f"CREATE TABLE IF NOT EXISTS {quote_ident(database)}.{quote_ident(spec.name)}\n"
        f"(\n{cols}\n)\n"
        f"ENGINE = ReplacingMergeTree{version}\n"
        f"PARTITION BY {spec.partition_by}\n"
        f"ORDER BY ({order_by})"
    )
    if spec.ttl and caps.ttl:
        column, days = spec.ttl
        sql += f"\nTTL toDateTime({quote_ident(column)}) + toIntervalDay({int(days)})"
    return sql


def create_view_sql(spec: ViewSpec, database: str) -> str:
    select = spec.select.format(db=quote_ident(database))
    return f"CREATE VIEW IF NOT EXISTS {quote_ident(database)}.{quote_ident(spec.name)} AS {select}"


def schema_statements(
    specs: Iterable[TableSpec | ViewSpec], caps: Capabilities, database: str
) -> list[str]:
    """Every statement that brings ``database`` up to the specs, in order; all idempotent."""
    out = [create_database_sql(database)]
    for spec in specs:
        if isinstance(spec, TableSpec):
            out.append(create_table_sql(spec, caps, database))
        else:
            out.append(create_view_sql(spec, database))
    return out


#: "column already exists": another worker upgrading the same table at the same moment.
COLUMN_EXISTS = 44


def same_view(definition: str, spec: ViewSpec, database: str) -> bool:
    """Whether a view's stored ``CREATE VIEW`` query selects what ``spec`` selects.

    ClickHouse stores the query reformatted (spacing, backquotes, parentheses), so both
    are compared as their letters and digits only: a change of an expression or a
    function (``avg(x)`` to ``round(avg(x), 2)``) shows, the formatting does not."""
    return _bare(spec.select.format(db=quote_ident(database))) in _bare(definition)


def _bare(sql: str) -> str:
    return re.sub(r"[^0-9a-z]", "", sql.lower())


def upgrade_statements(
    spec: TableSpec | ViewSpec,
    existing: list[str],
    caps: Capabilities,
    database: str,
    definition: str | None = None,
) -> list[str]:
    """What brings a table or view created by an earlier version up to ``spec``, given the
    column names it has now (``DESCRIBE TABLE``, in order).

    Column names are a public contract and new columns are only ever added at the end, so
    an older table is the spec's first columns: ``ALTER TABLE ... ADD COLUMN`` adds the
    rest (existing rows read the new columns' defaults). A view holds no data: one whose
    columns differ, or whose stored query (``definition``, when known) selects something
    else, is dropped and created again. Anything else (a column renamed or
    removed, a table of the same name that is not cxpulse's) is refused with one line,
    because inserting into it would fail on every batch.
    """
    if isinstance(spec, ViewSpec):
        wanted = [name for name, _ in spec.columns]
        unchanged = definition is None or same_view(definition, spec, database)
        if not wanted or (existing == wanted and unchanged):
            return []
        target = f"{quote_ident(database)}.{quote_ident(spec.name)}"
        # DROP TABLE: 18.16 has no DROP VIEW, and every version drops views with it
        return [f"DROP TABLE IF EXISTS {target}", create_view_sql(spec, database)]
    wanted = list(spec.column_names)
    if existing == wanted:
        return []
    if existing != wanted[: len(existing)]:
        raise SinkConfigError(
            f"table {database}.{spec.name} has columns {existing}, but this cxpulse writes "
            f"{wanted}: it was not created by cxpulse, or by a version whose columns differ; "
            f"rename it (RENAME TABLE {database}.{spec.name} TO {database}.{spec.name}_old) "
            "and start the worker again to create it afresh"
        )
    target = f"{quote_ident(database)}.{quote_ident(spec.name)}"
    return [
        f"ALTER TABLE {target} ADD COLUMN {quote_ident(name)} {column_type(col, caps)} "
        f"COMMENT {string_literal(col.doc)}"
        for name, col in spec.columns[len(existing) :]
    ]


def ensure_schema(
    specs: Iterable[TableSpec | ViewSpec],
    caps: Capabilities,
    database: str,
    run: Callable[[str], object],
    column_names: Callable[[str], list[str]],
    view_definition: Callable[[str], str | None] | None = None,
) -> None:
    """Create what is missing, then upgrade what an older version created (both backends
    do exactly this; ``run`` executes a statement, raising ``SinkWriteError`` with the
    server's code, ``column_names`` describes a table or view, ``view_definition`` gives
    a view's stored ``CREATE`` query)."""
    specs = list(specs)
    for sql in schema_statements(specs, caps, database):
        run(sql)
    for spec in specs:
        definition = None
        if isinstance(spec, ViewSpec) and view_definition is not None:
            definition = view_definition(spec.name) or None
        existing = column_names(spec.name)
        if isinstance(spec, ViewSpec):
            _replace_view(spec, existing, caps, database, definition, run)
            continue
        for sql in upgrade_statements(spec, existing, caps, database):
            log.warning("upgrading the schema: %s", sql.splitlines()[0][:200])
            try:
                run(sql)
            except SinkWriteError as exc:
                if exc.code != COLUMN_EXISTS:  # else another worker added it just now
                    raise


def _replace_view(
    spec: ViewSpec,
    existing: list[str],
    caps: Capabilities,
    database: str,
    definition: str | None,
    run: Callable[[str], object],
) -> None:
    """Replace a view that differs from its spec. A view holds no data: when another
    worker starting at the same moment replaces it too and one of the statements fails,
    the view is left as the other made it (created if missing) and checked again at the
    next start, rather than stopping this worker."""
    statements = upgrade_statements(spec, existing, caps, database, definition)
    if not statements:
        return
    why = "its columns differ" if existing != [n for n, _ in spec.columns] else "its query differs"
    log.warning(
        "upgrading the schema: replacing view %s.%s (%s; it has %s)",
        database,
        spec.name,
        why,
        " ".join((definition or "").split())[:300] or existing,
    )
    try:
        for sql in statements:
            run(sql)
    except SinkWriteError as exc:
        log.warning(
            "view %s.%s not replaced now (%s): checked again at the next start",
            database,
            spec.name,
            exc,
        )
        run(create_view_sql(spec, database))  # IF NOT EXISTS: never left missing


MODERN = Capabilities.from_version("24.8")
LEGACY = Capabilities.from_version("18.16.1")


def render_markdown(specs: Iterable[TableSpec | ViewSpec]) -> str:
    """The table reference for BI users (``docs/clickhouse-tables.md`` embeds this)."""
    lines: list[str] = []
    for spec in specs:
        if isinstance(spec, ViewSpec):
            lines += [f"### `{spec.name}` (view)", "", spec.doc, ""]
            if spec.columns:
                lines += ["| column | meaning |", "|---|---|"]
                lines += [f"| `{name}` | {doc} |" for name, doc in spec.columns]
                lines.append("")
            continue
        key = ", ".join(spec.order_by)
        lines += [
            f"### `{spec.name}`",
            "",
            spec.doc,
            "",
            f"Engine `ReplacingMergeTree({spec.version or ''})`, partitioned by "
            f"`{spec.partition_by}`, one row per `{key}` after deduplication."
            + (
                f" Rows expire {spec.ttl[1]} days after `{spec.ttl[0]}` (ClickHouse 19.6+)."
                if spec.ttl
                else ""
            ),
            "",
            "| column | type | on 18.16 | meaning |",
            "|---|---|---|---|",
        ]
        for name, col in spec.columns:
            old = column_type(col, LEGACY)
            lines.append(
                f"| `{name}` | `{col.type}` | {'same' if old == col.type else f'`{old}`'} "
                f"| {col.doc} |"
            )
        lines.append("")
    return "\n".join(lines)
