"""A tiny poll driver (test only): closed sales from a vendor's HTTP JSON API with a cursor.

The vendor (:class:`FakeVendor`, an aiohttp server on 127.0.0.1) answers
``GET /docs?after=<seq>&limit=<n>`` (``Authorization: Bearer <token>``) with
``{"docs": [{"seq", "id", "register", "number", "total", "at"}, ...], "next": "<seq>"}``:
documents in publishing order after ``after``, ``next`` the last seq given (or ``after``).
The driver is the whole poll shape in about forty lines: a :class:`gateway.poll.PollSource`
and ``run`` calling :func:`gateway.poll.poll`. Dedup key: ``example_poll:<document id>``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from gateway import fields
from gateway.driver import DriverContext
from gateway.errors import BadInput
from gateway.poll import Page, PollOptions, poll
from gateway.receipt import Event, Line, Receipt, sale_event

NAME = "example_poll"
Doc = dict[str, Any]


class Source:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str, limit: int) -> None:
        self._session, self._base, self._token, self._limit = session, base_url, token, limit

    async def fetch(self, cursor: str | None) -> Page[Doc]:
        params = {"after": cursor or "0", "limit": str(self._limit)}
        headers = {"Authorization": f"Bearer {self._token}"}
        async with self._session.get(f"{self._base}/docs", params=params, headers=headers) as resp:
            resp.raise_for_status()
            body = await resp.json()
        return Page(list(body["docs"]), str(body["next"]))

    def doc_id(self, doc: Doc) -> str:
        return str(doc.get("id", "?"))

    def to_event(self, doc: Doc) -> Event | None:
        doc_id = fields.text(doc.get("id"), "id", required=True)
        total = doc.get("total")
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise BadInput("must be a non-negative integer of kopecks", "total")
        at = fields.timestamp(doc.get("at"), "at")
        if at is None:
            raise BadInput("is required", "at")
        receipt = Receipt(fields.text(doc.get("register"), "register", required=True),
                          fields.text(doc.get("number"), "number", required=True),
                          (Line("1", "", "sale", total, 1000, total),), at, document_id=doc_id, driver=NAME)
        return sale_event(receipt, key=f"{NAME}:{doc_id}")


class ExamplePollDriver:
    name = NAME
    edge = None

    def __init__(self, base_url: str, *, token: str = "t0ken", page_size: int = 3,
                 options: PollOptions | None = None) -> None:
        self.base_url, self.token, self.page_size = base_url, token, page_size
        self.options = options or PollOptions()

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        return []

    async def run(self, ctx: DriverContext) -> None:
        async with aiohttp.ClientSession() as session:
            await poll(ctx, Source(session, self.base_url, self.token, self.page_size), self.options)


class FakeVendor:
    """The vendor's side: publish documents, stall answers, see what was asked."""

    def __init__(self, token: str = "t0ken") -> None:
        self.token = token
        self.published: list[Doc] = []  # each with its vendor-assigned "seq" (1-based)
        self.fetches = 0
        self._released = asyncio.Event()
        self._released.set()
        self.url = ""

    def publish(self, *docs: Doc) -> None:
        for doc in docs:
            self.published.append({**doc, "seq": len(self.published) + 1})

    def stall(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def unread(self, cursor: str | None) -> list[str]:
        """Ids of the documents the vendor would still give after ``cursor``."""
        after = int(cursor or 0)
        return [str(d.get("id")) for d in self.published if d["seq"] > after]

    async def docs(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        await self._released.wait()
        after, limit = int(request.query["after"]), int(request.query["limit"])
        page = [d for d in self.published if d["seq"] > after][:limit]
        return web.json_response({"docs": page, "next": str(page[-1]["seq"] if page else after)})

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeVendor]:
        app = web.Application()
        app.router.add_get("/docs", self.docs)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            yield self
        finally:
            self.release()
            await runner.cleanup()
