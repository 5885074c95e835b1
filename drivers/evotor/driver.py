"""Evotor driver: thin aiohttp routes over :mod:`wire`, :mod:`cloud_wire` and :mod:`mapping`.

Routes (relative to ``/v1/evotor/``): ``POST event`` (our terminal plugin, X-Gateway-Token),
``POST cloud/api/v2/receipts`` and ``PUT cloud/api/v1/inventories/stores/{store}/documents``
(Evotor cloud webhooks, Bearer user token), ``POST cloud/api/v1/user/verify`` (cloud, app token).
Invariants: a close is acknowledged (200) only after ``ctx.submit`` returned; a storage
failure answers 503 so the plugin's outbox or the cloud resends; a calc never answers an
error for core trouble (``skip`` instead); bad input gets Evotor's error body with nothing
submitted; tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from drivers.evotor import NAME, cloud_wire, mapping, wire
from drivers.evotor.config import Config
from gateway import http_edge
from gateway.driver import DriverContext, Refusals
from gateway.receipt import Event

REFUSALS = Refusals(
    unauthorized=lambda why: wire.render_error(1002, "invalid", "Authorization"),
    timeout=wire.render_error(2006, "timeout", "body", "body not received in time"),
    too_large=lambda limit: wire.render_error(2005, "too large", "body", f"at most {limit} bytes"),
    bad_input=lambda exc: wire.render_error(2003, "incorrect", exc.field, str(exc)),
    not_stored=wire.render_error(5001, "unavailable", "storage", "not stored: resend"),
    other=lambda status, code, message: wire.render_error(status, code.lower(), "", message),
)


class EvotorDriver(http_edge.HttpDriver[Config]):
    name = NAME
    refusals = REFUSALS

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        plugin, cloud = self.config.pairing_tokens, [self.config.cloud_user_token]
        app = [self.config.cloud_app_token]
        docs = "/cloud/api/v1/inventories/stores/{store}/documents"
        edge = self.edge
        return [
            web.post("/event", http_edge.guard(ctx, edge, self._event,
                                               auth=http_edge.HeaderToken(plugin, "X-Gateway-Token"))),
            web.post("/cloud/api/v2/receipts", http_edge.guard(ctx, edge, self._receipts,
                                                               auth=http_edge.HeaderToken(cloud))),
            web.put(docs, http_edge.guard(ctx, edge, self._documents, auth=http_edge.HeaderToken(cloud))),
            web.post("/cloud/api/v1/user/verify", http_edge.guard(ctx, edge, self._verify,
                                                                  auth=http_edge.HeaderToken(app))),
        ]

    async def _event(self, ctx: DriverContext, body: bytes) -> web.Response:
        msg = wire.parse_plugin(body)
        if msg.kind is not wire.Kind.CALC:
            token = mapping.token_of(msg.snapshot.extra) if msg.snapshot else ""
            claims = ctx.calc_claims(token) if token else None
            event = mapping.plugin_event(msg, claims, now=self.now(), store_id=self.config.store_id)
            return await self._commit(ctx, [event])
        receipt = mapping.calc_receipt(msg, now=self.now(), store_id=self.config.store_id)
        if msg.doc_type is not wire.DocType.SELL:
            ctx.count("calc")
            return http_edge.reply(self.edge, 200, wire.render_discount(None))
        result = await http_edge.calculate(ctx, receipt)
        answer = None if result is None else mapping.discount_answer(
            msg, receipt, result, print_balance=self.config.print_balance)
        return http_edge.reply(self.edge, 200, wire.render_discount(answer))

    async def _receipts(self, ctx: DriverContext, body: bytes) -> web.Response:
        docs = cloud_wire.parse_receipts(body)
        return await self._commit(ctx, [self._cloud(d) for d in docs])

    async def _documents(self, ctx: DriverContext, body: bytes) -> web.Response:
        docs = cloud_wire.parse_documents(body)
        return await self._commit(ctx, [self._cloud(d) for d in docs])

    def _cloud(self, doc: cloud_wire.CloudDoc) -> Event | str:
        return mapping.cloud_event(doc, now=self.now(), store_id=self.config.store_id)

    async def _commit(self, ctx: DriverContext, events: Sequence[Event | str]) -> web.Response:
        """Submit every event (all parsed first, so bad input stores nothing); ack after the last."""
        duplicate, ignored = await http_edge.submit_all(ctx, events)
        return http_edge.reply(self.edge, 200, wire.render_accepted(duplicate=duplicate, ignored=ignored))

    async def _verify(self, ctx: DriverContext, body: bytes) -> web.Response:
        req = cloud_wire.parse_user_verify(body)
        token = http_edge.secret_value(self.config.cloud_user_token)
        answer = {"userUuid": req.user_uuid, "hasBilling": False, "token": token}
        return http_edge.reply(self.edge, 200, json.dumps(answer).encode())


def create(options: Mapping[str, Any]) -> EvotorDriver:
    """The registry factory: ``options`` is the ``[drivers.evotor]`` section without ``enabled``."""
    return EvotorDriver(Config.model_validate(dict(options)))
