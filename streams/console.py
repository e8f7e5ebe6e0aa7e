"""The live operations console: ``GET /console``, one HTML page shipped in the package
(``streams/data/console.html``) that lists the open cases and follows
``/api/cases/events`` (docs/cases.md, "The console").

- Auth: the cases API's token (``CXPULSE_API_TOKEN``, ``cxpulse.streams.cases.api``'s
  ``authorize``) as ``Authorization: Bearer`` or, because an address typed into a browser
  cannot send headers, as ``?token=``. The worker's web server keeps no access log (Faust's
  aiohttp runner has ``access_log=None``), so a ``?token=`` is never written to a log; the
  page moves it into ``sessionStorage`` and out of the address bar at once.
- ``/console`` without a valid token answers 401 with a small sign-in form (the token in a
  password field).
- Both pages go out with a Content-Security-Policy allowing exactly their inline script
  and style (by hash), requests to this worker only, and no framing (the buttons act).
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources
from typing import Any

# --- the page -----------------------------------------------------------------------

SIGN_IN = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>cxpulse console: sign in</title>
<style>
  body { font: 16px/1.45 system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; }
  body { padding: 0 1rem; }
  input, button { font: inherit; padding: .3rem .5rem; }
  .error { color: #b00020; font-weight: 600; }
</style>
</head>
<body>
<h1>cxpulse console</h1>
<p class="error" id="why">__REASON__</p>
<form method="get" action="/console">
  <label for="token">API token (CXPULSE_API_TOKEN)</label><br>
  <input id="token" name="token" type="password" required autocomplete="off" autofocus>
  <button type="submit">Open the console</button>
</form>
<script>
"use strict";
// A token kept from this tab's console (a reload) opens it again; a refused one is dropped.
(function () {
  var KEY = "cxpulse.console.token";
  if (new URLSearchParams(location.search).has("token")) { sessionStorage.removeItem(KEY); return; }
  var kept = sessionStorage.getItem(KEY);
  if (kept) location.replace("/console?token=" + encodeURIComponent(kept));
})();
</script>
</body>
</html>
"""


def _csp(html: str) -> str:
    """A Content-Security-Policy allowing exactly the page's inline script and style (by
    their hashes), requests to this worker only, and no framing (the buttons act)."""

    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
            for s in found
        )

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


@cache
def console_html() -> str:
    """The console page, read once from the package (``streams/data/console.html``)."""
    return (resources.files("cxpulse.streams") / "data" / "console.html").read_text("utf-8")


def page_headers(html: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": _csp(html),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def sign_in_html(reason: str) -> str:
    from html import escape

    return SIGN_IN.replace("__REASON__", escape(reason))


# --- the worker's pages ----------------------------------------------------------------


def register(rt: Any) -> None:
    """``/console`` on the worker's web server (a ``cxpulse.streams.runtime.Runtime``)."""
    from cxpulse.streams.cases import api

    app, token = rt.app, rt.settings.api_token

    @app.page("/console")
    async def console_page(web: Any, request: Any) -> Any:
        """The live operations console (HTML); a sign-in form (401) without the token."""
        refused = api.authorize(token, request.headers, request.query, allow_query=True)
        if refused is not None:
            html = sign_in_html(str(refused[0]["error"]))
            return web.html(html, status=401, headers=page_headers(html))
        html = console_html()
        return web.html(html, headers=page_headers(html))
