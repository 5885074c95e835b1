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

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from drivers.poster import NAME, mapping, wire
from drivers.poster.config import Config
from gateway import http_edge
from gateway.driver import DriverContext, Refusals
from gateway.slip import slip_text

CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, X-Gateway-Token"}
REFUSALS = Refusals(
    unauthorized=lambda why: wire.render_error("UNAUTHORIZED" if why == "no_token" else "FORBIDDEN",
                                               f"refused: {why.replace('_', ' ')}"),
    timeout=wire.render_error("REQUEST_TIMEOUT", "body not received in time", "body"),
    too_large=lambda limit: wire.render_error("PAYLOAD_TOO_LARGE", f"the body is larger than {limit} bytes"),
    bad_input=lambda exc: wire.render_error("BAD_REQUEST", str(exc.args[0]), exc.field),
    not_stored=wire.render_error("STORAGE_UNAVAILABLE", "not stored: resend later"),
    other=lambda status, code, message: wire.render_error(code, message),
    headers=CORS,
)


class PosterDriver(http_edge.HttpDriver[Config]):
    name = NAME
    refusals = REFUSALS

    def __init__(self, config: Config, *, now: Callable[[], datetime] | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        super().__init__(config, now=now)
        self.wall = wall
        self._secret = config.application_secret.get_secret_value()
        self._keep_s = config.link_keep_days * 86_400.0

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        return [
            web.post("/pos-event", http_edge.guard(ctx, self.edge, self._pos_event,
                                                   auth=http_edge.Signed(self._app_auth))),
            web.options("/pos-event", self._preflight),
            web.post("/webhook", http_edge.guard(ctx, self.edge, self._webhook,
                                                 auth=http_edge.Signed(self._webhook_auth))),
            web.get("/webhook", self._url_check),
        ]

    def _reply(self, body: bytes) -> web.Response:
        return http_edge.reply(self.edge, 200, body)

    def _fresh(self, sent: str) -> bool:
        if not self.config.max_clock_skew_s:
            return True
        try:
            return abs(self.wall() - int(sent)) <= self.config.max_clock_skew_s
        except ValueError:
            return False

    def _app_auth(self, request: web.Request, body: bytes) -> str:
        """"" when the platform app's request is authentic (pairing token, else Poster's proxy
        signature over the URL, body and time), else why not."""
        token = request.headers.get("X-Gateway-Token", "")
        if token:
            return "" if http_edge.token_matches(token, self.config.pairing_tokens) else "bad_pairing_token"
        signature = request.headers.get("X-Poster-Signature", "")
        sent = request.headers.get("X-Poster-Time", "")
        if not signature:
            return "no_token"
        url = self.config.public_url or str(request.url)
        if not wire.verify_proxy(url, body, sent, signature, self._secret):
            return "bad_proxy_signature"
        return "" if self._fresh(sent) else "stale_proxy_time"

    def _webhook_auth(self, request: web.Request, body: bytes) -> str:
        """"" when the webhook's md5 ``verify`` is right and its time fresh, else why not."""
        hook = wire.parse_webhook(body)
        if not wire.verify_webhook(hook, self._secret):
            return "bad_webhook_verify"
        return "" if self._fresh(hook.time) else "stale_webhook_time"

    async def _pos_event(self, ctx: DriverContext, body: bytes) -> web.Response:
        ev = wire.parse_pos_event(body)
        store = self.config.store_id
        if ev.event == "beforeOrderClose":
            return await self._calc(ctx, ev)
        if ev.event == "afterOrderClose":
            assert ev.order is not None
            event = mapping.sale_of(ev, now=self.now(), store_id=store)
            response = await self._commit(ctx, event)
            if ev.order.name:
                account, tx = ev.settings.account, str(ev.order.name)
                await ctx.state.put(mapping.tx_link(account, tx), event.key, keep_s=self._keep_s)
                await self._relink_early_removal(ctx, account, tx, event.key)
            return response
        if ev.event == "returnFiscal":
            return await self._commit(ctx, mapping.refund_of(ev, now=self.now()))
        if ev.event == "applicationIconClicked":
            return await self._guest(ctx, ev)
        ctx.count("ignored")
        return self._reply(wire.render_accepted(duplicate=False, ignored=f"{ev.event} changes nothing"))

    async def _calc(self, ctx: DriverContext, ev: wire.PosEvent) -> web.Response:
        receipt = mapping.calc_receipt(ev, now=self.now(), store_id=self.config.store_id)
        result = await http_edge.calculate(ctx, receipt)  # no customer: the register's binding, if any
        if result is None or result.customer is None:
            return self._reply(wire.render_bonus(0))
        assert ev.order is not None
        bonus = mapping.bonus_of(result, ev.order)
        text = slip_text(result.customer, result, print_balance=self.config.print_balance)
        return self._reply(wire.render_bonus(bonus, text, mapping.calc_extras(result)))

    async def _guest(self, ctx: DriverContext, ev: wire.PosEvent) -> web.Response:
        """The app's guest popup: found, name and balance; for an order with products also the
        points it would earn and the most it may spend (a calc that redeems nothing, holds nothing).
        Core trouble answers what identify knows (or not found): never an error for the cashier."""
        customer = mapping.customer_of(ev.loyalty)
        if customer is None:
            return self._reply(wire.render_guest(found=False))
        if ev.order is not None and mapping.lines_of(ev.order.products):
            receipt = mapping.preview_receipt(ev, now=self.now(), store_id=self.config.store_id)
            result = await http_edge.calculate(ctx, receipt)
            if result is not None:
                return self._reply(wire.render_guest(
                    found=result.customer_found, name=result.display_name, balance=result.balance,
                    offline=result.offline, earn=result.points_to_accrue, spend=result.max_points))
        info = await ctx.identify(customer)
        ctx.count("identify")
        if info is None:
            return self._reply(wire.render_guest(found=False))
        return self._reply(wire.render_guest(found=True, name=info.display_name, balance=info.balance,
                                             offline=info.offline))

    async def _commit(self, ctx: DriverContext, event: Any) -> web.Response:
        duplicate, _ = await http_edge.submit_all(ctx, [event])
        return self._reply(wire.render_accepted(duplicate=duplicate))

    async def _webhook(self, ctx: DriverContext, body: bytes) -> web.Response:
        hook = wire.parse_webhook(body)  # signed and fresh (checked by _webhook_auth); data is not read
        linked = await ctx.state.get(mapping.tx_link(hook.account, hook.object_id))
        event = mapping.webhook_event(hook, linked, now=self.now())
        if linked is None and not isinstance(event, str):  # before its order closed: remember it
            await ctx.state.put(mapping.early_removal(hook.account, hook.object_id), body.decode(),
                                keep_s=self._keep_s)
        await http_edge.submit_all(ctx, [event])
        return self._reply(wire.WEBHOOK_ACCEPT)

    async def _relink_early_removal(self, ctx: DriverContext, account: str, tx: str, sale_key: str) -> None:
        """A removal that came before this order closed names the transaction, a sale the core will
        never know: submit it again naming the order's sale (the outbox replaces the reference of
        the waiting copy and wakes it), once."""
        raw = await ctx.state.get(mapping.early_removal(account, tx))
        if not raw:
            return
        event = mapping.webhook_event(wire.parse_webhook(raw.encode()), sale_key, now=self.now())
        if not isinstance(event, str):
            await http_edge.submit_all(ctx, [event])
        await ctx.state.put(mapping.early_removal(account, tx), "", keep_s=self._keep_s)

    async def _preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=CORS)

    async def _url_check(self, request: web.Request) -> web.Response:
        return self._reply(wire.WEBHOOK_ACCEPT)


def create(options: Mapping[str, Any]) -> PosterDriver:
    """The registry factory: ``options`` is the ``[drivers.poster]`` section without ``enabled``."""
    return PosterDriver(Config.model_validate(dict(options)))
