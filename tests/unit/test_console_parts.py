"""The console's pure pieces: who the token lets in, the broadcaster's fan-out and its
slow-subscriber cut-off, the stream's wire form, and the page's CSP matching its code."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re

from pydantic import SecretStr

from cxpulse.streams.console import (
    _END,
    CaseBroadcaster,
    case_change,
    console_html,
    page_headers,
    refusal,
    sign_in_html,
    sse_case,
)

TOKEN = SecretStr("a-token-of-sixteen-or-more")


def test_refusal_names_the_setting_and_takes_bearer_or_query() -> None:
    assert "CXPULSE_API_TOKEN" in (refusal(None, {"Authorization": "Bearer x"}, {}) or "")
    assert "CXPULSE_API_TOKEN" in (refusal(TOKEN, {}, {}) or "")
    assert refusal(TOKEN, {"Authorization": "Bearer a-token-of-sixteen-or-more"}, {}) is None
    assert refusal(TOKEN, {"authorization": "bearer a-token-of-sixteen-or-more"}, {}) is None
    assert refusal(TOKEN, {}, {"token": "a-token-of-sixteen-or-more"}) is None
    wrong = refusal(TOKEN, {}, {"token": "nope"})
    assert wrong is not None and "refused" in wrong and "nope" not in wrong
    assert refusal(TOKEN, {"Authorization": "Basic a-token-of-sixteen-or-more"}, {}) is not None


def test_broadcaster_fans_out_and_cuts_off_a_slow_subscriber() -> None:
    async def run() -> None:
        b = CaseBroadcaster(queue_size=2)
        with b.subscribe() as fast, b.subscribe() as slow:
            b.publish({"case_id": "a", "version": 1})
            assert fast.get_nowait() == {"case_id": "a", "version": 1}
            b.publish({"case_id": "a", "version": 2})
            b.publish({"case_id": "a", "version": 3})  # slow now holds 3: over its 2
            assert [slow.get_nowait() for _ in range(3)] == [
                {"case_id": "a", "version": 1},
                {"case_id": "a", "version": 2},
                _END,
            ]
            assert b.subscribers == 1  # fast is still in
            b.close()
            assert [fast.get_nowait() for _ in range(3)][-1] is _END
        assert b.subscribers == 0
        with b.subscribe() as late:  # after close: ends at once
            assert late.get_nowait() is _END

    asyncio.run(run())


def test_case_change_skips_what_is_not_a_case() -> None:
    assert case_change(b'{"case_id": "c", "version": 3}') == {"case_id": "c", "version": 3}
    change = b'{"change": "acknowledged", "by": "ana", "case": {"case_id": "c", "version": 4}}'
    assert case_change(change) == {"case_id": "c", "version": 4}
    for value in (
        None,
        b"",
        b"not json",
        b"[]",
        b'{"case_id": 1, "version": 1}',
        b'{"case_id": "c"}',
    ):
        assert case_change(value) is None


def test_sse_case_is_one_event_with_one_data_line() -> None:
    wire = sse_case({"case_id": "c", "explanation": "two\nlines"}).decode()
    lines = wire.split("\n")
    assert lines[0] == "event: case" and lines[1].startswith("data: ") and wire.endswith("\n\n")
    assert json.loads(lines[1][6:])["explanation"] == "two\nlines"
    assert len(lines) == 4


def test_the_csp_allows_exactly_the_pages_inline_code() -> None:
    for html in (console_html(), sign_in_html("why <b>")):
        csp = page_headers(html)["Content-Security-Policy"]
        for tag in ("script", "style"):
            blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
            assert blocks, tag
            for block in blocks:
                digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
                assert f"'sha256-{digest}'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert "why &lt;b&gt;" in sign_in_html("why <b>")
