"""HTTP control of a running :class:`FaultProxy`, and a small client for it.

Endpoints (JSON):

- ``GET  /mode``  -> ``{"mode", "latency_ms", "jitter_ms", "flap_ms", "flap_down_ms",
  "flap_phase", "listen", "upstream", "stats": {...}}``
- ``POST /mode``  body ``{"mode": "latency", "latency_ms": 200}`` (parameters optional, kept
  from the current settings when absent; ``{"mode": "cut"}`` cuts) -> the same as ``GET /mode``;
  400 ``{"error": {"code": "BAD_REQUEST", "message", "field"}}`` when invalid, nothing changed
- ``POST /cut``   -> ``{"cut": <connections reset>}``
- ``GET  /stats`` -> the counters

It lets tests, the demo and an operator steer a proxy living in another process. It binds
wherever it is told (127.0.0.1 in every shipped use) and has no auth: it is a test tool.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web

from simulators.faults.modes import CUT, FaultSettings
from simulators.faults.proxy import FaultProxy

PROXY_KEY = web.AppKey("proxy", FaultProxy)


def state_json(proxy: FaultProxy) -> dict[str, Any]:
    """What ``GET /mode`` answers."""
    return {
        **proxy.settings.to_json(),
        "flap_phase": proxy.flap_phase,
        "listen": proxy.address,
        "upstream": f"{proxy.upstream_host}:{proxy.upstream_port}",
        "stats": proxy.stats().to_json(),
    }


def _bad_request(message: str) -> web.Response:
    field, _, text = message.partition(": ")
    body = {"error": {"code": "BAD_REQUEST", "message": text or message, "field": field if text else ""}}
    return web.json_response(body, status=400)


async def _get_mode(request: web.Request) -> web.Response:
    return web.json_response(state_json(request.app[PROXY_KEY]))


async def _post_mode(request: web.Request) -> web.Response:
    proxy = request.app[PROXY_KEY]
    try:
        data = json.loads(await request.read() or b"{}")
    except ValueError:
        return _bad_request("body: not valid JSON")
    if isinstance(data, dict) and data.get("mode") == CUT:
        await proxy.cut()
        return web.json_response(state_json(proxy))
    try:
        settings = FaultSettings.from_json(data, base=proxy.settings)
    except ValueError as exc:
        return _bad_request(str(exc))
    await proxy.apply(settings)
    return web.json_response(state_json(proxy))


async def _post_cut(request: web.Request) -> web.Response:
    return web.json_response({"cut": await request.app[PROXY_KEY].cut()})


async def _get_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[PROXY_KEY].stats().to_json())


def control_app(proxy: FaultProxy) -> web.Application:
    """The aiohttp application controlling ``proxy``."""
    app = web.Application(client_max_size=64 * 1024)
    app[PROXY_KEY] = proxy
    app.router.add_get("/mode", _get_mode)
    app.router.add_post("/mode", _post_mode)
    app.router.add_post("/cut", _post_cut)
    app.router.add_get("/stats", _get_stats)
    return app


class ControlServer:
    """Serves :func:`control_app` on ``host:port`` (0 = any free port)."""

    def __init__(self, proxy: FaultProxy, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = control_app(proxy)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class FaultControlClient:
    """Steers a proxy through its control endpoint (for tests and the demo)."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self._url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            async with session.request(method, self._url + path, json=body) as resp:
                data = await resp.json()
                if resp.status != 200:
                    raise ValueError(data.get("error", {}).get("message", f"HTTP {resp.status}"))
                return data

    async def get(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/mode")
        return result

    async def set_mode(self, mode: str, **params: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", "/mode", {"mode": mode, **params})
        return result

    async def cut(self) -> int:
        return int((await self._call("POST", "/cut"))["cut"])
