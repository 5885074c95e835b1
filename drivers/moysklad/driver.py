"""MoySklad driver: the loyalty system's side of MoySklad's Loyalty API 1.0 (routes over wire/mapping).

Routes (relative to ``/v1/moysklad/``; MoySklad appends the paths to the registered base URL,
so the base URL is ``https://<host>/v1/moysklad``), every one behind the shared guard with the
``Lognex-Discount-API-Auth-Token`` header compared in constant time:

- ``POST counterparty``: create a customer (412/28001 while an UNCHECKED phone needs a code);
- ``GET counterparty``: search by phone or card; ``POST counterparty/detail``: the balance;
- ``POST counterparty/verify`` / ``POST retaildemand/verify``: a code for registration / spending;
- ``POST retaildemand/recalc``: price the receipt (side-effect free on balances);
- ``POST retaildemand``: the sale (through the outbox); ``POST retailsalesreturn``: the return;
- ``GET giftcard``: a money certificate.

Invariants: a sale or return is answered 201 only after ``ctx.submit`` returned (or it was stored
before under the same key with the same content); bad input, an unknown customer spending, more
points than the recalc allowed, spending without a code: the ``errors`` body with a 4xx and nothing
stored; a return asking back more than its sale has left is capped (possibly to nothing), answered
201 and counted as ``bad_input`` with a WARNING (see ``_capped``); a calc never fails the till for
core trouble (prices unchanged, no points); a code request never waits past ``code_budget_ms``.

One route from recalc to sale, as for every driver: the calc token. MoySklad carries nothing from
the recalc to the sale, so the recalc keeps its token in the driver's state under
:func:`mapping.calc_key` (store, counterparty, goods: what the sale carries too), in a list of at
most :data:`mapping.CALC_TOKENS_KEPT` (two tills may recalc the same basket for the same customer),
and the sale commits with the one :func:`mapping.pick` chooses (``Event.calc_token``: the pipeline
verifies it and applies the recalc's customer, hold and offline flag); points spent are checked
against what that token redeemed, and a token is used by one sale (one writer per calc key at a
time: the sale holds it from choosing the token to consuming it). Keeping the token is waited for
until ``recalc_budget_ms`` after the recalc began, no longer: a late write goes on in the background
(a sale of those goods waits for it), a failed one keeps nothing; both are logged at WARNING and the
recalc is answered all the same.

The driver's state (``ctx.state``): ``link:<msId>`` (MoySklad counterparty -> core customer and
phone), ``calc:<digest>`` (the calc tokens, a JSON list oldest first, of the recalcs of those goods
for that customer at that store that redeemed, held or were answered offline; kept a day from the
last write, each removed by the sale that commits with it),
``code:<phone digits>`` (the spending code handed to the till, kept for the code's life),
``doc:<key>`` (content digest of a stored document, written last), ``sale:<key>`` (a sale's lines),
``used:<key>`` (the calc token a stored sale committed with, written before that token is removed from
``calc:``, so a resend after an interrupted answer commits with it again instead of choosing another),
``returned:<sale key>`` (what each return took back) and ``gift:<name>`` (kopecks each sale paid with a
gift card), the last two kept per document so a resend after an interrupted answer records once.
``doc:``, ``sale:``, ``used:`` and ``returned:`` are forgotten after ``keep_days`` (the state would
otherwise grow with every sale); ``link:`` (one per customer) and ``gift:`` (money) are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC
from typing import Any

from aiohttp import web

from drivers.moysklad import NAME, mapping, wire
from drivers.moysklad.config import Config
from gateway import fields, http_edge, slip
from gateway.driver import CalcClaims, CalcResult, DriverContext, Finding, Refusals
from gateway.errors import BadInput, BusinessRejection, GatewayError
from gateway.receipt import CustomerId, Event, IdKind

HEADER = "Lognex-Discount-API-Auth-Token"
JSON = ("application/json",)
CALC_KEEP_S = 86_400.0
ANSWER_RESERVE_S = 0.01  # what answering takes after the calc token's write was waited for
CODE_KEEP_S = 600.0  # the core's code lifetime (simulators/core/codes.py CODE_TTL)
RECALC_AGAIN = frozenset({"REDEMPTION_CAP_EXCEEDED", "INSUFFICIENT_POINTS"})
ID_NAMESPACE = uuid.UUID("5b0f7f1e-3c1a-4e7e-9a53-7d1e6f0c2a10")  # our customer ids as UUIDs (Q7)


def error(title: str, message: str, parameter: str = "", code: int = wire.CODE_AUTH) -> bytes:
    return wire.render_errors(title, message, code=code, parameter=parameter)


REFUSALS = Refusals(
    unauthorized=lambda why: error("Недействительный токен", "Проверьте ключ доступа в настройках решения"),
    timeout=error("Запрос не получен", "Тело запроса не пришло вовремя: повторите"),
    too_large=lambda limit: error("Слишком большой запрос", f"Тело запроса больше {limit} байт"),
    bad_input=lambda exc: error("Неверный запрос", str(exc), exc.field),
    not_stored=error("Документ не сохранён", "Временная ошибка сервера лояльности: повторите отправку"),
    other=lambda status, code, message: error("Ошибка запроса", message),
)


class Refused(Exception):
    """A business refusal answered in MoySklad's shape (nothing stored)."""

    def __init__(self, status: int, title: str, message: str, code: int = wire.CODE_AUTH) -> None:
        super().__init__(message)
        self.status, self.title, self.message, self.code = status, title, message, code


def customer_uuid(customer_id: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, customer_id))


class MoySkladDriver(http_edge.HttpDriver[Config]):
    name = NAME
    refusals = REFUSALS

    def __init__(self, config: Config, **kw: Any) -> None:
        super().__init__(config, **kw)
        self._locks: dict[str, asyncio.Lock] = {}  # state key -> its writer (read-modify-write)
        self._users: Counter[str] = Counter()  # state key -> tasks holding or waiting for its lock
        self._writes: set[asyncio.Future[None]] = set()  # calc token writes that outlived their recalc
        self.keep_s = config.keep_days * 86_400.0  # documents' content, sales' goods, their returns

    @contextlib.asynccontextmanager
    async def _exclusive(self, key: str) -> AsyncIterator[None]:
        """One writer of the state value ``key`` at a time; the lock is forgotten when nobody
        holds or waits for it (keys are per sale and per basket: the dict must not grow)."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        auth = http_edge.HeaderToken(self.config.tokens, header=HEADER)

        def post(path: str, inner: http_edge.Inner) -> web.RouteDef:
            return web.post(
                path, http_edge.guard(ctx, self.edge, self._refusing(inner), auth=auth, content_types=JSON)
            )

        def get(
            path: str, inner: Callable[[DriverContext, Mapping[str, str]], Awaitable[web.Response]]
        ) -> web.RouteDef:
            async def body_less(request: web.Request) -> web.StreamResponse:
                async def run(c: DriverContext, _: bytes) -> web.Response:
                    return await inner(c, request.query)

                return await http_edge.guard(ctx, self.edge, self._refusing(run), auth=auth)(request)

            return web.get(path, body_less)

        posts: dict[str, http_edge.Inner] = {
            "/counterparty": self._create,
            "/counterparty/detail": self._detail,
            "/counterparty/verify": self._registration_code,
            "/retaildemand/recalc": self._recalc,
            "/retaildemand/verify": self._spending_code,
            "/retaildemand": self._sale,
            "/retailsalesreturn": self._return,
        }
        gets = {"/counterparty": self._search, "/giftcard": self._gift_card}
        # MoySklad appends each path to the registered URL: one registered with a trailing slash
        # gives "//counterparty" (the protocol notes: accept both)
        return [
            *(post(prefix + path, inner) for prefix in ("", "/") for path, inner in posts.items()),
            *(get(prefix + path, inner) for prefix in ("", "/") for path, inner in gets.items()),
        ]

    def _refusing(self, inner: http_edge.Inner) -> http_edge.Inner:
        async def run(ctx: DriverContext, body: bytes) -> web.Response:
            try:
                return await inner(ctx, body)
            except Refused as exc:
                ctx.count("bad_input")
                return http_edge.reply(self.edge, exc.status, error(exc.title, exc.message, code=exc.code))

        return run

    def _answer(self, status: int, body: bytes = b"") -> web.Response:
        if not body:
            return web.Response(status=status)
        return http_edge.reply(self.edge, status, body)

    # ------------------------------------------------------------ customers

    async def _link(self, ctx: DriverContext, who: wire.Agent) -> tuple[str, str] | None:
        """(core customer id, phone) of a MoySklad counterparty: its link, else its phone or card."""
        if who.ms_id:
            known = await ctx.state.get(f"link:{who.ms_id}")
            if known:
                raw = json.loads(known)
                return str(raw["cid"]), str(raw.get("phone", ""))
        for kind, value in ((IdKind.PHONE, who.phone), (IdKind.CARD, who.card)):
            if not value:
                continue
            ctx.count("identify")
            info = await ctx.identify(CustomerId(kind, value))
            if info is not None:
                if who.ms_id and not info.offline:
                    await self._remember_link(ctx, who, info.customer_id)
                return info.customer_id, who.phone
        return None

    async def _remember_link(self, ctx: DriverContext, who: wire.Agent, customer_id: str) -> None:
        """Keep ``link:<msId>`` for a counterparty found by phone or card: a shortcut only, so a
        failed write is logged and the request goes on (a recalc must not fail for it; the next
        request finds the customer by phone or card again)."""
        try:
            await ctx.state.put(f"link:{who.ms_id}", json.dumps({"cid": customer_id, "phone": who.phone}))
        except GatewayError as exc:
            ctx.log.warning(
                "counterparty link not kept",
                extra={"driver": NAME, "error": str(exc) or type(exc).__name__,
                       "action": "found by phone or card again next time; check the state store"},
            )

    async def _create(self, ctx: DriverContext, body: bytes) -> web.Response:
        store, who = wire.parse_create(body)
        if who.status_check == "UNCHECKED" and self.config.codes_for_new_customers:
            raise Refused(
                412,
                "Необходимо подтверждение создания покупателя.",
                "Покупатель должен подтвердить телефон кодом из SMS.",
                wire.CODE_CONFIRM,
            )
        if not (who.phone or who.card):
            raise BadInput("a phone or a discount card number is needed to register a customer", "phone")
        desk = ctx.desk
        if desk is None:
            raise Refused(
                503,
                "Регистрация недоступна",
                "Шлюз не может зарегистрировать покупателя: обратитесь к администратору программы лояльности",
            )
        gender = {"MALE": "male", "FEMALE": "female"}.get(who.sex, "")
        try:
            cid = await desk.register_customer(
                phone=who.phone,
                card=who.card,
                name=who.name,
                email=who.email,
                birth_date=who.birth_date[:10],
                gender=gender,
                store_id=self.config.store_id or store,
                timeout=self.config.code_budget_ms / 1000,
            )
        except BusinessRejection as exc:
            raise Refused(412, "Покупатель не зарегистрирован", str(exc)) from None
        except GatewayError:
            raise Refused(503, "Сервер лояльности недоступен", "Повторите регистрацию позже") from None
        link = json.dumps({"cid": cid, "phone": who.phone})
        for key in {who.ms_id, who.sync_id} - {""}:
            await ctx.state.put(f"link:{key}", link)
        return self._answer(201)

    async def _search(self, ctx: DriverContext, params: Mapping[str, str]) -> web.Response:
        wire.query(params, "retailStoreId")
        text = wire.query(params, "search", limit=64).strip()
        rows = []
        digits = "".join(ch for ch in text if ch.isdigit())
        kinds = [IdKind.PHONE, IdKind.CARD] if digits and len(digits) >= 10 else [IdKind.CARD]
        for kind in kinds:
            try:
                # a phone goes as typed (8 903…, +7 903…, 7903…, 903… without +7): the core and the
                # offline snapshot normalise it; a card as typed
                who = fields.customer(kind, text, "search")
                ctx.count("identify")
                info = await ctx.identify(who)
            except BadInput:
                continue
            if info is not None:
                row = {"id": customer_uuid(info.customer_id), "name": info.display_name or "Покупатель"}
                if kind is IdKind.PHONE:
                    row["phone"] = "+" + mapping.phone_key(text)
                else:
                    row["discountCardNumber"] = text
                rows.append(row)
                break
        return self._answer(200, wire.render_rows(rows))

    async def _detail(self, ctx: DriverContext, body: bytes) -> web.Response:
        _, who = wire.parse_detail(body)
        found = await self._link(ctx, who)
        if found is None:
            raise Refused(404, "Покупатель не найден", "Покупатель не зарегистрирован в программе лояльности")
        ctx.count("identify")
        info = await ctx.identify(CustomerId(IdKind.CUSTOMER_ID, found[0]))
        if info is None or info.balance is None:
            raise Refused(503, "Баланс недоступен", "Нет связи с сервером лояльности: баланс покажем позже")
        return self._answer(200, wire.render_balance(info.balance))

    # ------------------------------------------------------------ codes

    async def _code(self, ctx: DriverContext, phone: str, purpose: str) -> web.Response:
        desk = ctx.desk
        if desk is None:
            raise Refused(503, "Коды недоступны", "Шлюз не может отправить код: продайте без списания баллов")
        budget = self.config.code_budget_ms
        try:
            sent = await desk.send_code(phone, purpose=purpose, wait_ms=budget - 100, timeout=budget / 1000)
        except BusinessRejection as exc:
            raise Refused(412, "Код не отправлен", f"Код не отправлен: {exc}") from None
        except GatewayError:
            raise Refused(
                503,
                "SMS не отправлено",
                "Сервер лояльности или SMS-сервис не ответил вовремя: попросите код ещё раз "
                "через минуту или продайте без списания баллов",
            ) from None
        repeat = max(self.config.time_for_repeat_s, sent.retry_after_s)
        if sent.status == "rate_limited":
            raise Refused(429, "Код уже отправлен", f"Новый код можно запросить через {sent.retry_after_s} с")
        if sent.status == "locked":
            raise Refused(423, "Телефон заблокирован", "Слишком много неверных кодов: попробуйте позже")
        if sent.status != "sent" or not sent.code:
            raise Refused(
                503,
                "SMS не отправлено",
                "SMS-сервис не ответил вовремя: попросите код ещё раз "
                f"через {repeat} с или продайте без списания баллов",
            )
        if purpose == "spending":
            await ctx.state.put(f"code:{mapping.phone_key(phone)}", sent.code, keep_s=CODE_KEEP_S)
        shown = slip.mask(mapping.phone_key(phone))  # the last four digits, however the phone is spelt
        return self._answer(200, wire.render_code(sent.code, repeat, f"Код отправлен в SMS на {shown}"))

    async def _registration_code(self, ctx: DriverContext, body: bytes) -> web.Response:
        ask = wire.parse_registration_code(body)
        return await self._code(ctx, ask.phone, "registration")

    async def _spending_code(self, ctx: DriverContext, body: bytes) -> web.Response:
        ask = wire.parse_spending_code(body)
        phone = ask.phone
        if not phone:
            known = await ctx.state.get(f"link:{ask.counterparty}")
            phone = str(json.loads(known).get("phone", "")) if known else ""
        if not phone:
            raise BadInput("the customer's phone is needed to send a code", "phone")
        return await self._code(ctx, phone, "spending")

    # ------------------------------------------------------------ recalc

    async def _calc(self, ctx: DriverContext, req: wire.Recalc, customer: CustomerId) -> CalcResult | None:
        redeem, redeem_max = 0, False
        if req.spending:
            redeem, redeem_max = (0, True) if req.preferred is None else (req.preferred, False)
        receipt = mapping.calc_receipt(
            req, customer, redeem, redeem_max, now=self.now(), store_id=self.config.store_id
        )
        result = await http_edge.calculate(ctx, receipt)
        if result is not None and result.rejection in RECALC_AGAIN and not redeem_max:
            # MoySklad's till replaces an unusable preference by the maximum available
            again = mapping.calc_receipt(
                req, customer, 0, True, now=self.now(), store_id=self.config.store_id
            )
            result = await http_edge.calculate(ctx, again)
        return result

    async def _recalc(self, ctx: DriverContext, body: bytes) -> web.Response:
        deadline = asyncio.get_running_loop().time() + self.config.recalc_budget_ms / 1000
        req = wire.parse_recalc(body)
        found = await self._link(ctx, req.agent)
        result = None
        if found is not None:
            result = await self._calc(ctx, req, CustomerId(IdKind.CUSTOMER_ID, found[0]))
        else:
            mapping.calc_receipt(req, None, 0, False, now=self.now())  # bounds checked all the same
            ctx.count("calc")
        # what the sale of these goods commits with: kept when it says something the sale does not
        # (points redeemed, the core's hold, the offline flag), as the pipeline's own calc memory;
        # an online earning answer's token would change nothing, and a durable write per item change
        # is not free
        says = result is not None and bool(result.redeemed_points or result.hold_id or result.offline)
        token = result.token if result is not None and says else ""
        # the receipt names the customer by what the cashier knows (masked): phone, else card
        phone = (found[1] if found else "") or req.agent.phone
        shown = (
            CustomerId(IdKind.PHONE, mapping.phone_key(phone))  # digits: slip masks all but the last four
            if phone
            else CustomerId(IdKind.CARD, req.agent.card)
            if req.agent.card
            else None if result is None else result.customer
        )
        if result is not None and not result.customer_found:
            result = None
        balance = 0 if result is None or result.balance is None else result.balance
        answer = mapping.recalc_answer(
            req,
            result,
            balance=balance,
            need_code=self.config.codes_for_spending,
            extra_info="" if result is None else slip.slip_text(shown, result, print_balance=False),
        )
        key = mapping.calc_key(req.store, req.agent, req.positions)
        if key and token:
            await self._keep_token(ctx, key, token, deadline)
        return self._answer(200, wire.render_recalc(req.agent_echo, answer))

    async def _keep_token(self, ctx: DriverContext, key: str, token: str, deadline: float) -> None:
        """Add ``token`` to those kept under ``key``, waiting until ``deadline`` less what answering
        takes (loop time; the recalc's budget): a write still going on then continues in the
        background and the recalc is answered without waiting (WARNING); a sale of these goods
        takes the key's lock, so it waits for that write. Never raises for storage trouble."""
        write = asyncio.ensure_future(self._add_token(ctx, key, token))
        self._writes.add(write)  # held until done, even when the answer leaves first
        write.add_done_callback(self._writes.discard)
        left = deadline - ANSWER_RESERVE_S - asyncio.get_running_loop().time()
        done, _ = await asyncio.wait({write}, timeout=max(0.0, left))
        if done:
            write.result()  # a bug is not swallowed; storage trouble was logged by _add_token
            return
        ctx.log.warning(
            "recalc answered before its calc token was kept",
            extra={
                "driver": NAME,
                "state_key": key,
                "action": "the write goes on and a sale of these goods waits for it; if it fails the sale "
                "is checked without a token (spending refused 412)",
            },
        )

    async def _add_token(self, ctx: DriverContext, key: str, token: str) -> None:
        try:
            async with self._exclusive(key):
                kept = mapping.calc_tokens(await ctx.state.get(key))
                await ctx.state.put(key, mapping.kept_tokens([*kept, token]), keep_s=CALC_KEEP_S)
        except GatewayError as exc:
            ctx.count("storage_error")
            ctx.log.warning(
                "recalc answered without keeping its calc token",
                extra={
                    "driver": NAME,
                    "state_key": key,
                    "error": str(exc) or type(exc).__name__,
                    "action": "the sale of these goods is checked without a token: spending refused "
                    "(412), a sale spending nothing stored as answered online; check the state store",
                },
            )

    # ------------------------------------------------------------ sale and return

    async def _ledger(self, ctx: DriverContext, key: str) -> dict[str, Any]:
        """A state value kept as ``{document key: what that document took}``."""
        raw = await ctx.state.get(key)
        return dict(json.loads(raw)) if raw else {}

    async def _record(
        self, ctx: DriverContext, key: str, document: str, value: object, *, keep_s: float | None = None,
    ) -> None:
        """Set ``document``'s entry of the ledger ``key`` (idempotent; one writer per ledger at a time);
        ``keep_s`` as for ``ctx.state.put`` (None: kept, as a gift card's money must be)."""
        async with self._exclusive(key):
            entries = await self._ledger(ctx, key)
            if entries.get(document) != value:
                entries[document] = value
                await ctx.state.put(key, json.dumps(entries, sort_keys=True), keep_s=keep_s)

    async def _known(self, ctx: DriverContext, key: str, digest: str) -> str:
        """ "new", "same" (stored under ``key`` with this content) or "other" (another content)."""
        stored = await ctx.state.get(f"doc:{key}")
        return "new" if stored is None else "same" if stored == digest else "other"

    async def _conflict(self, ctx: DriverContext, event: Event) -> web.Response:
        """A resend under a stored key with other content: the copy goes to the outbox, which keeps
        it in the operator queue as RECEIPT_CONFLICT (counted as a conflict there); MoySklad gets 409."""
        await ctx.submit(event)
        ctx.log.warning(
            "document resent with other content",
            extra={"driver": NAME, "key": event.key, "action": "refused_409_operator_queue"},
        )
        raise Refused(
            409,
            "Документ уже зарегистрирован с другими данными",
            "Этот документ уже получен с другим содержимым: изменения не приняты",
        )

    async def _calc_of(
        self, ctx: DriverContext, key: str, spend: int
    ) -> tuple[list[str], str, CalcClaims | None]:
        """(the tokens kept under ``key`` that verify, the one this sale commits with, its claims):
        the recalcs of this sale's goods (:func:`mapping.calc_key`), chosen by :func:`mapping.pick`;
        no token when none was kept or none verifies (the gateway's key file was replaced: the sale
        grants nothing the gateway cannot vouch for)."""
        kept = mapping.calc_tokens(await ctx.state.get(key)) if key else []
        claims: list[CalcClaims | None] = []
        for token in kept:
            try:
                claims.append(ctx.calc_claims(token))
            except BadInput:
                claims.append(None)
        if None in claims:
            ctx.log.warning(
                "the calc kept for a sale does not verify",
                extra={
                    "driver": NAME, "state_key": key, "action": "not used; spending refused without another",
                },
            )
        at = mapping.pick([None if c is None else c.redeemed for c in claims], spend)
        valid = [t for t, c in zip(kept, claims, strict=True) if c is not None]
        return (valid, "", None) if at is None else (valid, kept[at], claims[at])

    async def _sale_customer(
        self, ctx: DriverContext, doc: wire.Document, claims: CalcClaims | None
    ) -> CustomerId | None:
        """The customer the sale is committed for: the one its recalc priced it for (the calc
        token's, so the pipeline applies the token: hold, offline flag), else the linked one.
        Spending is allowed up to what that recalc redeemed and, with ``codes_for_spending``, only
        after a code was sent to the customer's phone (the till compares the code itself)."""
        if doc.agent is None:
            if doc.spend:
                raise Refused(412, "Списание без покупателя", "В продаже со списанием баллов нет покупателя")
            return None
        if claims is not None and claims.customer is not None:
            customer: CustomerId | None = claims.customer
            allowed = claims.redeemed
        else:
            found = await self._link(ctx, doc.agent)
            if found is None and doc.spend:
                raise Refused(412, "Покупатель не найден", "Покупатель не зарегистрирован: баллы не списаны")
            customer = None if found is None else CustomerId(IdKind.CUSTOMER_ID, found[0])
            allowed = 0
        if not doc.spend:
            return customer
        if doc.spend > allowed:
            raise Refused(
                412,
                "Недостаточно бонусных баллов",
                f"Списание {doc.spend} больше разрешённого расчётом ({allowed})",
            )
        if self.config.codes_for_spending:
            found = await self._link(ctx, doc.agent)
            phone = (found[1] if found else "") or doc.agent.phone  # linked by card: the sale's phone
            code = await ctx.state.get(f"code:{mapping.phone_key(phone)}") if phone else None
            if not code:
                raise Refused(
                    412, "Списание не подтверждено", "Код подтверждения не запрашивался или устарел"
                )
        return customer

    def _gift_check(self, doc: wire.Document, spent: Mapping[str, int]) -> None:
        cards = {c.name: c for c in self.config.gift_cards}
        for i, pay in enumerate(doc.gift_cards):
            card = cards.get(pay.name)
            if card is None or card.id != pay.card_id:
                raise BadInput("unknown gift card", f"giftCards[{i}].name")
            if pay.kopecks > card.initial_kopecks - spent.get(pay.name, 0):
                raise BadInput("more than the gift card's balance", f"giftCards[{i}].paymentSum")

    async def _sale(self, ctx: DriverContext, body: bytes) -> web.Response:
        doc = wire.parse_sale(body)
        key = mapping.document_key("demand", doc)
        digest = mapping.digest(doc)
        known = await self._known(ctx, key, digest)
        if known == "new":
            spent = {}
            for g in doc.gift_cards:  # what other sales paid with the card (this one may be a resend)
                paid = await self._ledger(ctx, f"gift:{g.name}")
                spent[g.name] = sum(v for k, v in paid.items() if k != key)
            self._gift_check(doc, spent)
            calc_key = mapping.calc_key(doc.store, doc.agent, doc.positions)
            # a token is chosen and used by one sale at a time; a resend of a document still in
            # flight (same content: same calc key) waits here and finds it stored
            async with self._exclusive(calc_key or f"doc:{key}"):
                known = await self._known(ctx, key, digest)
                if known == "new":
                    await self._commit(ctx, doc, key, digest, calc_key)
                    return self._answer(201)
        if known == "same":
            ctx.count("duplicate")
            return self._answer(201)
        found = None if doc.agent is None else await self._link(ctx, doc.agent)
        who = None if found is None else CustomerId(IdKind.CUSTOMER_ID, found[0])
        return await self._conflict(
            ctx, mapping.sale_of(doc, who, key=key, now=self.now(), store_id=self.config.store_id)
        )

    async def _commit(
        self, ctx: DriverContext, doc: wire.Document, key: str, digest: str, calc_key: str
    ) -> None:
        """Check and store the sale ``doc`` (idempotency key ``key``) with the calc token chosen
        among those kept under ``calc_key``, then its bookkeeping. The token a stored sale used is
        written as ``used:<key>`` before it is removed from ``calc_key`` and before ``doc:`` is
        written: a resend after an interrupted answer commits with that same token again (never
        choosing another till's) and completes the bookkeeping once."""
        kept, token, claims = await self._calc_of(ctx, calc_key, doc.spend)
        used = await ctx.state.get(f"used:{key}") if calc_key else None
        if used is not None:  # this document was stored with that token before
            token = used
            try:
                claims = ctx.calc_claims(used)
            except BadInput:  # the gateway's key file was replaced since: as a token that fails
                token, claims = "", None
        customer = await self._sale_customer(ctx, doc, claims)
        event = mapping.sale_of(doc, customer, key=key, now=self.now(), store_id=self.config.store_id)
        if claims is not None and not (claims.redeemed and not doc.spend):
            # the pipeline verifies the token and applies it: the recalc's hold is consumed by
            # this sale, an offline recalc's redemption kept. A recalc that spent, followed by a
            # sale spending nothing, is not the calc the till applied: committed without it (and
            # the token stays for the sale it belongs to, another till's).
            event = dataclasses.replace(event, calc_token=token)
        new = await ctx.submit(event)
        ctx.count("committed" if new else "duplicate")
        # bookkeeping keyed by the document, so a resend after an interrupted answer completes it once
        if event.calc_token and used is None:
            await ctx.state.put(f"used:{key}", token, keep_s=self.keep_s)
        for g in doc.gift_cards:
            await self._record(ctx, f"gift:{g.name}", key, g.kopecks)
        await ctx.state.put(f"sale:{key}", mapping.goods(doc.positions).as_json(), keep_s=self.keep_s)
        if event.calc_token and token in kept:  # used once, as the pipeline's own calc memory
            kept.remove(token)
            await ctx.state.put(calc_key, mapping.kept_tokens(kept), keep_s=CALC_KEEP_S)
        await ctx.state.put(f"doc:{key}", digest, keep_s=self.keep_s)

    async def _return(self, ctx: DriverContext, body: bytes) -> web.Response:
        doc = wire.parse_return(body)
        key = mapping.document_key("return", doc)
        digest = mapping.digest(doc)
        known = await self._known(ctx, key, digest)
        if known == "same":
            ctx.count("duplicate")
            return self._answer(201)
        if not doc.demand_id:
            ctx.count("ignored")  # no points data and no sale named: nothing to take back
            ctx.log.warning(
                "return names no sale: no points taken back",
                extra={"driver": NAME, "key": key, "action": "adjust the customer's points by hand"},
            )
            return self._answer(201)
        sale_key = mapping.document_key("demand", wire.Document(doc.store, doc.demand_id, "", "", None, ()))
        asked = mapping.goods(doc.positions)
        if known == "other":
            all_lines = {k: q for k, (_, q, _) in asked.lines.items()}
            return await self._conflict(
                ctx, mapping.refund_of(doc, sale_key, all_lines, key=key, now=self.now())
            )
        sold_raw = await ctx.state.get(f"sale:{sale_key}")
        returns = await self._ledger(ctx, f"returned:{sale_key}")  # return key -> {line: quantity}
        lines: dict[str, int] | None = returns.get(key)  # this return, recorded before an interrupted answer
        if lines is None:
            before: dict[str, int] = {}
            for taken in returns.values():
                for line_id, qty in taken.items():
                    before[line_id] = before.get(line_id, 0) + qty
            # a sale this gateway never stored (sold before it was installed): the core caps the return
            sold = asked if sold_raw is None else mapping.Goods.from_json(sold_raw)
            lines = mapping.returned_lines(doc, sold, before)
            self._capped(ctx, doc, key, sale_key, asked, lines, before)
        if not lines:  # nothing left to take back: 201 all the same (see _capped), nothing stored
            await ctx.state.put(f"doc:{key}", digest, keep_s=self.keep_s)
            return self._answer(201)
        new = await ctx.submit(mapping.refund_of(doc, sale_key, lines, key=key, now=self.now()))
        ctx.count("committed" if new else "duplicate")
        await self._record(ctx, f"returned:{sale_key}", key, lines, keep_s=self.keep_s)
        await ctx.state.put(f"doc:{key}", digest, keep_s=self.keep_s)
        return self._answer(201)

    def _capped(
        self,
        ctx: DriverContext,
        doc: wire.Document,
        key: str,
        sale_key: str,
        asked: mapping.Goods,
        taken: Mapping[str, int],
        before: Mapping[str, int],
    ) -> None:
        """Make a return that asks back more than its sale has left visible (once, when it is first
        handled): counted as ``bad_input`` and logged at WARNING with what was asked, taken and
        returned before. It is still answered 201: the return already happened in MoySklad, no
        points field of it is ours to refuse, an error cannot undo it (what the till does with one
        is undocumented; the cloud may resend a document we would refuse forever), and the
        protocol notes (§6.8, the demo's ledger) cap at the sale and answer 201."""
        over = {k: q for k, (_, q, _) in asked.lines.items() if taken.get(k, 0) < q}
        if not over:
            return
        ctx.count("bad_input")
        ctx.log.warning(
            "return capped at its sale: nothing left to take back"
            if not taken
            else "return capped at its sale: more asked back than the sale has left",
            extra={
                "driver": NAME,
                "key": key,
                "document_id": doc.doc_id or doc.name,
                "sale_key": sale_key,
                "asked_milli": json.dumps(over, sort_keys=True),
                "taken_milli": json.dumps({k: taken.get(k, 0) for k in over}, sort_keys=True),
                "returned_before_milli": json.dumps({k: before.get(k, 0) for k in over}, sort_keys=True),
                "action": "answered 201; check the return in MoySklad (returned twice, or goods not sold)",
            },
        )

    # ------------------------------------------------------------ gift cards

    async def _gift_card(self, ctx: DriverContext, params: Mapping[str, str]) -> web.Response:
        wire.query(params, "retailStoreId")
        name = wire.query(params, "name", limit=64).strip()
        card = next((c for c in self.config.gift_cards if c.name == name), None)
        if card is None:
            raise Refused(404, "Сертификат не найден", f"Сертификата {name} нет в программе")
        spent = sum((await self._ledger(ctx, f"gift:{name}")).values())
        current = max(0, card.initial_kopecks - spent)
        now = self.now().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        status = (
            "EXPIRED"
            if card.expires and card.expires <= now
            else "REDEEMED"
            if current == 0
            else "PARTIALLY_REDEEMED"
            if spent
            else "CAN_BE_USED"
        )
        return self._answer(
            200,
            wire.render_gift_card(card.name, card.id, status, card.expires, current, card.initial_kopecks),
        )


def create(options: Mapping[str, Any]) -> MoySkladDriver:
    """The registry factory: ``options`` is the ``[drivers.moysklad]`` section without ``enabled``."""
    return MoySkladDriver(Config.model_validate(dict(options)))


def check(options: Mapping[str, Any]) -> list[Finding]:
    """What the Config cannot say alone: a token to check MoySklad's requests against, gift card
    numbers that name one card each."""
    try:
        cfg = Config.model_validate(dict(options))
    except Exception as exc:  # the loader reports it in detail; here one finding
        return [Finding("FAIL", "", f"invalid section: {exc}", "see drivers/moysklad/sample.toml")]
    out = []
    if not any(http_edge.secret_value(t) for t in cfg.tokens) and not cfg.tokens_file:
        out.append(
            Finding(
                "FAIL",
                "tokens",
                "no token: every request from MoySklad would be refused (401)",
                "run `posgw moysklad register --token-file FILE ...` and set tokens_file to FILE",
            )
        )
    names = [c.name for c in cfg.gift_cards]
    for name in sorted({n for n in names if names.count(n) > 1}):
        out.append(
            Finding(
                "FAIL",
                "gift_cards",
                f"gift card {name} is listed twice",
                "keep one entry per certificate number",
            )
        )
    return out
