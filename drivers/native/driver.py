"""The native driver's I/O: aiohttp routes under ``/v1/native/`` (thin; parsing is in wire.py).

Invariants:
- every route but ``openapi.json`` goes through the shared edge (:func:`gateway.http_edge.guard`):
  ``Authorization: Bearer <key>`` matching a configured key (constant time; no configured key
  refuses everything), ``Content-Type: application/json``, the configured body and read-time
  limits, refusals in the native error format (:data:`REFUSALS`);
- a sale / refund / cancel is answered 200 only after ``ctx.submit`` returned (durable);
  a failed durable write is answered 503 ``STORAGE_UNAVAILABLE`` so the till retries;
- bad input is answered 4xx in the native error format and nothing is stored.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from importlib import resources
from typing import Any

from aiohttp import web

from drivers.native import NAME, mapping, wire
from drivers.native.config import Config
from gateway import http_edge
from gateway.driver import DriverContext, Refusals

Op = Callable[[wire.Obj, DriverContext], Awaitable[wire.Obj | None]]

try:  # orjson, when installed, writes the answer straight to bytes (the stdlib: the same JSON text)
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

except ImportError:  # pragma: no cover - depends on the environment

    def _dumps(value: Any) -> bytes:
        return json.dumps(value).encode()


def _error(code: str, message: str, field: str = "") -> bytes:
    return _dumps(mapping.error_to_json(code, message, field))


REFUSALS = Refusals(
    unauthorized=lambda why: _error("UNAUTHORIZED", "send Authorization: Bearer <api key>"),
    timeout=_error("REQUEST_TIMEOUT", "the body was not received in time", "body"),
    too_large=lambda limit: _error("PAYLOAD_TOO_LARGE", f"the body is larger than {limit} bytes"),
    bad_input=lambda exc: _error("BAD_REQUEST", str(exc.args[0]), exc.field),
    not_stored=_error("STORAGE_UNAVAILABLE", "not stored: retry the same request later"),
    other=lambda status, code, message: _error(code, message),
    challenge='Bearer realm="posgw"',
)
JSON = "application/json"
UNAVAILABLE = _error("UNAVAILABLE", "the gateway could not calculate: retry, or sell without loyalty")


def create(options: Mapping[str, Any]) -> NativeDriver:
    return NativeDriver(Config.model_validate(dict(options)))


class NativeDriver(http_edge.HttpDriver[Config]):
    name = NAME
    refusals = REFUSALS

    def __init__(self, config: Config, *, now: Callable[[], datetime] | None = None) -> None:
        super().__init__(config, now=now)
        self._auth = http_edge.HeaderToken(config.api_keys, bearer_required=True)
        self._openapi = resources.files("drivers.native").joinpath("openapi.json").read_bytes()

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        def route(op: Op) -> http_edge.Handler:
            async def inner(ctx: DriverContext, body: bytes) -> web.Response:
                answer = await op(wire.parse_json(body), ctx)
                if answer is None:
                    return http_edge.refuse(self.edge, 503, UNAVAILABLE)
                return web.Response(body=_dumps(answer), content_type="application/json", charset="utf-8")
            return http_edge.guard(ctx, self.edge, inner, auth=self._auth, content_types=(JSON,))

        return [
            web.post("/identify", route(self._identify)),
            web.post("/calculate", route(self._calculate)),
            web.post("/sales", route(self._sale)),
            web.post("/refunds", route(self._refund)),
            web.post("/cancels", route(self._cancel)),
            web.get("/openapi.json", self._openapi_doc),
        ]

    async def _identify(self, obj: wire.Obj, ctx: DriverContext) -> wire.Obj:
        ctx.count("identify")
        return mapping.identify_to_json(await ctx.identify(wire.parse_identify(obj)))

    async def _calculate(self, obj: wire.Obj, ctx: DriverContext) -> wire.Obj | None:
        receipt = wire.parse_receipt(obj, self.now(), store_id=self.config.store_id)
        result = await http_edge.calculate(ctx, receipt)
        return None if result is None else mapping.calc_to_json(result)

    async def _sale(self, obj: wire.Obj, ctx: DriverContext) -> wire.Obj:
        return await self._commit(wire.parse_sale(obj, self.now(), store_id=self.config.store_id), ctx)

    async def _refund(self, obj: wire.Obj, ctx: DriverContext) -> wire.Obj:
        return await self._commit(wire.parse_refund(obj, self.now()), ctx)

    async def _cancel(self, obj: wire.Obj, ctx: DriverContext) -> wire.Obj:
        return await self._commit(wire.parse_cancel(obj, self.now()), ctx)

    @staticmethod
    async def _commit(event: Any, ctx: DriverContext) -> wire.Obj:
        duplicate, _ = await http_edge.submit_all(ctx, [event])
        return mapping.ack_to_json(event.key, not duplicate)

    async def _openapi_doc(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document served at ``/v1/native/openapi.json`` (for tests and tools)."""
    doc: dict[str, Any] = json.loads(resources.files("drivers.native").joinpath("openapi.json").read_text())
    return doc
