"""Which SQL a worker's /query endpoint will run for someone else.

The endpoint exists because an embedded chDB directory can be opened by one process only;
it must never become a way to change data, so only single read statements pass.
"""

from __future__ import annotations

import re

_READ = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN)\b", re.IGNORECASE)


class NotReadOnly(ValueError):
    """The statement is not a single read query."""


def check_read_only(sql: str) -> str:
    """Return the statement without a trailing semicolon, or raise ``NotReadOnly``."""
    statement = sql.strip().rstrip(";").strip()
    if not statement:
        raise NotReadOnly("empty query: give a SELECT statement")
    if ";" in statement:
        raise NotReadOnly("one statement at a time: remove the ';' between statements")
    if not _READ.match(statement):
        raise NotReadOnly(
            "only read queries (SELECT, WITH, SHOW, DESCRIBE, EXISTS, EXPLAIN) are allowed here"
        )
    return statement
