"""Overload limits of the HTTP server: how many connections are open and how many till requests
are in flight, so the worst minute of the busiest day degrades into fast "try again" answers
instead of growing queues, memory and latency.

- :class:`ConnectionCap` wraps the aiohttp request-handler factory that ``loop.create_server``
  calls: at most ``limit`` connections are open at once; one more is answered a plain
  ``503`` with ``Retry-After`` and closed at once (at the socket, before any byte of a request
  is read: the driver, and so the vendor's error shape, is not known yet). Idle keep-alive
  connections are closed by aiohttp after ``keepalive_timeout``; a body that trickles in is cut
  by the driver's read limit (:func:`gateway.http_edge.read_body`, 408).
- :class:`Admission` counts the driver requests in flight; past ``limit`` a request is refused
  before its handler runs, in its driver's shape (``503``, ``Retry-After: 1``), so a till
  retries a moment later while the requests already admitted finish within their budget.

Both count refusals in ``posgw_http_refused_total{reason=connections|busy}``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("posgw.limits")

REFUSED_CONNECTION = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
                      b"Content-Length: 34\r\nConnection: close\r\n\r\ntoo many connections: retry later\n")


class ConnectionCap:
    """A protocol factory around aiohttp's ``web.Server``: at most ``limit`` connections open at
    once. Counted when a connection is accepted (before its handler registers with the server,
    so a burst accepted in one loop turn cannot overshoot) and released when the server lets the
    handler go."""

    def __init__(self, server: web.Server, limit: int, on_refused: Callable[[], None]) -> None:
        if limit < 1:
            raise ValueError("the connection limit must be at least 1")
        self._server = server
        self.limit = limit
        self.open = 0
        self._on_refused = on_refused
        release = server.connection_lost

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            self.open -= 1
            release(handler, exc)

        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def __call__(self) -> asyncio.BaseProtocol:
        if self.open >= self.limit:
            self._on_refused()
            return _Refuse()
        self.open += 1
        return self._server()


class _Refuse(asyncio.Protocol):
    """Answers one connection past the cap with a plain 503 and closes it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(REFUSED_CONNECTION)
        transport.close()


class CappedSite(web.TCPSite):
    """A TCP site whose connections go through a :class:`ConnectionCap`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, limit: int,
                 on_refused: Callable[[], None], ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self._limit = limit
        self._on_refused = on_refused
        self.cap: ConnectionCap | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        assert isinstance(server, web.Server)
        self.cap = ConnectionCap(server, self._limit, self._on_refused)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.cap, self._host, self._port, reuse_address=True,
                                                ssl=self._ssl_context)


class Admission:
    """Driver requests in flight, with a bound: :meth:`try_enter` is False past ``limit``."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the in-flight limit must be at least 1")
        self.limit = limit
        self.in_flight = 0

    def try_enter(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1
