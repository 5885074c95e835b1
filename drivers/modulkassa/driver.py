"""Modul Kassa driver: thin aiohttp routes over :mod:`wire` and :mod:`mapping`.

Routes (relative to ``/v1/modulkassa/``), both with ``X-Gateway-Token``: ``POST operation``
(the loyalty-request Bundle our plugin forwards) and ``POST event`` (check broadcasts).
Invariants: a broadcast is acknowledged (200) only after ``ctx.submit`` returned; a storage
failure answers 503 so the plugin's forwarding outbox resends; a loyalty-request never
gets ``failed`` for core trouble or an unknown customer (identity impacts instead, so the
sale goes on); bad input gets ``{"result":"failed",...}`` with a 4xx and nothing stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from drivers.modulkassa import mapping, wire
from drivers.modulkassa.config import Config
from gateway import http_edge
from gateway.driver import DriverContext
from gateway.errors import BadInput, GatewayError


def _reply(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


REFUSALS = http_edge.Refusals(
    unauthorized=wire.render_failed("unauthorized: check the plugin's pairing token"),
    timeout=wire.render_failed("body not received in time", "body"),
    too_large=lambda limit: wire.render_failed(f"body larger than {limit} bytes", "body"),
    bad_input=lambda exc: wire.render_failed(f"invalid request structure: {exc}", exc.field),
    not_stored=wire.render_failed("not stored: resend later", "storage"),
)


class ModulKassaDriver:
    name = mapping.NAME

    def __init__(self, config: Config, *, now: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.now = now or (lambda: datetime.now(UTC))

    async def run(self, ctx: DriverContext) -> None:
        return None

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        return [
            web.post("/operation", self._guard(ctx, self._operation)),
            web.post("/event", self._guard(ctx, self._event)),
        ]

    def _guard(self, ctx: DriverContext, inner: http_edge.Inner) -> http_edge.Handler:
        """The shared edge; the plugin presents its pairing token in X-Gateway-Token."""

        def authorized(request: web.Request) -> bool:
            return http_edge.token_matches(request.headers.get("X-Gateway-Token", ""),
                                           self.config.pairing_tokens)

        return http_edge.guard(ctx, inner, refusals=REFUSALS, limit=self.config.max_body_bytes,
                               timeout_s=self.config.read_timeout_ms / 1000, authorized=authorized)

    async def _operation(self, ctx: DriverContext, body: bytes) -> web.Response:
        req = wire.parse_operation(body)
        ctx.count("calc")
        receipt = mapping.calc_receipt(req, now=self.now(), store_id=self.config.store_id)
        if receipt.customer is None or mapping.refuse_if_return(req):
            return _reply(200, wire.render_succeeded(mapping.identity_answer(req)))
        try:
            result = await ctx.calculate(receipt)
        except BadInput:
            raise
        except GatewayError as exc:  # the pipeline should never raise these; never block the sale
            ctx.log.warning("event=modulkassa_calc_identity reason=%s", type(exc).__name__)
            return _reply(200, wire.render_succeeded(mapping.identity_answer(req)))
        if result.offline:
            ctx.count("offline_answer")
        ans = mapping.answer(req, receipt, result, print_balance=self.config.print_balance)
        return _reply(200, wire.render_succeeded(ans))

    async def _event(self, ctx: DriverContext, body: bytes) -> web.Response:
        event = mapping.event_of(wire.parse_event(body), now=self.now(), store_id=self.config.store_id)
        if isinstance(event, str):
            ctx.count("ignored")
            return _reply(200, wire.render_accepted(duplicate=False, ignored=event))
        new = await ctx.submit(event)
        ctx.count("committed" if new else "duplicate")
        return _reply(200, wire.render_accepted(duplicate=not new))


def create(options: Mapping[str, Any]) -> ModulKassaDriver:
    """The registry factory: ``options`` is the ``[drivers.modulkassa]`` section without ``enabled``."""
    return ModulKassaDriver(Config.model_validate(dict(options)))
