"""``cxpulse cases``: list, show, acknowledge and resolve cases (docs/cases.md).

A client of a worker's ``/api/cases`` (any worker: a write becomes a command applied by
the worker owning the case), with the token of ``CXPULSE_API_TOKEN``. Runs on the base
install: the standard library's HTTP client only.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click

from cxpulse.schemas.vocabulary import CASE_OUTCOMES, CASE_STATUSES
from cxpulse.streams.cli.common import settings_from

#: Seconds to wait for the worker's answer (an ack or resolve waits up to
#: CXPULSE_CASES_ANSWER_SECONDS there, 10 s by default).
TIMEOUT = 30.0
#: How long to wait, a second at a time, for a worker that has just started and is still
#: reading the cases (its answer: 503 with ``loading``).
LOADING_WAIT = 20


class CasesError(click.ClickException):
    """One line on stderr, exit 2: what is wrong and how to fix it."""

    exit_code = 2


class _Loading(Exception):
    """The worker answered 503 ``loading``: it is still reading the cases."""


class _Api:
    def __init__(self, url: str | None) -> None:
        settings = settings_from()
        self.base = (url or f"http://127.0.0.1:{settings.web_port}").rstrip("/")
        if settings.api_token is None:
            raise CasesError(
                "no API token: set CXPULSE_API_TOKEN to the worker's token "
                "(the worker's own CXPULSE_API_TOKEN)"
            )
        self.token = settings.api_token.get_secret_value()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        for _ in range(LOADING_WAIT):
            try:
                return self._call(method, path, body)
            except _Loading:
                time.sleep(1.0)
        return self._call(method, path, body, wait=False)

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None, *, wait: bool = True
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            try:
                doc = json.loads(exc.read())
                error = doc.get("error") or exc.reason
            except (ValueError, AttributeError):
                doc, error = {}, exc.reason
            if wait and exc.code == 503 and isinstance(doc, dict) and doc.get("loading"):
                raise _Loading from None
            raise CasesError(f"{error} (HTTP {exc.code})") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CasesError(
                f"no worker answers at {self.base} ({reason}): start one with cxpulse worker, "
                "or give its address with --url http://HOST:PORT"
            ) from None


def _line(case: dict[str, Any]) -> str:
    who = case.get("customer_id") or case.get("instance") or ""
    tier = f" tier {case['tier']}" if case.get("tier") else ""
    flag = " ESCALATED" if case.get("escalated") else ""
    return (
        f"{case['case_id']}  {case['severity'].upper():<8} {case['status']:<12} "
        f"{case['owner']:<18} due {case['due_at']}  {case['kind']} {who}{tier}  "
        f"{case['rule']}{flag}: {case['explanation']}"
    )


url_option = click.option(
    "--url",
    default=None,
    help="a worker's web address (default http://127.0.0.1:$CXPULSE_WEB_PORT)",
)
by_option = click.option("--by", required=True, help="who acts (your name), recorded in the case")


@click.group()
def cases() -> None:
    """Cases: who owns an unhappy customer or a failing touchpoint, by when, and how it
    ended. Every alert opens a case or updates the open one of its customer (or
    instance); a case not acknowledged by its due time escalates once.

    \b
    cxpulse cases list --status open
    cxpulse cases show CASE_ID
    cxpulse cases ack CASE_ID --by alice
    cxpulse cases resolve CASE_ID --outcome recovered --note "called back" --by alice

    Talks to a running worker's /api/cases with the token in CXPULSE_API_TOKEN.
    """


@cases.command("list")
@click.option("--status", type=click.Choice(CASE_STATUSES), help="only cases with this status")
@click.option("--owner", help="only cases of this team")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="the API's JSON, one case per line")
@url_option
def list_cases(
    status: str | None, owner: str | None, limit: int, as_json: bool, url: str | None
) -> None:
    """Cases, critical first, then by due time."""
    query = {"limit": str(limit)}
    if status:
        query["status"] = status
    if owner:
        query["owner"] = owner
    answer = _Api(url).call("GET", "/api/cases?" + urllib.parse.urlencode(query))
    for case in answer["cases"]:
        click.echo(json.dumps(case) if as_json else _line(case))


@cases.command("show")
@click.argument("case_id")
@click.option("--json", "as_json", is_flag=True, help="the API's JSON")
@url_option
def show(case_id: str, as_json: bool, url: str | None) -> None:
    """One case and its history."""
    answer = _Api(url).call("GET", f"/api/cases/{urllib.parse.quote(case_id)}")
    if as_json:
        click.echo(json.dumps(answer))
        return
    case = answer["case"]
    click.echo(_line(case))
    for key in ("score", "recommended_action", "opened_at", "acknowledged_by", "resolved_by"):
        if case.get(key) is not None:
            click.echo(f"  {key}: {case[key]}")
    if case.get("outcome"):
        click.echo(f"  outcome: {case['outcome']}" + (f" ({case['note']})" if case["note"] else ""))
    click.echo(f"  alerts: {len(case['alert_ids'])}, events: {len(case['event_ids'])}")
    for change in answer["history"]:
        click.echo(
            f"  v{change['version']} {change['at']} {change['change']:<12} by {change['by']}"
            f" → {change['status']}, {change['severity']}"
        )


@cases.command("ack")
@click.argument("case_id")
@by_option
@url_option
def ack(case_id: str, by: str, url: str | None) -> None:
    """Acknowledge an open case: someone owns it now (stops its escalation)."""
    answer = _Api(url).call("POST", f"/api/cases/{urllib.parse.quote(case_id)}/ack", {"by": by})
    click.echo(_line(answer["case"]))


@cases.command("resolve")
@click.argument("case_id")
@click.option(
    "--outcome",
    required=True,
    type=click.Choice(CASE_OUTCOMES),
    help="recovered and compensated enter the customer's journey as a recovery moment",
)
@click.option("--note", default=None, help="what was done")
@by_option
@url_option
def resolve(case_id: str, outcome: str, note: str | None, by: str, url: str | None) -> None:
    """Resolve a case with its outcome."""
    body = {"by": by, "outcome": outcome, "note": note}
    answer = _Api(url).call("POST", f"/api/cases/{urllib.parse.quote(case_id)}/resolve", body)
    click.echo(_line(answer["case"]))
