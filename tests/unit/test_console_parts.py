"""The console's pages: their Content-Security-Policy allows exactly their inline code."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid

from cxpulse.streams.console import (
    console_html,
    page_headers,
    sign_in_html,
)


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


def test_closing_the_case_feed_ends_every_stream() -> None:
    """A stopping worker ends its open Server-Sent Events streams (an open console must
    not hold the web server's stop up): each subscriber gets ``None`` after what it had."""
    import asyncio
    from datetime import UTC, datetime

    from cxpulse.schemas.cases import Case, CaseChange
    from cxpulse.streams.cases.feed import SUBSCRIBER_QUEUE, CaseFeed

    now = datetime.now(UTC)
    case = Case(
        case_id=uuid.uuid4(),
        kind="customer",
        customer_id="C-1",
        severity="warning",
        owner="care",
        rule="detractor",
        opened_at=now,
        updated_at=now,
        due_at=now,
    )

    async def run() -> None:
        feed = CaseFeed()
        async with feed.subscribe() as reader, feed.subscribe() as full:
            assert feed.apply(CaseChange(change="opened", at=now, case=case))
            for _ in range(SUBSCRIBER_QUEUE - 1):
                full.put_nowait(case)
            feed.close()
            assert reader.get_nowait() == case and reader.get_nowait() is None
            drained = [full.get_nowait() for _ in range(full.qsize())]
            assert drained[-1] is None  # a full queue loses its oldest, never the end
            later = case.model_copy(update={"version": 2})
            feed.apply(CaseChange(change="updated", at=now, case=later))
            assert reader.empty()  # nothing after the end
        async with feed.subscribe() as late:  # a stream opened while stopping ends at once
            assert late.get_nowait() is None

    asyncio.run(run())
