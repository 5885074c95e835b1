"""1C driver: one SOAP endpoint and its WSDL behind the shared edge (thin; parsing in wire.py,
mapping in mapping.py).

``GET  /v1/onec/POSProcessing.asmx[?wsdl]`` the service description (HTTP Basic, like the calls);
``POST /v1/onec/POSProcessing.asmx`` ``ProcessRequest`` (HTTP Basic; text/xml or application/soap+xml).

Invariants: a Fiscal is answered only after ``ctx.submit`` returned and its answer was remembered
(``ans:<key>``, ``tx:<TransactionID>`` in ``ctx.state`` for ``remember_days``): the same cheque resent
under any RequestID gets that first answer (with its own RequestID) without a second submit; another
cheque under the same key (its fingerprint differs) goes to ``submit``, where the outbox tells a copy
from a conflict; a readable request with a wrong field gets ReturnCode 90001 and stores nothing; a
write-off no Soft approved (``ok:<key>``) gets 90003 and stores nothing; a Rollback naming a
TransactionID that is not remembered gets 81380; a
storage failure is a 503 Fault ("resend"), never a business answer; core trouble never shows: the
gateway's offline policy answers the Soft.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from aiohttp import web

from drivers.onec import NAME, mapping, wire, wsdl
from drivers.onec.config import PATH, Config
from gateway import http_edge
from gateway.driver import DriverContext, Finding, Refusals
from gateway.errors import BadInput
from gateway.receipt import Event, validate_event

REFUSALS = Refusals(
    unauthorized=lambda why: wire.fault(
        "Client", "Нужна HTTP Basic авторизация (пользователь и пароль WS-ссылки)", error="UNAUTHORIZED"
    ),
    timeout=wire.fault("Client", "Тело запроса не получено вовремя", error="TIMEOUT"),
    too_large=lambda limit: wire.fault("Client", f"Запрос больше {limit} байт", error="TOO_LARGE"),
    bad_input=wire.bad_input,
    not_stored=wire.fault("Server", "Чек не сохранён: повторите тот же запрос", error="NOT_STORED"),
    other=wire.other,
    content_type="text/xml",
    charset="utf-8",
    challenge=f'Basic realm="{NAME}"',
)
XML = ("text/xml", "application/soap+xml")
DAY_S = 86_400.0
APPROVAL_KEEP_S = 2 * DAY_S  # a Fiscal follows its Soft within a shift


class OneCDriver(http_edge.HttpDriver[Config]):
    name = NAME
    refusals = REFUSALS

    def __init__(self, config: Config, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.zone = ZoneInfo(config.timezone)
        self.pv = config.point_value_kopecks
        self.keep_s = config.remember_days * DAY_S
        self.description = wsdl.render(config.public_url)
        self._auth = http_edge.BasicAuth({config.user: config.password})

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        return [
            web.get(PATH, http_edge.guard(ctx, self.edge, self._wsdl, auth=self._auth)),
            web.post(
                PATH, http_edge.guard(ctx, self.edge, self._service, auth=self._auth, content_types=XML)
            ),
        ]

    async def _wsdl(self, ctx: DriverContext, body: bytes) -> web.Response:
        return http_edge.reply(self.edge, 200, self.description)

    async def _service(self, ctx: DriverContext, body: bytes) -> web.Response:
        env = wire.parse_envelope(body, max_bytes=self.edge.max_body_bytes)
        now = self.now().astimezone(self.zone)
        answers = [await self._one(ctx, kind, el, now) for kind, el in env.requests]
        return http_edge.reply(
            self.edge,
            200,
            wire.render(answers, soap12=env.soap12),
            content_type="application/soap+xml" if env.soap12 else "",
        )

    async def _one(
        self, ctx: DriverContext, kind: str, el: Any, now: datetime
    ) -> wire.ChequeAnswer | wire.BalanceAnswer:
        try:
            if kind == "BalanceRequest":
                return await self._balance(ctx, _checked(lambda: wire.read_balance(el, self.zone)), now)
            c = _checked(lambda: wire.read_cheque(el, self.zone))
            return await (self._soft(ctx, c, now) if c.soft else self._fiscal(ctx, c, now))
        except _Invalid as bad:
            ctx.count("bad_input")
            exc = bad.exc
            rid = wire.request_id_of(el)
            answer = mapping.invalid(rid, exc, tx=mapping.transaction_id("invalid", rid, str(now)), now=now)
            if kind == "BalanceRequest":
                return wire.BalanceAnswer(answer.transaction_id, rid, now, answer.return_code, answer.message)
            return answer

    async def _balance(self, ctx: DriverContext, b: wire.Balance, now: datetime) -> wire.BalanceAnswer:
        tx = mapping.transaction_id("balance", b.business_unit, b.pos, b.request_id, b.when.isoformat())
        customer = _checked(lambda: mapping.customer_of(b.card))
        if customer is None:
            raise _Invalid(BadInput("is required", "BalanceRequest/Card"))
        ctx.count("identify")
        try:
            info = await ctx.identify(customer)
        except BadInput as exc:
            raise _Invalid(exc) from None
        if info is None:
            return wire.BalanceAnswer(tx, b.request_id, now, wire.UNKNOWN_CARD, "Карта не найдена")
        balance = None if info.offline or info.balance is None else info.balance * self.pv
        return wire.BalanceAnswer(
            tx,
            b.request_id,
            now,
            wire.OK,
            "OK" if balance is not None else mapping.OFFLINE_TEXT,
            card_number=customer.value,
            card_balance=balance,
            level_name=info.tier,
            full_name=info.display_name,
        )

    async def _soft(self, ctx: DriverContext, c: wire.Cheque, now: datetime) -> wire.ChequeAnswer:
        tx = mapping.transaction_id(
            "soft", c.business_unit, c.pos, c.number, c.request_id, c.when.isoformat()
        )
        if (
            c.operation != "Sale" or not c.items
        ):  # a Return or Rollback gets no discount; no items: nothing to do
            ctx.count("calc")
            return await self._with_card(ctx, c, mapping.echo(c, tx=tx, now=now))
        receipt = _checked(
            lambda: mapping.receipt_of(c, self.zone, store_id=self.config.store_id, pv=self.pv)
        )
        try:
            result = await http_edge.calculate(ctx, receipt)
        except BadInput as exc:
            raise _Invalid(exc) from None
        answer = mapping.soft_answer(c, receipt, result, tx=tx, now=now, pv=self.pv)
        if c.paid_by_bonus and answer.writeoff and c.number:  # an approval the Fiscal is checked against
            await ctx.state.put(
                "ok:" + mapping.key_of(c, self.zone), str(answer.writeoff // self.pv), keep_s=APPROVAL_KEEP_S
            )
        return answer

    async def _fiscal(self, ctx: DriverContext, c: wire.Cheque, now: datetime) -> wire.ChequeAnswer:
        if c.operation == "Sale" and not c.items:
            ctx.count("ignored")  # a cheque without goods (some modules send one to refresh a card)
            return mapping.echo(c, tx=mapping.transaction_id("empty", c.request_id, str(now)), now=now)
        sale_key = ""
        if c.operation == "Rollback":
            cited = await self._cited(ctx, c)
            if cited is None:
                return mapping.echo(
                    c,
                    tx=mapping.transaction_id("unknown", c.request_id, str(now)),
                    now=now,
                    code=wire.UNKNOWN_CHEQUE,
                    message="Чек не найден",
                )
            sale_key = cited
            key = mapping.cancel_of(c, sale_key).key
        else:
            key = _checked(lambda: mapping.key_of(c, self.zone))
        print_ = mapping.fingerprint(c)
        remembered = await ctx.state.get("ans:" + key)
        if remembered is not None and remembered.startswith(print_ + "\n"):  # the same cheque again
            ctx.count("duplicate")
            return replace(wire.load_answer(remembered.partition("\n")[2]), request_id=c.request_id)
        points = c.paid_by_bonus // self.pv if c.operation == "Sale" else 0
        if points and not mapping.token_of(c):
            approved = int(await ctx.state.get("ok:" + key) or 0)
            if points > approved:  # refused in band, nothing stored: counted and logged for the operator
                ctx.count("bad_input")
                ctx.log.warning("Fiscal write-off over what Soft approved: refused", extra={
                    "key": key, "points": points, "approved": approved,
                    "action": "the 1C module must run Soft with the write-off before Fiscal"})
                return mapping.echo(
                    c,
                    tx=mapping.transaction_id("refused", key, c.request_id),
                    now=now,
                    code=wire.OVER_APPROVAL,
                    message=f"Списание {points * self.pv / 100:.2f} не подтверждено расчётом "
                    f"(Soft): подтверждено {approved * self.pv / 100:.2f}",
                )
        event = _checked(lambda: validate_event(self._event(c, sale_key)))
        await http_edge.submit_all(ctx, [event])
        tx = mapping.transaction_id(key)
        answer = mapping.echo(
            c, tx=tx, now=now, writeoff=points * self.pv
        )  # no core call: the Fiscal budget is the disk's
        await asyncio.gather(
            ctx.state.put("ans:" + key, print_ + "\n" + wire.dump_answer(answer), keep_s=self.keep_s),
            ctx.state.put(f"tx:{tx}", key, keep_s=self.keep_s),
        )
        return answer

    async def _with_card(
        self, ctx: DriverContext, c: wire.Cheque, answer: wire.ChequeAnswer
    ) -> wire.ChequeAnswer:
        """``answer`` with the card's balance and level, when the cheque names a card the core knows now."""
        customer = _checked(lambda: mapping.customer_of(c.card))
        if customer is None:
            return answer
        ctx.count("identify")
        try:
            info = await ctx.identify(customer)
        except BadInput as exc:
            raise _Invalid(exc) from None
        if info is None or info.offline or info.balance is None:
            return answer
        return replace(answer, card_balance=info.balance * self.pv, level_name=info.tier)

    def _event(self, c: wire.Cheque, sale_key: str) -> Event:
        if c.operation == "Sale":
            return mapping.sale_of(c, self.zone, store_id=self.config.store_id, pv=self.pv)
        if c.operation == "Return":
            return mapping.refund_of(c, self.zone, store_id=self.config.store_id, pv=self.pv)
        return mapping.cancel_of(c, sale_key)

    async def _cited(self, ctx: DriverContext, c: wire.Cheque) -> str | None:
        """The key of the cheque a Rollback cites: by ChequeReference always (the gateway holds a
        cancel until its sale arrives); by TransactionReference only while its answer is remembered."""
        if c.reference is not None or c.transaction_ref is None:
            return str(_checked(lambda: mapping.referenced_key(c, self.zone)))
        return await ctx.state.get(f"tx:{c.transaction_ref}")


class _Invalid(Exception):
    """A readable request with a wrong field: answered with ReturnCode 90001, nothing stored."""

    def __init__(self, exc: BadInput) -> None:
        super().__init__(str(exc))
        self.exc = exc


def _checked(build: Any) -> Any:
    try:
        return build()
    except BadInput as exc:
        raise _Invalid(exc) from None


def check(options: Mapping[str, Any]) -> list[Finding]:
    """What the Config cannot say alone: a password to check the 1C module's calls against, and a
    ``public_url`` the 1C server can reach (it goes into the WSDL the WS-reference imports)."""
    try:
        cfg = Config.model_validate(dict(options))
    except Exception as exc:  # the loader reports it in detail; here one finding
        return [Finding("FAIL", "", f"invalid section: {exc}", "see drivers/onec/sample.toml")]
    out = []
    if not cfg.password.get_secret_value():
        out.append(
            Finding(
                "FAIL",
                "password",
                "no password: every call from 1C would be refused (401)",
                "set password (or POSGW_DRIVERS_ONEC_PASSWORD) and the same in the WS-reference",
            )
        )
    host = (urlsplit(cfg.public_url).hostname or "").lower()
    if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
        out.append(
            Finding(
                "WARN",
                "public_url",
                f"the WSDL names {cfg.public_url}: only a file infobase on "
                "this machine reaches it (a client-server 1C calls from its server)",
                "set public_url to the URL the 1C server reaches, e.g. https://gw.shop.lan/v1/onec"
                "/POSProcessing.asmx",
            )
        )
    return out


def create(options: Mapping[str, Any]) -> OneCDriver:
    """The registry factory: ``options`` is the ``[drivers.onec]`` section without ``enabled``."""
    return OneCDriver(Config.model_validate(dict(options)))
