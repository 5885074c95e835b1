"""Calculate latency through every vendor driver, against the native driver, in one gateway process.

Run: ``.venv/bin/python bench/drivers_bench.py [--quick]`` (``make bench``; not collected by pytest).

Processes on 127.0.0.1: the stub core of :mod:`bench_servers` (the one ``gateway_bench.py``
measures the native calc against), started through this script so its Calculate *discounts*:
12 % of the receipt redeemed as points, spread over the lines to the kopeck (so every driver
maps a real answer: Evotor's position map, Modul Kassa's split impacts, Poster's bonus); and one
gateway (``posgw run``) with the native, evotor, modulkassa and poster drivers enabled, talking
to the core directly. This process is the only client (one aiohttp session, keep-alive).

Every driver gets the same receipt (5 lines: 3 piece goods, 2 weighed; the customer known by
phone; "redeem the maximum") in its own wire shape, built once per driver with a placeholder
id that is replaced per request (a fresh receipt uuid / request id / order id each time), so
client-side JSON encoding stays out of the timing. The first answer of each driver is checked
(online, with the discount applied: not a ``skip``, identity impacts or a zero bonus), so a
driver that short-circuits cannot look fast.

Timing: sequential requests, send to last byte read, in interleaved rounds (a block per driver
per round, the order rotated every round) so machine noise hits all drivers alike; bounded by
``Sizes.budget_s``. Figures, one JSON line each ``{"figure", "value", "baseline", "ratio",
"goal", "met"}``:

- ``calc_p50_<driver>_vs_native``: the driver's p50 in ms ÷ the native driver's p50 in the same
  run; goal 1.2 (issue 5: "within 1.2× the native driver's p50"), ``met`` = ratio ≤ 1.2;
- ``calc_p99_<driver>_vs_native``: the same for p99, reported only (``goal`` and ``met`` null).

The onec driver (1C / Manzana SOAP) is measured the same way with a Soft ``ChequeRequest`` (the
first calc of every receipt: ``PaidByBonus`` 0, the card a phone) and its own goal, 1.5
(:data:`GOALS`: XML costs more than JSON; issue 14).

The moysklad driver (MoySklad's Loyalty API, issue 16) is measured with ``POST
/retaildemand/recalc`` (SPENDING, no preference: the maximum) for a counterparty it knows by
phone; its goal is 1.5 too (:data:`GOALS`): a recalc also reads the counterparty's link and
durably remembers what it allowed (the sale is checked against it), two driver-state calls the
native calc does not make.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
import bench_cli  # noqa: E402

from simulators.registers.common import Num, dumps, line_sum, qty_text, rubles  # noqa: E402
from simulators.registers.evotor.messages import Device, EvReceipt, Position  # noqa: E402
from simulators.registers.modulkassa.messages import MkPosition, request_body  # noqa: E402
from simulators.registers.native.report import percentile  # noqa: E402
from simulators.stack import Stack, StackOptions  # noqa: E402

GOAL = 1.2
GOALS = {"onec": 1.5, "moysklad": 1.5}  # a driver's own p50 goal when it is not GOAL
DRIVERS = ("native", "evotor", "modulkassa", "poster", "onec", "moysklad")
VENDORS = DRIVERS[1:]
PHONE = "+79990000001"
ID = "424242424242"  # placeholder in every template, replaced by a 12-digit number per request
API_KEY, TOKEN, SECRET = "bench-key", "bench-pairing-token", "bench-poster-secret"
ONEC_BASIC = "MWM6YmVuY2gtb25lYy1wYXNzd29yZA=="  # base64 of 1c:bench-onec-password


@dataclass(frozen=True)
class Sizes:
    warmup: int  # per driver
    block: int  # requests per driver per round
    rounds: int  # at most; fewer when budget_s runs out (at least min_rounds)
    min_rounds: int
    budget_s: float  # measured phase


FULL = Sizes(warmup=300, block=50, rounds=60, min_rounds=10, budget_s=60.0)
QUICK = Sizes(warmup=5, block=5, rounds=2, min_rounds=2, budget_s=10.0)


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    price: int  # kopecks per unit (per kg when weighted)
    qty_milli: int
    weighted: bool

    @property
    def amount(self) -> int:
        return line_sum(self.price, self.qty_milli)


RECEIPT = (
    Item("4600001", "Молоко 3,2% 1 л", 8990, 2000, False),
    Item("4600010", "Хлеб Бородинский", 5490, 1000, False),
    Item("4600123", "Сыр Российский весовой", 89900, 356, True),
    Item("4600200", "Кофе молотый 250 г", 34900, 3000, False),
    Item("4600300", "Яблоки Гала", 12990, 1245, True),
)


# ---------------------------------------------------------------- the core


def discounted(draft: Any) -> Any:
    """The stub core's Calculate with a redemption: 12 % of the gross as points, spread by amount."""
    from gateway.core_pb.loyalty.v1 import loyalty_pb2 as pb

    amounts = [line.amount for line in draft.lines]
    gross = sum(amounts)
    redeemed = gross * 12 // 100  # 12 %: the milk line does not divide evenly (split)
    shares = [redeemed * a // gross if gross else 0 for a in amounts]
    order = sorted(range(len(amounts)), key=lambda i: -(redeemed * amounts[i] % max(gross, 1)))
    for i in order[: redeemed - sum(shares)]:  # largest remainders take the leftover kopecks
        shares[i] += 1
    payable = gross - redeemed
    return pb.CalculateResponse(
        customer_id="1", tier="1", gross=gross, redeemable_base=gross, max_points=redeemed,
        redeemed_ordinary=redeemed, payable=payable, points_to_accrue=payable * 3 // 100 // 100,
        balance_before=150_000, balance_after=150_000 - redeemed + payable * 3 // 100 // 100,
        display_name="Bench B.",
        lines=[pb.LineResult(line_id=line.line_id, discount=s, paid=line.amount - s, accrues=True)
               for line, s in zip(draft.lines, shares, strict=True)],
    )


def serve_core(port: int) -> None:
    """``bench_servers``' stub core with :func:`discounted` as its Calculate (its own process)."""
    import signal

    import bench_servers

    if not callable(getattr(bench_servers, "calculation", None)):  # fail loudly if the hook moves
        raise SystemExit("bench_servers.calculation is gone: update drivers_bench.serve_core")
    bench_servers.calculation = discounted  # StubCore.Calculate calls the module-level function

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await bench_servers.serve_stub_core(port, None, stop)

    asyncio.run(run())


# ---------------------------------------------------------------- one request per driver


@dataclass(frozen=True)
class Target:
    driver: str
    url: str
    headers: dict[str, str]
    template: bytes  # contains ID where the per-request id goes
    answered: Callable[[Any], bool]  # the answer carries our discount (checked on the first one)
    parse: Callable[[bytes], Any] = json.loads  # the answer body as ``answered`` reads it

    def body(self, n: int) -> bytes:
        return self.template.replace(ID.encode(), str(10**11 + n).encode())  # 12 digits, no leading 0


def native_body() -> bytes:
    return dumps({
        "register_id": "bench-native", "receipt_number": ID, "shift": "bench",
        "customer": {"phone": PHONE}, "redeem_max": True,
        "lines": [{"line_id": str(i + 1), "sku": it.sku, "name": it.name, "price": it.price,
                   "qty_milli": it.qty_milli, "amount": it.amount} for i, it in enumerate(RECEIPT)],
    })


def evotor_body() -> bytes:
    device = Device("20240101-0000-4000-8000-0000000000b1", "20240101-0000-4000-8000-0000000000d1", "01-1")
    positions = tuple(
        Position(uuid=f"6f1c2d3e-0000-4000-8000-00000000000{i + 1}",
                 product_uuid=f"6f1c2d3e-1111-4000-8000-{it.sku:0>12}", code=it.sku, name=it.name,
                 weighted=it.weighted, price=it.price, price_with_discount=it.price, qty_milli=it.qty_milli,
                 barcode=f"{it.sku:0>13}")
        for i, it in enumerate(RECEIPT)
    )
    receipt = EvReceipt(uuid=f"6f1c2d3e-4b5a-4c6d-8e7f-{ID}", device=device, session="12",
                        positions=positions, loyalty={"phone": PHONE, "redeem": "max"})
    return dumps(receipt.calc_body())


def modulkassa_body() -> bytes:
    positions = tuple(
        MkPosition(position_id=str(i + 1), invent_code=it.sku, barcode=f"{it.sku:0>13}", name=it.name,
                   weighted=it.weighted, price=it.price, qty_milli=it.qty_milli)
        for i, it in enumerate(RECEIPT)
    )
    loyalty = {"phone": PHONE, "redeem": "max", "docType": "SALE", "device": "bench-mk"}
    return dumps(request_body(f"req-{ID}", "point-1", "user-1", positions, loyalty))


def poster_body() -> bytes:
    total = sum(it.amount for it in RECEIPT)
    order = {
        "id": Num(ID), "orderName": "", "dateStart": Num(ID), "dateClose": 0, "status": 1, "userId": 4,
        "products": {str(i): {"id": Num(str(100 + i)), "price": Num(rubles(it.price)), "modification": 0,
                              "count": Num(qty_text(it.qty_milli, weighted=it.weighted))}
                     for i, it in enumerate(RECEIPT)},
        "subtotal": Num(rubles(total)), "total": Num(rubles(total)), "discount": 0, "payedBonus": 0,
        "loyaltyAppId": 0, "extras": {},
    }
    return dumps({
        "event": "beforeOrderClose",
        "settings": {"accountUrl": "bench-cafe", "spotId": 1, "spotTabletId": 3, "applicationId": "1234"},
        "loyalty": {"phone": PHONE, "redeem": "max"},
        "data": {"order": order},
    })


def onec_body() -> bytes:
    items = "".join(
        f"<Item><PositionNumber>{i + 1}</PositionNumber><Article>{it.sku}</Article>"
        f"<Price>{rubles(it.price)}</Price>"
        f"<Quantity>{qty_text(it.qty_milli, weighted=it.weighted)}</Quantity><Summ>{rubles(it.amount)}</Summ>"
        f"<Discount>0</Discount><SummDiscounted>{rubles(it.amount)}</SummDiscounted></Item>"
        for i, it in enumerate(RECEIPT))
    total = rubles(sum(it.amount for it in RECEIPT))
    return (
        '<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
        '<soap:Body><ProcessRequest xmlns="http://loyalty.manzanagroup.ru/loyalty.xsd"><request>'
        f'<ChequeRequest ChequeType="Soft"><RequestID>{ID}</RequestID>'
        f"<Card><MobilePhone>{PHONE}</MobilePhone></Card>"
        "<DateTime>2026-03-14T12:00:00+03:00</DateTime><Organization>ORG</Organization>"
        f"<BusinessUnit>SHOP1</BusinessUnit><POS>bench-1c</POS><Number>{ID}</Number><OperationType>Sale</OperationType>"
        f"<Summ>{total}</Summ><Discount>0</Discount><SummDiscounted>{total}</SummDiscounted><PaidByBonus>0</PaidByBonus>"
        f"{items}</ChequeRequest></request><orgName>ORG</orgName></ProcessRequest></soap:Body></soap:Envelope>"
    ).encode()


def onec_answer(raw: bytes) -> dict[str, str]:
    """The ChequeResponse's header fields (ReturnCode, WriteoffBonus, ...) of a SOAP answer."""
    from gateway import xml_fields

    node = xml_fields.parse(raw).find(".//{http://loyalty.manzanagroup.ru/loyalty.xsd}ChequeResponse")
    return {} if node is None else {xml_fields.name(c): c.text or "" for c in node if len(c) == 0}


def onec_ok(a: Any) -> bool:
    return a.get("ReturnCode") == "0" and Decimal(a.get("WriteoffBonus") or 0) > 0 and "CardBalance" in a


def moysklad_body() -> bytes:
    store = "6b1c0f2e-0b6a-11ef-0a80-0d6e00112233"
    remap = "https://api.moysklad.ru/api/remap/1.2/entity"
    return dumps({
        "retailStore": {"meta": {"href": f"{remap}/retailstore/{store}", "id": store}},
        "agent": {"meta": {"href": f"{remap}/counterparty/9a4e2d10-0b6b-11ef-0a80-0d6e00445566",
                           "id": "9a4e2d10-0b6b-11ef-0a80-0d6e00445566"}, "phone": PHONE},
        "positions": [{"assortment": {"meta": {"href": f"{remap}/product/{it.sku}", "id": it.sku,
                                               "idType": "native", "type": "product"}},
                       "quantity": Num(qty_text(it.qty_milli, weighted=it.weighted)),
                       "price": Num(rubles(it.price))} for it in RECEIPT],
        "bonusProgram": {"transactionType": "SPENDING"}, "preferredBonusToSpend": None,
        "name": ID,  # not read by the driver: keeps the per-request id replacement of the other targets
    })


def moysklad_ok(a: Any) -> bool:
    """Points paid something, and Σ discountedPrice × quantity pays less than the receipt."""
    paid = sum(Decimal(str(p["discountedPrice"])) * Decimal(str(p["quantity"]))
               for p in a.get("positions", []))
    return Decimal(str(a.get("bonusProgram", {}).get("paidByBonusPoints", 0))) > 0 and paid * 100 < _gross()


def _gross() -> int:
    return sum(it.amount for it in RECEIPT)


def native_ok(a: Any) -> bool:
    return a.get("offline") is False and a.get("payable", _gross()) < _gross()


def evotor_ok(a: Any) -> bool:
    return a.get("callback") == "onResult" and Decimal(str(a["result"]["discount"])) > 0


def modulkassa_ok(a: Any) -> bool:
    """Succeeded, and the impacts (final unit prices x quantities) pay less than the receipt."""
    data = a.get("data") or {}
    if a.get("result") != "succeeded" or not data.get("impacts"):
        return False
    paid = sum(Decimal(data[f"impact/{i}/price"]) * Decimal(data[f"impact/{i}/quantity"])
               for i in data["impacts"])
    return paid * 100 < _gross()


def poster_ok(a: Any) -> bool:
    return Decimal(str(a.get("bonus", 0))) > 0


def targets(base: str) -> list[Target]:
    json_ct = {"Content-Type": "application/json"}
    token = {**json_ct, "X-Gateway-Token": TOKEN}
    return [
        Target("native", base + "/v1/native/calculate", {**json_ct, "Authorization": f"Bearer {API_KEY}"},
               native_body(), native_ok),
        Target("evotor", base + "/v1/evotor/event", token, evotor_body(), evotor_ok),
        Target("modulkassa", base + "/v1/modulkassa/operation", token, modulkassa_body(), modulkassa_ok),
        Target("poster", base + "/v1/poster/pos-event", token, poster_body(), poster_ok),
        Target("onec", base + "/v1/onec/POSProcessing.asmx",
               {"Content-Type": "text/xml; charset=utf-8", "Authorization": "Basic " + ONEC_BASIC},
               onec_body(), onec_ok, onec_answer),
        Target("moysklad", base + "/v1/moysklad/retaildemand/recalc",
               {**json_ct, "Lognex-Discount-API-Auth-Token": TOKEN}, moysklad_body(), moysklad_ok),
    ]


def drivers_toml() -> str:
    return f"""
[drivers.evotor]
enabled = true
pairing_tokens = ["{TOKEN}"]
cloud_user_token = "bench-evotor-user-token"

[drivers.modulkassa]
enabled = true
pairing_tokens = ["{TOKEN}"]

[drivers.poster]
enabled = true
pairing_tokens = ["{TOKEN}"]
application_secret = "{SECRET}"

[drivers.onec]
enabled = true
user = "1c"
password = "bench-onec-password"

[drivers.moysklad]
enabled = true
tokens = ["{TOKEN}"]
"""


# ---------------------------------------------------------------- measuring


def figure(name: str, value: float, baseline: float, goal: float | None) -> dict[str, Any]:
    ratio = value / baseline if baseline else 0.0
    return {"figure": name, "value": round(value, 3), "baseline": round(baseline, 3),
            "ratio": round(ratio, 3), "goal": goal, "met": None if goal is None else bool(ratio <= goal)}


class Bench:
    def __init__(self, sizes: Sizes, emit: Callable[[dict[str, Any]], None]) -> None:
        self.sizes, self.emit = sizes, emit
        self.work = Path(tempfile.mkdtemp(prefix="posgw-drivers-bench-"))
        self.options = StackOptions(
            api_key=API_KEY, through_proxy=False, calc_budget_ms=300, refresh_s=60.0, log_level="ERROR",
            core_argv=[sys.executable, str(Path(__file__).resolve()), "stub-core", "--port", "{port}"],
            extra_toml=drivers_toml(),
        )
        self.stack = Stack(self.work, self.options)
        self.n = 0
        self.session: aiohttp.ClientSession

    async def run(self) -> None:
        try:
            await self.stack.start()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as self.session:
                all_targets = targets(self.stack.gateway_url)
                await self.wait_online(all_targets[0])
                for t in all_targets:
                    await self.check(t)
                    await self.sequential(t, self.sizes.warmup)
                samples = await self.measure(all_targets)
        finally:
            await self.stack.close()
            shutil.rmtree(self.work, ignore_errors=True)
        native = samples["native"]
        for pct, goal in ((50, GOAL), (99, None)):
            base = percentile(native, pct)
            for driver in VENDORS:
                value = percentile(samples[driver], pct)
                self.emit(figure(f"calc_p{pct}_{driver}_vs_native", value, base,
                                 GOALS.get(driver, goal) if goal is not None else None))

    async def post(self, t: Target) -> tuple[float, int, bytes]:
        self.n += 1
        body = t.body(self.n)
        began = time.perf_counter()
        async with self.session.post(t.url, data=body, headers=t.headers) as resp:
            raw = await resp.read()
            status = resp.status
        return (time.perf_counter() - began) * 1000, status, raw

    async def wait_online(self, native: Target) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                _, status, raw = await self.post(native)
                if status == 200 and json.loads(raw).get("offline") is False:
                    return
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("the gateway never answered the native calc online")

    async def check(self, t: Target) -> None:
        _, status, raw = await self.post(t)
        answer = t.parse(raw) if raw else None
        if status != 200 or not isinstance(answer, dict) or not t.answered(answer):
            raise RuntimeError(f"{t.driver}: calc not answered with the discount: {status} {raw[:300]!r}")

    async def sequential(self, t: Target, count: int) -> list[float]:
        out = []
        for _ in range(count):
            ms, status, raw = await self.post(t)
            if status != 200:
                raise RuntimeError(f"{t.driver}: HTTP {status} {raw[:300]!r}")
            out.append(ms)
        return out

    async def measure(self, all_targets: list[Target]) -> dict[str, list[float]]:
        sz = self.sizes
        samples: dict[str, list[float]] = {t.driver: [] for t in all_targets}
        deadline = time.monotonic() + sz.budget_s
        for r in range(sz.rounds):
            if r >= sz.min_rounds and time.monotonic() > deadline:
                break
            k = r % len(all_targets)  # rotate the order: nobody always runs first or last
            for t in all_targets[k:] + all_targets[:k]:
                samples[t.driver] += await self.sequential(t, sz.block)
        return samples


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "stub-core":
        core = argparse.ArgumentParser(description="the discounting stub core (internal)")
        core.add_argument("server")
        core.add_argument("--port", type=int, required=True)
        serve_core(core.parse_args().port)
        return 0
    return bench_cli.main("calc latency per driver vs native (JSON lines on stdout)",
                          "a few requests per driver (smoke test)",
                          lambda quick, emit: Bench(QUICK if quick else FULL, emit).run())


if __name__ == "__main__":
    sys.exit(main())
