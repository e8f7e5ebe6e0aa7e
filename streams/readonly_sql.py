"""How ``cxpulse query`` and the worker's ``/query`` run SQL for someone: read-only, and
ClickHouse is what enforces it.

Every query runs in a read-only session of its own (``cxpulse.sinks.clickhouse.open_read_only``,
or ``read_only()`` of the worker's backend), opened with ``readonly=1`` and limits in
force for the whole session (``cxpulse.sinks.targets.read_only_settings``). ClickHouse itself
then refuses every INSERT, ALTER, DROP, CREATE, SET, any ``SETTINGS`` change (readonly
included), and the table functions that reach outside: file, url, remote, s3, ...

What readonly=1 leaves open is closed here, by ClickHouse's own parser (the session's
chDB; for a server, the chDB engine that comes with cxpulse):

1. ``formatQuerySingleLine`` parses the text as exactly one statement and renders it
   again: that rendering is what is checked and what runs.
2. ``parseQueryToJSON`` gives its syntax tree. It must be a SELECT (WITH, UNION, ...)
   without INTO OUTFILE (chDB writes that file from this process, readonly or not) or
   FORMAT. Every table it names is in the session's database, or is one of
   ``ALLOWED_SYSTEM_TABLES``; table functions are only ``ALLOWED_TABLE_FUNCTIONS``
   (which read nothing but their arguments); no function reads a file, a dictionary or
   a Join table, or calls a remote service (``file``, ``dictGet``…, ``joinGet``…,
   ``ai``…), all of which readonly=1 allows.
3. It runs as ``SELECT * FROM (<rendering>)``: the executing ClickHouse's own parser
   accepts nothing but a SELECT there.

The first word of the rendering only picks a friendlier message; it decides nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from cxpulse.sinks.ddl import string_literal
from cxpulse.sinks.errors import SinkError, SinkWriteError

#: Tables of the ``system`` database a query may read: schema browsing and constants.
#: On a shared server, system.tables and system.columns list what the ClickHouse user
#: can see of other databases too: give cxpulse a user limited with allow_databases.
ALLOWED_SYSTEM_TABLES = frozenset(
    {"tables", "columns", "one", "numbers", "numbers_mt", "zeros", "zeros_mt"}
)
#: Table functions that read nothing but their own arguments (lower case).
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generate_series",
        "generateseries",
        "values",
        "generaterandom",
        "view",
    }
)
#: Functions that readonly=1 allows but that read outside the query's tables or call
#: out: files, dictionaries, Join tables, table metadata by name, server settings,
#: Keeper, AI services (lower case; prefixes below).
_REFUSED_FUNCTIONS = frozenset(
    {"file", "hascolumnintable", "getserversetting", "getmergetreesetting", "generateserialid"}
)
_REFUSED_PREFIXES = ("dict", "joinget", "ai", "naivebayesclassifier")
#: ``x IN name`` reads the table ``name``.
_IN_FUNCTIONS = frozenset(
    {
        "in",
        "notin",
        "globalin",
        "globalnotin",
        "nullin",
        "notnullin",
        "globalnullin",
        "globalnotnullin",
    }
)
_HINTS = {
    "SHOW": "list tables with SELECT name FROM system.tables WHERE database = currentDatabase()",
    "DESCRIBE": "see a table's columns with SELECT name, type FROM system.columns WHERE "
    "database = currentDatabase() AND table = 'alerts'",
    "EXISTS": "ask SELECT count() FROM system.tables WHERE database = currentDatabase() AND "
    "name = 'alerts'",
}
_HINTS["DESC"] = _HINTS["DESCRIBE"]


class QueryError(ValueError):
    """A query was refused or failed; ``str()`` is one line: what is wrong, what to do."""


class NotReadOnly(QueryError):
    """Refused before it ran: not a single read query of the allowed tables."""


class QueryUnavailable(QueryError):
    """ClickHouse could not be used at all: unreachable, wrong credentials, no database."""


class ReadOnlySession(Protocol):
    """A read-only query session (``cxpulse.sinks.embedded.ChdbReader``,
    ``cxpulse.sinks.native.NativeReader``)."""

    database: str

    def parser(self) -> AbstractContextManager[Callable[[str], str]]: ...

    def query(self, sql: str) -> tuple[list[str], list[Any]]: ...


def run_read_only(session: ReadOnlySession, sql: str) -> tuple[list[str], list[Sequence[Any]]]:
    """Check ``sql`` (``read_only_statement``) and run it in ``session``; column names and
    rows. Raises ``QueryError``: ``NotReadOnly`` when refused before running,
    ``QueryUnavailable`` when ClickHouse could not be used at all."""
    try:
        with session.parser() as parse:
            statement = read_only_statement(sql, session.database, parse)
        columns, rows = session.query(statement)
    except SinkWriteError as exc:
        raise QueryError(refusal(exc)) from None
    except SinkError as exc:
        raise QueryUnavailable(refusal(exc)) from None
    return list(columns), list(rows)


def read_only_statement(sql: str, database: str, parse: Callable[[str], str]) -> str:
    """The statement to run for ``sql``: ClickHouse's rendering of it, as a subquery.

    ``parse`` runs SQL on a chDB session and returns its TabSeparatedRaw result.
    Raises ``NotReadOnly`` saying what is wrong and what to do.
    """
    text = sql.strip()
    if not text.rstrip(";").strip():
        raise NotReadOnly("empty query: give one SELECT statement")
    rendering = _ask(parse, f"SELECT formatQuerySingleLine({string_literal(text)})").rstrip("\n")
    word = (rendering.split(None, 1) or ["?"])[0].upper()
    not_select = NotReadOnly(
        f"only a SELECT query can run here, not {word}: {_HINTS.get(word, 'write it as a SELECT')}"
    )
    try:
        tree = json.loads(_ask(parse, f"SELECT parseQueryToJSON({string_literal(rendering)})"))
    except NotReadOnly:
        if word not in ("SELECT", "WITH", "("):
            raise not_select from None
        raise
    except ValueError:
        raise NotReadOnly("ClickHouse's parser gave no syntax tree for it: try again") from None
    if not isinstance(tree, dict) or tree.get("type") != "SelectWithUnionQuery":
        raise not_select
    _check(tree, database)
    return f"SELECT * FROM ({rendering})"


def refusal(exc: SinkError) -> str:
    """One line for a query ClickHouse refused or stopped, with what to do about it."""
    message = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
    code = getattr(exc, "code", None)
    if code == 164:
        return f"{message}: this session is read-only; only SELECT queries run here"
    if code == 396:
        return f"{message}: add a LIMIT or aggregate (results here are limited)"
    if code == 159:
        return f"{message}: narrow it (a WHERE on the table's key columns, a LIMIT)"
    if code == 241:
        return f"{message}: the query needs more memory than a query here may use; narrow it"
    if code == 497:
        return f"{message}: the ClickHouse user may not read that"
    return message


# -- the checks --------------------------------------------------------------------------


def _ask(parse: Callable[[str], str], sql: str) -> str:
    """Ask ClickHouse's parser; its refusal becomes ``NotReadOnly`` with its own words."""
    try:
        return parse(sql)
    except SinkError as exc:
        said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        said = said.split("DB::Exception: ", 1)[-1].split(": In scope ", 1)[0].strip()
        if "Multi-statements are not allowed" in said:
            raise NotReadOnly(
                "one statement at a time: remove the ';' and what follows it "
                f"(ClickHouse: {said[:300]})"
            ) from None
        if "UNKNOWN_FUNCTION" in said or "Unknown function" in said:
            raise NotReadOnly(
                f"this chDB cannot check queries ({said[:200]}): install chdb 4.4.0 or later"
            ) from None
        raise NotReadOnly(f"ClickHouse cannot take this as one query: {said[:400]}") from None


def _check(node: Any, database: str) -> None:
    if isinstance(node, list):
        for item in node:
            _check(item, database)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if "out_file" in node:
        raise NotReadOnly(
            "INTO OUTFILE is not allowed here: the result comes back to you; save it with "
            "cxpulse query --format csv '...' > file"
        )
    if "settings_ast" in node or kind == "SetQuery":
        raise NotReadOnly(
            "SETTINGS cannot be changed here: queries run read-only, with fixed limits"
        )
    if "format_ast" in node:
        raise NotReadOnly(
            "FORMAT is not allowed here: use cxpulse query --format table|tsv|csv|json"
        )
    if kind == "TableIdentifier":
        _check_table(_name_parts(node), database)
    elif kind == "TableExpression" and isinstance(node.get("table_function"), dict):
        name = str(node["table_function"].get("name", ""))
        if name.lower() not in ALLOWED_TABLE_FUNCTIONS:
            raise NotReadOnly(
                f"table function {name}() is not allowed here: read cxpulse's tables "
                f"(only {', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))} may be used)"
            )
    elif kind == "Function":
        name = str(node.get("name", ""))
        _check_function(name)
        if name.lower() in _IN_FUNCTIONS:
            args = (node.get("arguments") or {}).get("children") or []
            if len(args) >= 2 and isinstance(args[1], dict) and args[1].get("type") == "Identifier":
                _check_table(_name_parts(args[1]), database)
    elif kind == "ColumnsApplyTransformer" and "func_name" in node:
        _check_function(str(node["func_name"]))
    for value in node.values():
        if isinstance(value, dict | list):
            _check(value, database)


def _name_parts(node: dict[str, Any]) -> list[str]:
    parts = node.get("name_parts")
    if isinstance(parts, list) and parts:
        return [str(p) for p in parts]
    return [str(node.get("name", ""))]


def _check_table(parts: list[str], database: str) -> None:
    if len(parts) == 1:
        return  # the session's database (or a WITH name)
    if len(parts) == 2:
        db, table = parts
        if db == database or (db == "system" and table in ALLOWED_SYSTEM_TABLES):
            return
    raise NotReadOnly(
        f"{'.'.join(parts)} is not readable here: only the tables of database {database} "
        "(and system.tables, system.columns) can be queried"
    )


def _check_function(name: str) -> None:
    low = name.lower()
    if low in _REFUSED_FUNCTIONS or low.startswith(_REFUSED_PREFIXES):
        raise NotReadOnly(
            f"{name}() is not allowed here: it reads outside cxpulse's tables (files, "
            "dictionaries, Join tables, server settings) or calls out"
        )
