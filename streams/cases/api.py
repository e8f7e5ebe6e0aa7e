"""The cases HTTP API on the worker's web server (docs/cases.md): the answers as
functions of the request's parts, ``(JSON body, HTTP status)``, so the routes in
``cxpulse.streams.web`` stay thin and these are tested without a server.

Every route needs ``Authorization: Bearer <CXPULSE_API_TOKEN>``; the Server-Sent Events
route and ``/console`` also take ``?token=`` (EventSource cannot send headers). Tokens are
compared in constant time. Without a configured token every request is refused with 401
and a message naming ``CXPULSE_API_TOKEN``.
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from cxpulse.schemas.cases import CaseCommand
from cxpulse.schemas.model import CasesSection
from cxpulse.schemas.vocabulary import CASE_OUTCOMES, CASE_STATUSES
from cxpulse.streams.cases.feed import CaseFeed
from cxpulse.streams.cases.lifecycle import CommandRefused, apply_command

Answer = tuple[dict[str, Any], int]
#: The largest ack/resolve request body.
MAX_BODY = 16 * 1024
#: The most cases one list answer holds.
MAX_LIMIT = 1000

NO_TOKEN = (
    "no API token is configured: set CXPULSE_API_TOKEN on the worker (16+ characters, e.g. "
    "python -c 'import secrets; print(secrets.token_urlsafe(32))') and send it as "
    "Authorization: Bearer <token>"
)

#: The answer of every cases route on a worker whose model switches cases off.
SWITCHED_OFF = (
    "cases are switched off in this worker's experience model (cases.enabled: false): "
    "its alerts go to cx.alerts and the alerts table, and no case is opened; set "
    "cases.enabled: true in CXPULSE_MODEL_PATH's model and restart the worker to open them"
)


def authorize(
    token: SecretStr | None,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    *,
    allow_query: bool = False,
) -> Answer | None:
    """None when the request carries the token; else the 401 answer."""
    if token is None:
        return {"error": NO_TOKEN}, 401
    expected = token.get_secret_value().encode()
    given = ""
    auth = headers.get("Authorization") or headers.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    elif allow_query:
        given = query.get("token", "")
    if given and hmac.compare_digest(given.encode(), expected):
        return None
    how = "Authorization: Bearer <CXPULSE_API_TOKEN>" + (" or ?token=" if allow_query else "")
    return {"error": f"missing or wrong API token: send {how}"}, 401


def switched_off(
    token: SecretStr | None, headers: Mapping[str, str], query: Mapping[str, str]
) -> Answer:
    """Every cases route's answer when the model switches cases off: 404, saying so (after
    the token, as every route)."""
    return authorize(token, headers, query, allow_query=True) or ({"error": SWITCHED_OFF}, 404)


def loading(feed: CaseFeed) -> Answer | None:
    """None once the feed has read cx.cases to where it ended at the worker's start; before
    that a list would miss cases (it fills partition by partition), so: 503, ``loading``."""
    if feed.loaded.is_set():
        return None
    read, partitions = feed.progress
    return {
        "error": f"this worker is still reading the cases from cx.cases since its start "
        f"({read} of {partitions or '?'} partitions read): ask again in a few seconds",
        "loading": True,
    }, 503


def list_answer(feed: CaseFeed, query: Mapping[str, str]) -> Answer:
    if (wait := loading(feed)) is not None:
        return wait
    status = query.get("status") or None
    if status is not None and status not in CASE_STATUSES:
        return {
            "error": f"unknown status {status[:40]!r}: use one of {', '.join(CASE_STATUSES)}"
        }, 400
    owner = query.get("owner") or None
    raw_limit = query.get("limit") or "100"
    try:
        limit = int(raw_limit)
    except ValueError:
        limit = -1
    if not 1 <= limit <= MAX_LIMIT:
        return {"error": f"limit must be a whole number from 1 to {MAX_LIMIT}"}, 400
    return {"cases": [c.to_json() for c in feed.list(status, owner, limit)]}, 200


def _known(feed: CaseFeed, case_id: str) -> tuple[str, Answer | None]:
    if (wait := loading(feed)) is not None:
        return "", wait
    try:
        key = str(uuid.UUID(case_id))
    except ValueError:
        return "", ({"error": f"not a case id: {case_id[:60]!r} (a UUID)"}, 400)
    if feed.get(key) is None:
        return key, ({"error": f"no case {key}: list them with GET /api/cases"}, 404)
    return key, None


def show_answer(feed: CaseFeed, case_id: str) -> Answer:
    key, refused = _known(feed, case_id)
    if refused is not None:
        return refused
    case = feed.get(key)
    assert case is not None
    history = [change.history_entry() for change in feed.history.get(key, ())]
    return {"case": case.to_json(), "history": history}, 200


def parse_command(
    feed: CaseFeed, section: CasesSection, case_id: str, command: str, body: bytes
) -> CaseCommand | Answer:
    """The command a POST asks for, checked against the case as this worker sees it (the
    owning worker checks again when it applies it); or the refusal."""
    key, refused = _known(feed, case_id)
    if refused is not None:
        return refused
    case = feed.get(key)
    assert case is not None
    if len(body) > MAX_BODY:
        return {"error": f"request body over {MAX_BODY} bytes"}, 413
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return {"error": 'the body must be a JSON object, e.g. {"by": "your name"}'}, 400
    by = doc.get("by")
    if not isinstance(by, str) or not by.strip() or len(by) > 120:
        return {"error": 'say who acts: "by" must be a name (1 to 120 characters)'}, 400
    outcome = doc.get("outcome")
    note = doc.get("note")
    if command == "resolve":
        if outcome not in CASE_OUTCOMES:
            return {
                "error": f"unknown outcome {str(outcome)[:40]!r}: use one of "
                f"{', '.join(CASE_OUTCOMES)}"
            }, 400
        if note is not None and (not isinstance(note, str) or len(note) > 2000):
            return {"error": '"note" must be text of at most 2000 characters'}, 400
    cmd = CaseCommand(
        command=command,
        case_id=case.case_id,
        kind=case.kind,
        subject=case.subject,
        by=by.strip(),
        at=datetime.now(UTC),
        outcome=outcome if command == "resolve" else None,
        note=note if command == "resolve" else None,
    )
    try:
        apply_command(case, cmd, section)
    except CommandRefused as exc:
        return {"error": str(exc)}, exc.status
    return cmd


async def command_answer(
    feed: CaseFeed,
    section: CasesSection,
    send: Callable[[CaseCommand], Awaitable[None]],
    case_id: str,
    command: str,
    body: bytes,
    timeout: float,
) -> Answer:
    """Check, send the command to the case's partition, wait (bounded) for the change."""
    cmd = parse_command(feed, section, case_id, command, body)
    if isinstance(cmd, tuple):
        return cmd
    held = feed.get(str(cmd.case_id))
    assert held is not None
    await send(cmd)
    status = "acknowledged" if command == "ack" else "resolved"
    case = await feed.wait_for(str(cmd.case_id), held.version, timeout, status)
    if case is None:
        return {
            "error": f"the {command} was sent but case {cmd.case_id} did not change within "
            f"{timeout:.0f}s (is the worker owning it running?): look again with GET "
            f"/api/cases/{cmd.case_id}"
        }, 504
    return {"case": case.to_json()}, 200
