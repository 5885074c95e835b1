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
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from drivers.evotor import cloud_wire, mapping, wire
from drivers.evotor.config import Config
from gateway import http_edge
from gateway.driver import DriverContext
from gateway.errors import BadInput, GatewayError
from gateway.receipt import Event

_JSON = "application/json"


def _reply(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type=_JSON)


REFUSALS = http_edge.Refusals(
    unauthorized=wire.render_error(1002, "invalid", "Authorization"),
    timeout=wire.render_error(2006, "timeout", "body", "body not received in time"),
    too_large=lambda limit: wire.render_error(2005, "too large", "body", f"at most {limit} bytes"),
    bad_input=lambda exc: wire.render_error(2003, "incorrect", exc.field, str(exc)),
    not_stored=wire.render_error(5001, "unavailable", "storage", "not stored: resend"),
)


class EvotorDriver:
    name = mapping.NAME

    def __init__(self, config: Config, *, now: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.now = now or (lambda: datetime.now(UTC))

    async def run(self, ctx: DriverContext) -> None:
        return None

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        plugin, cloud = self.config.pairing_tokens, [self.config.cloud_user_token]
        app = [self.config.cloud_app_token]
        docs = "/cloud/api/v1/inventories/stores/{store}/documents"
        return [
            web.post("/event", self._guard(ctx, plugin, "X-Gateway-Token", self._event)),
            web.post("/cloud/api/v2/receipts", self._guard(ctx, cloud, "", self._receipts)),
            web.put(docs, self._guard(ctx, cloud, "", self._documents)),
            web.post("/cloud/api/v1/user/verify", self._guard(ctx, app, "", self._verify)),
        ]

    def _guard(self, ctx: DriverContext, secrets: Sequence[SecretStr | str], header: str,
               inner: http_edge.Inner) -> http_edge.Handler:
        """The shared edge; ``header`` carries the token, or ``Authorization`` (Bearer) when empty."""

        def authorized(request: web.Request) -> bool:
            presented = request.headers.get(header, "") if header \
                else http_edge.bearer(request.headers.get("Authorization", ""))
            return http_edge.token_matches(presented, secrets)

        return http_edge.guard(ctx, inner, refusals=REFUSALS, limit=self.config.max_body_bytes,
                               timeout_s=self.config.read_timeout_ms / 1000, authorized=authorized)

    async def _event(self, ctx: DriverContext, body: bytes) -> web.Response:
        msg = wire.parse_plugin(body)
        if msg.kind is not wire.Kind.CALC:
            event = mapping.plugin_event(msg, now=self.now(), store_id=self.config.store_id)
            return await self._commit(ctx, [event])
        ctx.count("calc")
        receipt = mapping.calc_receipt(msg, now=self.now(), store_id=self.config.store_id)
        if msg.doc_type is not wire.DocType.SELL or receipt.customer is None:
            return _reply(200, wire.render_discount(None))
        try:
            result = await ctx.calculate(receipt)
        except BadInput:
            raise
        except GatewayError as exc:  # the pipeline should never raise these; never block the sale
            ctx.log.warning("event=evotor_calc_skipped reason=%s", type(exc).__name__)
            return _reply(200, wire.render_discount(None))
        if result.offline:
            ctx.count("offline_answer")
        answer = mapping.discount_answer(msg, receipt, result, print_balance=self.config.print_balance)
        return _reply(200, wire.render_discount(answer))

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
        duplicate, ignored = False, ""
        for event in events:
            if isinstance(event, str):
                ctx.count("ignored")
                ignored = event
                continue
            new = await ctx.submit(event)
            ctx.count("committed" if new else "duplicate")
            duplicate = duplicate or not new
        return _reply(200, wire.render_accepted(duplicate=duplicate, ignored=ignored))

    async def _verify(self, ctx: DriverContext, body: bytes) -> web.Response:
        req = cloud_wire.parse_user_verify(body)
        token = http_edge.secret_value(self.config.cloud_user_token)
        answer = {"userUuid": req.user_uuid, "hasBilling": False, "token": token}
        return _reply(200, json.dumps(answer).encode())


def create(options: Mapping[str, Any]) -> EvotorDriver:
    """The registry factory: ``options`` is the ``[drivers.evotor]`` section without ``enabled``."""
    return EvotorDriver(Config.model_validate(dict(options)))
