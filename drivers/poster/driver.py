"""Poster driver: thin aiohttp routes over :mod:`wire` and :mod:`mapping`.

Routes (relative to ``/v1/poster/``): ``POST pos-event`` (the platform app: ``X-Gateway-Token``
on local requests, or Poster's proxy signature ``X-Poster-Signature``/``X-Poster-Time``),
``OPTIONS pos-event`` (CORS preflight of web terminals), ``POST webhook`` (account webhooks,
checked by their md5 ``verify``), ``GET webhook`` (URL check, 200).
Invariants: a commit is acknowledged (200) only after ``ctx.submit`` returned; a storage
failure answers 503 (the app's queue and Poster's retries resend); a calc never answers an
error for core trouble (``bonus 0``); a bad or missing signature or token is refused (403 /
401), logged without the secret, and nothing is stored; webhooks get ``{"status":"accept"}``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from drivers.poster import mapping, wire
from drivers.poster.config import Config
from gateway.driver import DriverContext
from gateway.errors import BadInput, GatewayError, StorageError

Handler = Callable[[web.Request], Awaitable[web.Response]]
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, X-Gateway-Token"}


def _reply(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json", headers=CORS)


class PosterDriver:
    name = mapping.NAME

    def __init__(self, config: Config, *, now: Callable[[], datetime] | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self.max_body_bytes = config.max_body_bytes
        self.now = now or (lambda: datetime.now(UTC))
        self.wall = wall
        self._secret = config.application_secret.get_secret_value()
        self._tokens = [t.get_secret_value().encode() for t in config.pairing_tokens if t.get_secret_value()]

    async def run(self, ctx: DriverContext) -> None:
        return None

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        return [
            web.post("/pos-event", self._guard(ctx, self._pos_event)),
            web.options("/pos-event", self._preflight),
            web.post("/webhook", self._guard(ctx, self._webhook)),
            web.get("/webhook", self._url_check),
        ]

    def error_response(self, status: int, code: str, message: str, field: str = "") -> web.Response:
        return _reply(status, wire.render_error(code, message, field))

    def _guard(self, ctx: DriverContext,
               inner: Callable[[web.Request, DriverContext, bytes], Awaitable[web.Response]]) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            ctx.count("requests")
            try:
                body = await request.read()  # bounded by the server's per-driver client_max_size
                return await inner(request, ctx, body)
            except BadInput as exc:
                ctx.count("bad_input")
                return self.error_response(400, "BAD_REQUEST", str(exc.args[0]), exc.field)
            except StorageError:
                ctx.count("storage_error")
                ctx.log.error("event=poster_store_failed action=answered_503_for_resend")
                return self.error_response(503, "STORAGE_UNAVAILABLE", "not stored: resend later")
        return handle

    def _fresh(self, sent: str) -> bool:
        if not self.config.max_clock_skew_s:
            return True
        try:
            return abs(self.wall() - int(sent)) <= self.config.max_clock_skew_s
        except ValueError:
            return False

    def _denied(self, ctx: DriverContext, why: str) -> web.Response:
        ctx.count("auth_failed")
        ctx.log.warning("event=poster_request_refused reason=%s action=nothing_stored", why)
        return self.error_response(403 if why != "no_token" else 401, "FORBIDDEN" if why != "no_token"
                                   else "UNAUTHORIZED", f"refused: {why.replace('_', ' ')}")

    def _app_auth(self, request: web.Request, body: bytes) -> str:
        """"" when the platform app's request is authentic, else why not."""
        token = request.headers.get("X-Gateway-Token", "")
        if token:
            ok = False
            for key in self._tokens:
                ok |= hmac.compare_digest(token.encode(), key)
            return "" if ok else "bad_pairing_token"
        signature = request.headers.get("X-Poster-Signature", "")
        sent = request.headers.get("X-Poster-Time", "")
        if not signature:
            return "no_token"
        url = self.config.public_url or str(request.url)
        if not wire.verify_proxy(url, body, sent, signature, self._secret):
            return "bad_proxy_signature"
        return "" if self._fresh(sent) else "stale_proxy_time"

    async def _pos_event(self, request: web.Request, ctx: DriverContext, body: bytes) -> web.Response:
        if why := self._app_auth(request, body):
            return self._denied(ctx, why)
        ev = wire.parse_pos_event(body)
        store = self.config.store_id
        if ev.event == "beforeOrderClose":
            return await self._calc(ctx, ev)
        if ev.event == "afterOrderClose":
            assert ev.order is not None
            event = mapping.sale_of(ev, now=self.now(), store_id=store)
            response = await self._commit(ctx, event)
            if ev.order.name:
                await ctx.state.put(mapping.tx_link(ev.settings.account, ev.order.name), event.key,
                                    keep_s=self.config.link_keep_days * 86_400.0)
            return response
        if ev.event == "returnFiscal":
            return await self._commit(ctx, mapping.refund_of(ev, now=self.now()))
        if ev.event == "applicationIconClicked":
            customer = mapping.customer_of(ev.loyalty)
            info = None if customer is None else await ctx.identify(customer)
            balance = None if info is None else info.balance
            return _reply(200, wire.dumps({"found": info is not None, "balance": balance,
                                            "name": "" if info is None else info.display_name}).encode())
        ctx.count("ignored")
        return _reply(200, wire.render_accepted(duplicate=False, ignored=f"{ev.event} changes nothing"))

    async def _calc(self, ctx: DriverContext, ev: wire.PosEvent) -> web.Response:
        ctx.count("calc")
        receipt = mapping.calc_receipt(ev, now=self.now(), store_id=self.config.store_id)
        if receipt.customer is None:
            return _reply(200, wire.render_bonus(0))
        try:
            result = await ctx.calculate(receipt)
        except BadInput:
            raise
        except GatewayError as exc:  # the pipeline should never raise these; never block the payment
            ctx.log.warning("event=poster_calc_without_bonus reason=%s", type(exc).__name__)
            return _reply(200, wire.render_bonus(0))
        if result.offline:
            ctx.count("offline_answer")
        assert ev.order is not None
        bonus = mapping.bonus_of(result, ev.order)
        text = mapping.print_text(receipt.customer, result, print_balance=self.config.print_balance)
        extras = mapping.calc_extras(receipt.customer, result, bonus)
        return _reply(200, wire.render_bonus(bonus, text, extras))

    async def _commit(self, ctx: DriverContext, event: Any) -> web.Response:
        new = await ctx.submit(event)
        ctx.count("committed" if new else "duplicate")
        return _reply(200, wire.render_accepted(duplicate=not new))

    async def _webhook(self, request: web.Request, ctx: DriverContext, body: bytes) -> web.Response:
        hook = wire.parse_webhook(body)
        if not wire.verify_webhook(hook, self._secret):
            return self._denied(ctx, "bad_webhook_verify")
        if not self._fresh(hook.time):
            return self._denied(ctx, "stale_webhook_time")
        wire.parse_data(hook.data)  # malformed data is bad input even when we do not use it
        linked = await ctx.state.get(mapping.tx_link(hook.account, hook.object_id))
        event = mapping.webhook_event(hook, linked, now=self.now())
        if isinstance(event, str):
            ctx.count("ignored")
            return _reply(200, wire.WEBHOOK_ACCEPT)
        new = await ctx.submit(event)
        ctx.count("committed" if new else "duplicate")
        return _reply(200, wire.WEBHOOK_ACCEPT)

    async def _preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=CORS)

    async def _url_check(self, request: web.Request) -> web.Response:
        return _reply(200, wire.WEBHOOK_ACCEPT)


def create(options: Mapping[str, Any]) -> PosterDriver:
    """The registry factory: ``options`` is the ``[drivers.poster]`` section without ``enabled``."""
    return PosterDriver(Config.model_validate(dict(options)))
