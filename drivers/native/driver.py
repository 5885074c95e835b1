"""The native driver's I/O: aiohttp routes under ``/v1/native/`` (thin; parsing is in wire.py).

Invariants:
- every route but ``openapi.json`` needs ``Authorization: Bearer <key>`` matching a configured
  key (compared in constant time); no configured key means every request is refused;
- a sale / refund / cancel is answered 200 only after ``ctx.submit`` returned (durable);
  :class:`StorageError` is answered 503 ``STORAGE_UNAVAILABLE`` so the till retries;
- bad input is answered 4xx in the native error format and nothing is stored.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web

from drivers.native import mapping, wire
from drivers.native.config import Config
from gateway.driver import DriverContext
from gateway.errors import BadInput, CoreUnavailable, StorageError

Op = Callable[[wire.Obj, DriverContext], Awaitable[wire.Obj]]

try:  # orjson, when installed, writes the answer straight to bytes (the stdlib: the same JSON text)
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

except ImportError:  # pragma: no cover - depends on the environment

    def _dumps(value: Any) -> bytes:
        return json.dumps(value).encode()


def create(options: Mapping[str, Any]) -> NativeDriver:
    return NativeDriver(Config.model_validate(dict(options)))


class NativeDriver:
    name = "native"

    def __init__(self, config: Config, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.max_body_bytes = config.max_body_bytes
        self._keys = [k.get_secret_value().encode() for k in config.api_keys]
        self._clock = clock
        self._openapi = resources.files("drivers.native").joinpath("openapi.json").read_bytes()

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        def handle(op: Op, what: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
            async def handler(request: web.Request) -> web.StreamResponse:
                return await self._handle(request, ctx, op, what)
            return handler

        return [
            web.post("/identify", handle(self._identify, "identify")),
            web.post("/calculate", handle(self._calculate, "calculate")),
            web.post("/sales", handle(self._sale, "sale")),
            web.post("/refunds", handle(self._refund, "refund")),
            web.post("/cancels", handle(self._cancel, "cancel")),
            web.get("/openapi.json", self._openapi_doc),
        ]

    async def run(self, ctx: DriverContext) -> None:
        return None  # HTTP only

    def error_response(self, status: int, code: str, message: str, field: str = "") -> web.Response:
        headers = {"WWW-Authenticate": 'Bearer realm="posgw"'} if status == 401 else None
        return web.json_response(mapping.error_to_json(code, message, field), status=status, headers=headers)

    async def _handle(
        self, request: web.Request, ctx: DriverContext, op: Op, what: str,
    ) -> web.StreamResponse:
        if not self._authorized(request.headers.get("Authorization", "")):
            ctx.count("unauthorized")
            return self.error_response(401, "UNAUTHORIZED", "send Authorization: Bearer <api key>")
        if request.content_type != "application/json":
            return self.error_response(415, "UNSUPPORTED_MEDIA_TYPE", "send Content-Type: application/json")
        try:
            body = await request.read()  # bounded by the server's per-driver client_max_size
            answer = await op(wire.parse_json(body), ctx)
        except BadInput as exc:
            ctx.count("bad_input")
            return self.error_response(400, "BAD_REQUEST", str(exc.args[0]), exc.field)
        except StorageError:
            ctx.count("storage_unavailable")
            return self.error_response(503, "STORAGE_UNAVAILABLE", "not stored: retry the same request later")
        except CoreUnavailable:
            return self.error_response(503, "UNAVAILABLE", "the loyalty core is unreachable: retry later")
        ctx.count(what)
        return web.Response(body=_dumps(answer), content_type="application/json", charset="utf-8")

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        given = token.strip().encode()
        return any(hmac.compare_digest(given, key) for key in self._keys)

    async def _identify(self, obj: wire.Obj, ctx: DriverContext) -> wire.Obj:
        return mapping.identify_to_json(await ctx.identify(wire.parse_identify(obj)))

    async def _calculate(self, obj: wire.Obj, ctx: DriverContext) -> wire.Obj:
        receipt = wire.parse_receipt(obj, self._clock(), store_id=self.config.store_id)
        return mapping.calc_to_json(await ctx.calculate(receipt))

    async def _sale(self, obj: wire.Obj, ctx: DriverContext) -> wire.Obj:
        event = wire.parse_sale(obj, self._clock(), store_id=self.config.store_id)
        return self._ack(event.key, await ctx.submit(event), ctx)

    async def _refund(self, obj: wire.Obj, ctx: DriverContext) -> wire.Obj:
        event = wire.parse_refund(obj, self._clock())
        return self._ack(event.key, await ctx.submit(event), ctx)

    async def _cancel(self, obj: wire.Obj, ctx: DriverContext) -> wire.Obj:
        event = wire.parse_cancel(obj, self._clock())
        return self._ack(event.key, await ctx.submit(event), ctx)

    @staticmethod
    def _ack(key: str, new: bool, ctx: DriverContext) -> wire.Obj:
        if not new:
            ctx.count("duplicate")
        return mapping.ack_to_json(key, new)

    async def _openapi_doc(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document served at ``/v1/native/openapi.json`` (for tests and tools)."""
    doc: dict[str, Any] = json.loads(resources.files("drivers.native").joinpath("openapi.json").read_text())
    return doc
