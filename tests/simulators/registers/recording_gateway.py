"""A tiny recording HTTP server (aiohttp on 127.0.0.1:0) standing in for the gateway in simulator tests.

Each route is a handler ``(Seen) -> (status, json-able body)`` written by the test (the vendor's
answers); every request is recorded as a :class:`Seen`, in arrival order, with its raw bytes,
parsed JSON, headers, and the monotonic times it arrived and was answered. Nothing here knows a
vendor's protocol: the tests state what the wire must look like.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any
    at: float
    answered_at: float | None = None
    status: int | None = None
    match: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Seen], Awaitable[tuple[int, Any]]]


class RecordingGateway:
    def __init__(self, routes: dict[tuple[str, str], Handler]) -> None:
        self.routes = routes
        self.seen: list[Seen] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def _wrap(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            seen = Seen(request.method, request.path, dict(request.headers), raw, body, time.monotonic(),
                        match=dict(request.match_info))
            self.seen.append(seen)
            status, answer = await handler(seen)
            seen.answered_at, seen.status = time.monotonic(), status
            text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
            return web.Response(status=status, text=text, content_type="application/json")

        return handle

    async def start(self) -> None:
        app = web.Application()
        for (method, path), handler in self.routes.items():
            app.router.add_route(method, path, self._wrap(handler))
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def on(self, path: str, *, method: str = "POST") -> list[Seen]:
        return [s for s in self.seen if s.path == path and s.method == method]


@asynccontextmanager
async def recording(routes: dict[tuple[str, str], Handler]) -> AsyncIterator[RecordingGateway]:
    gw = RecordingGateway(routes)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()
