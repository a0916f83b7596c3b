"""Item 6b: listing a function's invocations is bounded in bytes and paginated by a cursor.

A function printing 70 KB per call made ``?limit=1000`` build gigabytes in Main; a page now
stops at HOTPOOL_MAX_LISTING_BYTES and hands out a ``next_cursor`` that walks every record.
"""

from __future__ import annotations

import pytest

from tests.helpers import handler_zip
from tests.stack import wait_for

pytestmark = pytest.mark.integration

LISTING_BYTES = 256 * 1024
CALLS = 12
CHATTY = handler_zip('print("x" * 70_000)\nreturn event["n"]')


async def test_a_listing_of_big_records_is_bounded_and_walks_every_record_once(hotpool_stack):
    stack = await hotpool_stack(max_listing_bytes=LISTING_BYTES)
    assert (await stack.deploy("chatty", CHATTY)).status == 201
    request_ids = []
    for n in range(CALLS):
        resp = await stack.invoke("chatty", {"n": n})
        assert resp.status == 200
        request_ids.append(resp.headers["X-Hotpool-Request-Id"])

    async def all_recorded() -> bool:
        recorded = set()
        cursor = None
        while True:
            params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            resp = await stack.client.get("/v1/functions/chatty/invocations", params=params)
            assert resp.status == 200
            raw = await resp.read()
            assert len(raw) < LISTING_BYTES + 16 * 1024  # the page's bound, plus its envelope
            body = await resp.json()
            pages.append(body)
            recorded.update(r["request_id"] for r in body["invocations"])
            cursor = body["next_cursor"]
            if cursor is None:
                return recorded == set(request_ids)

    pages: list[dict] = []
    assert await wait_for(lambda: (pages.clear(), all_recorded())[1], timeout_s=10)

    listed = [r["request_id"] for page in pages for r in page["invocations"]]
    assert listed == list(reversed(request_ids))  # each once, newest first
    assert len(pages) > 1  # 12 x 70 KB did not fit one page
    assert all(len(page["invocations"]) >= 1 for page in pages)


async def test_a_bad_cursor_is_refused(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("chatty", CHATTY)).status == 201

    for cursor in ("not-a-cursor", "W10", "WyJ4IiwxXQ"):  # garbage, [], ["x",1]
        resp = await stack.client.get("/v1/functions/chatty/invocations", params={"cursor": cursor})
        assert resp.status == 400
        body = await resp.json()
        assert body["error"]["code"] == "InvalidRequest"
        assert "cursor" in body["error"]["message"]
