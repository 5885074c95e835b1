"""The example webhook till's I/O: two routes behind the shared edge (thin; parsing in wire.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway import http_edge
from gateway.driver import DriverContext, Edge, Refusals
from tests.drivers.examples.webhook_till import NAME, wire
from tests.drivers.examples.webhook_till.config import Config

REFUSALS = Refusals(
    unauthorized=lambda why: wire.error("UNAUTHORIZED", "send X-Till-Token"),
    timeout=wire.error("TIMEOUT", "the body was not received in time"),
    too_large=lambda limit: wire.error("TOO_LARGE", f"the body is larger than {limit} bytes"),
    bad_input=lambda exc: wire.error("BAD_INPUT", str(exc)),
    not_stored=wire.error("NOT_STORED", "not stored: resend the same request"),
    other=lambda status, code, message: wire.error(code, message),
)
JSON = ("application/json",)


def create(options: Mapping[str, Any]) -> WebhookTill:
    return WebhookTill(Config.model_validate(dict(options)))


class WebhookTill:
    name = NAME

    def __init__(self, config: Config) -> None:
        self.config = config
        self.edge = Edge(REFUSALS, config.max_body_bytes, config.read_timeout_ms / 1000)
        self._auth = http_edge.HeaderToken(config.tokens, header="X-Till-Token")

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        def guarded(inner: http_edge.Inner) -> http_edge.Handler:
            return http_edge.guard(ctx, self.edge, inner, auth=self._auth, content_types=JSON)

        return [web.post("/calc", guarded(self._calc)), web.post("/sale", guarded(self._sale))]

    async def run(self, ctx: DriverContext) -> None:
        return None  # HTTP only

    async def _calc(self, ctx: DriverContext, body: bytes) -> web.Response:
        receipt = wire.receipt(body, store_id=self.config.store_id, number_required=False)
        result = await http_edge.calculate(ctx, receipt)
        return http_edge.reply(self.edge, 200, wire.calc_answer(result))

    async def _sale(self, ctx: DriverContext, body: bytes) -> web.Response:
        event = wire.sale(body, store_id=self.config.store_id)
        duplicate, _ = await http_edge.submit_all(ctx, [event])
        return http_edge.reply(self.edge, 200, wire.accepted(duplicate))
