"""Modul Kassa driver: thin aiohttp routes over :mod:`wire` and :mod:`mapping`.

Routes (relative to ``/v1/modulkassa/``), both with ``X-Gateway-Token``: ``POST operation``
(the loyalty-request Bundle our plugin forwards) and ``POST event`` (check broadcasts).
Invariants: a broadcast is acknowledged (200) only after ``ctx.submit`` returned; a storage
failure answers 503 so the plugin's forwarding outbox resends; a loyalty-request never
gets ``failed`` for core trouble or an unknown customer (identity impacts instead, so the
sale goes on); bad input gets ``{"result":"failed",...}`` with a 4xx and nothing stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from drivers.modulkassa import NAME, mapping, wire
from drivers.modulkassa.config import Config
from gateway import http_edge
from gateway.driver import DriverContext, Refusals

REFUSALS = Refusals(
    unauthorized=lambda why: wire.render_failed("unauthorized: check the plugin's pairing token"),
    timeout=wire.render_failed("body not received in time", "body"),
    too_large=lambda limit: wire.render_failed(f"body larger than {limit} bytes", "body"),
    bad_input=lambda exc: wire.render_failed(f"invalid request structure: {exc}", exc.field),
    not_stored=wire.render_failed("not stored: resend later", "storage"),
    other=lambda status, code, message: wire.render_failed(message),
)


class ModulKassaDriver(http_edge.HttpDriver[Config]):
    name = NAME
    refusals = REFUSALS

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        auth = http_edge.HeaderToken(self.config.pairing_tokens, "X-Gateway-Token")
        return [
            web.post("/operation", http_edge.guard(ctx, self.edge, self._operation, auth=auth)),
            web.post("/event", http_edge.guard(ctx, self.edge, self._event, auth=auth)),
        ]

    async def _operation(self, ctx: DriverContext, body: bytes) -> web.Response:
        req = wire.parse_operation(body)
        receipt = mapping.calc_receipt(req, now=self.now(), store_id=self.config.store_id)
        if mapping.refuse_if_return(req):
            ctx.count("calc")
            return http_edge.reply(self.edge, 200, wire.render_succeeded(mapping.identity_answer(req)))
        result = await http_edge.calculate(ctx, receipt)
        ans = mapping.identity_answer(req) if result is None else mapping.answer(
            req, receipt, result, print_balance=self.config.print_balance)
        return http_edge.reply(self.edge, 200, wire.render_succeeded(ans))

    async def _event(self, ctx: DriverContext, body: bytes) -> web.Response:
        ev = wire.parse_event(body)
        token = mapping.token_of(ev.loyalty)
        claims = ctx.calc_claims(token) if token else None
        event = mapping.event_of(ev, claims, now=self.now(), store_id=self.config.store_id)
        duplicate, ignored = await http_edge.submit_all(ctx, [event])
        return http_edge.reply(self.edge, 200, wire.render_accepted(duplicate=duplicate, ignored=ignored))


def create(options: Mapping[str, Any]) -> ModulKassaDriver:
    """The registry factory: ``options`` is the ``[drivers.modulkassa]`` section without ``enabled``."""
    return ModulKassaDriver(Config.model_validate(dict(options)))
