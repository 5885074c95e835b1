"""A MoySklad day, as MoySklad's cloud plays it against a loyalty system (protocol notes §7).

One new customer registers with a code; an earning sale (recalc repeated while items change);
a spending sale with a code (null preference: the maximum) whose positions need a split; a sale
paid partly by a gift certificate; a partial then a full return (the return's agent flat), the
full one sent twice; the earning sale resent. Misbehaviour: a request with a wrong token, empty
document ids (the fallback key), the preference inside ``bonusProgram``, a sale the cloud gives up
on twice (2 ms timeouts) and then sends again (its points and gift card counted once), two tills
recalculating the same basket for the same customer and both selling it (each sale spends what
its own recalc allowed).

Every answer is checked as the till would apply it: statuses, the errors shape, Σ discountedPrice
× quantity = Σ price × quantity − paidByBonusPoints to the kopeck, split parts adjacent with
quantities adding up, balance after = balance − spend + earn, and the balance the loyalty system
shows once each sale was applied (polled: sales are applied asynchronously). :class:`Report`
lists every problem; an empty list means everything sent was applied.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from simulators.registers.moysklad.cloud import Cloud, Item, Reply

GIFT = ("8b9c0d1e-2f3a-4b5c-9d6e-7f8a9b0c1d2e", "GC-100500")


@dataclass
class Report:
    sent: int = 0
    applied: int = 0  # documents and customers the loyalty system accepted (2xx)
    problems: list[str] = field(default_factory=list)
    balances: list[tuple[str, int | None]] = field(default_factory=list)  # (step, balance seen or None)
    queued: int = -1  # rows of ours in the gateway's operator queue (-1: not asked)
    recalcs: dict[str, Any] = field(default_factory=dict)  # step -> the recalc answer the till applied

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.problems.append(what)
        return ok


def _kop(value: Any) -> int:
    return int((Decimal(str(value)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _milli(value: Any) -> int:
    return int((Decimal(str(value)) * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _plus(balance: int | None, delta: int) -> int | None:
    """The balance expected after ``delta`` points; None (not checked) when the last was not shown."""
    return None if balance is None else balance + delta


def answer_problems(items: list[Item], reply: Reply) -> list[str]:
    """What is wrong with a recalc answer as the till applies it."""
    if reply.status != 200 or not isinstance(reply.data, dict):
        return [f"recalc answered {reply.status} {reply.data}"]
    out: list[str] = []
    positions = reply.data.get("positions", [])
    program = reply.data.get("bonusProgram", {})
    by_product: dict[str, int] = {}
    order: list[str] = []
    gross = payable = 0
    for pos in positions:
        pid = pos["assortment"]["meta"]["id"]
        if order and order[-1] != pid and pid in order:
            out.append(f"split parts of {pid} are not adjacent")
        if not order or order[-1] != pid:
            order.append(pid)
        q, price, disc = _milli(pos["quantity"]), _kop(pos["price"]), _kop(pos["discountedPrice"])
        if not 0 <= disc <= price or not 0 <= Decimal(str(pos["discountPercent"])) <= 100:
            out.append(f"position {pid}: discounted price {disc} outside 0..{price}")
        by_product[pid] = by_product.get(pid, 0) + q
        gross += (price * q + 500) // 1000
        payable += (disc * q + 500) // 1000
    for item in items:
        if by_product.get(item.product) != item.quantity:
            out.append(
                f"position {item.product}: quantities {by_product.get(item.product)} != {item.quantity}"
            )
    if [i.product for i in items] != order:
        out.append("positions not in the request's order")
    if gross - payable != _kop(program.get("paidByBonusPoints", 0)):
        out.append(f"payable {payable} + paidByBonusPoints {program.get('paidByBonusPoints')} != {gross}")
    after = (
        program.get("agentBonusBalance", 0)
        - program.get("bonusValueToSpend", 0)
        + program.get("bonusValueToEarn", 0)
    )
    if program.get("agentBonusBalanceAfter") != after:
        out.append(f"agentBonusBalanceAfter {program.get('agentBonusBalanceAfter')} != {after}")
    return out


@dataclass
class Day:
    cloud: Cloud
    phone: str  # the new customer's phone, +7XXXXXXXXXX
    report: Report = field(default_factory=Report)
    settle_s: float = 10.0  # how long a sale may take to be applied before its balance is a problem
    now: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(hours=3))  # Moscow wall clock

    def moment(self, step: int) -> str:
        """The till's time of the day's ``step``-th document: the last minute (never in the future:
        a sale stamped ahead earns points the balance shows only later; nor long before the code
        that confirmed it)."""
        return (self.now - timedelta(seconds=60 - step)).strftime("%Y-%m-%d %H:%M:%S")

    async def _balance(self, who: dict[str, Any], expected: int | None, step: str) -> int | None:
        """The balance shown for ``who`` (None: not shown); with ``expected``, polled until it is
        that (applied)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.settle_s
        while True:
            reply = await self.cloud.detail(who)
            seen = reply.data["bonusProgram"]["agentBonusBalance"] if reply.status == 200 else None
            refused = reply.status in (400, 401, 403, 404)  # for good: no point asking again
            if expected is None or seen == expected or refused or loop.time() > end:
                break
            await asyncio.sleep(0.05)
        self.report.check(reply.status == 200, f"{step}: balance answered {reply.status} {reply.data}")
        if expected is not None:
            self.report.check(seen == expected, f"{step}: balance {seen}, expected {expected}")
        self.report.balances.append((step, None if seen is None else int(seen)))
        return None if seen is None else int(seen)

    async def _ok(self, reply: Reply, status: tuple[int, ...], what: str) -> bool:
        ok = self.report.check(reply.status in status, f"{what}: answered {reply.status} {reply.data}")
        if ok and 200 <= reply.status < 300 and what.startswith(("sale", "return", "create")):
            self.report.applied += 1
        return ok

    async def run(self) -> Report:
        c, r = self.cloud, self.report
        ms_id, name = c.uuid(), "Петрова Анна"
        who = c.counterparty(ms_id, self.phone, name)
        # -- misbehaviour: a wrong token is refused in the errors shape
        bad = await c.call("POST", "/counterparty/detail", {"retailStore": c.store(), **who}, token="wrong")
        r.check(bad.status == 401 and bool(bad.errors()), f"wrong token: answered {bad.status} {bad.data}")
        # -- registration with a code
        first = await c.create(who, "UNCHECKED")
        if r.check(
            first.status == 412 and bool(first.errors()) and first.errors()[0].get("code") == 28001,
            f"create UNCHECKED: expected 412/28001, got {first.status} {first.data}",
        ):
            code = await c.registration_code(c.uuid(), self.phone, name)
            if r.check(
                code.status == 200 and bool(code.data.get("verificationCode")),
                f"registration code: answered {code.status} {code.data}",
            ):
                await self._ok(await c.create(who, "CHECKED"), (200, 201, 204), "create CHECKED")
                await self._ok(await c.create(who, "CHECKED"), (200, 201, 204), "create resent")
        ten = self.phone[-10:]  # the cashier types the phone in any spelling: each finds the customer
        eight = f"8 ({ten[:3]}) {ten[3:6]}-{ten[6:8]}-{ten[8:]}"
        for typed in (ten, eight, f"+7 {ten[:3]} {ten[3:]}", "7" + ten):
            found = await c.search(typed)
            r.check(
                found.status == 200 and len(found.data.get("rows", [])) == 1,
                f"search {typed!r}: {found.status} {found.data}",
            )
        balance = await self._balance(who, None, "registered")
        # -- earning: recalc repeated while items change, then the sale, then the sale resent
        items = [Item(c.uuid(), 12990, 1000)]
        await c.recalc(who, items)
        items = [*items, Item(c.uuid(), 4550, 2000), Item(c.uuid(), 100000, 1000, kind="service")]
        earn_calc = await c.recalc(who, items)
        r.recalcs["earning"] = earn_calc.data
        r.problems += answer_problems(items, earn_calc)
        earn = earn_calc.data["bonusProgram"]["bonusValueToEarn"] if earn_calc.status == 200 else 0
        sale_id = c.uuid()
        body = c.sale_body(
            sale_id, "00001", self.moment(1), who, earn_calc.data.get("positions", []), 0, earn, 122090
        )
        await self._ok(await c.sale(body), (200, 201, 204), "sale earning")
        await self._ok(await c.sale(body), (200, 201, 204), "sale earning resent")
        balance = await self._balance(who, _plus(balance, earn), "after earning")
        # -- spending with a code, a position that needs a split (3 x 100.00)
        spend_items = [Item(c.uuid(), 10000, 3000), Item(c.uuid(), 7777, 1000)]
        spend_calc = await c.recalc(who, spend_items, spending=True, preferred=None)
        r.recalcs["spending"] = spend_calc.data
        r.problems += answer_problems(spend_items, spend_calc)
        program = spend_calc.data.get("bonusProgram", {}) if isinstance(spend_calc.data, dict) else {}
        spend, earn2 = program.get("bonusValueToSpend", 0), program.get("bonusValueToEarn", 0)
        r.check(spend > 0, f"spending recalc offered nothing: {spend_calc.data}")
        if spend_calc.status == 200 and spend_calc.data.get("needVerification"):
            code = await c.spending_code(c.uuid(), self.phone)
            r.check(
                code.status == 200 and bool(code.data.get("verificationCode")),
                f"spending code: answered {code.status} {code.data}",
            )
        spend_sale = c.sale_body(
            "",
            "00002",
            self.moment(2),
            who,
            spend_calc.data.get("positions", []),
            spend,
            earn2,
            37777 - spend * 100,
        )  # an empty document id: the fallback key
        await self._ok(await c.sale(spend_sale), (200, 201, 204), "sale spending")
        balance = await self._balance(who, _plus(balance, earn2 - spend), "after spending")
        # -- a gift certificate pays part of a sale; the preference inside bonusProgram (Q1), zero
        card = await c.gift_card(GIFT[1])
        if r.check(
            card.status == 200 and card.data.get("status") == "CAN_BE_USED",
            f"gift card: {card.status} {card.data}",
        ):
            gift_items = [Item(c.uuid(), 150000, 1000)]
            gift_calc = await c.recalc(who, gift_items, spending=True, preferred=0, where="program")
            r.problems += answer_problems(gift_items, gift_calc)
            earn3 = gift_calc.data["bonusProgram"]["bonusValueToEarn"] if gift_calc.status == 200 else 0
            paid = min(100000, card.data.get("currentBalance", 0))
            body = c.sale_body(
                c.uuid(),
                "00003",
                self.moment(3),
                who,
                gift_calc.data.get("positions", []),
                0,
                earn3,
                150000 - paid,
                gift=(GIFT[0], GIFT[1], paid),
            )
            await c.sale(body, timeout_s=0.002)  # misbehaviour: the cloud gives up at once (twice)...
            await self._ok(await c.sale(body), (200, 201, 204), "sale with gift card")  # ...and resends
            after = await c.gift_card(GIFT[1])
            r.check(
                after.status == 200
                and after.data.get("currentBalance", 0) == card.data.get("currentBalance", 0) - paid,
                f"gift card after the sale: {after.data}",
            )
            balance = await self._balance(who, _plus(balance, earn3), "after gift card")
        # -- two tills price the same basket for the customer (neither body says which till), each
        #    spending 10 points; both sales pass, each spending what its own recalc allowed
        twin_items = [Item(c.uuid(), 5000, 2000)]
        twins = [await c.recalc(who, twin_items, spending=True, preferred=10) for _ in range(2)]
        for i, twin in enumerate(twins):
            r.problems += answer_problems(twin_items, twin)
            program = twin.data.get("bonusProgram", {}) if isinstance(twin.data, dict) else {}
            spent, earned = program.get("bonusValueToSpend", 0), program.get("bonusValueToEarn", 0)
            r.check(spent == 10, f"two tills: recalc {i + 1} offered {spent}, not the 10 asked: {twin.data}")
            body = c.sale_body(
                c.uuid(), f"0000{4 + i}", self.moment(4 + i), who, twin.data.get("positions", []),
                spent, earned, 10000 - spent * 100,
            )
            await self._ok(await c.sale(body), (200, 201, 204), f"sale two tills {i + 1}")
            balance = _plus(balance, earned - spent)
        balance = await self._balance(who, balance, "after two tills")
        # -- returns of the earning sale: partial, then the rest (sent twice: a repeated return)
        part = [Item(items[1].product, items[1].price, 1000)]
        await self._ok(
            await c.sales_return(c.uuid(), sale_id, self.moment(10), who, part),
            (200, 201, 204),
            "return partial",
        )
        rest = [
            Item(items[0].product, items[0].price, 1000),
            Item(items[1].product, items[1].price, 1000),
            items[2],
        ]
        full_id = c.uuid()
        await self._ok(
            await c.sales_return(full_id, sale_id, self.moment(11), who, rest), (200, 201, 204), "return full"
        )
        await self._ok(
            await c.sales_return(full_id, sale_id, self.moment(11), who, rest),
            (200, 201, 204),
            "return full resent",
        )
        # the whole earning sale is back: what it earned is taken back exactly, nothing else moves
        await self._balance(who, _plus(balance, -earn), "after returns")
        r.sent = c.sent
        return r
