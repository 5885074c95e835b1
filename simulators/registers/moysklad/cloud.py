"""MoySklad's cloud as the loyalty system sees it: the Loyalty API 1.0 requests, with their quirks.

Written from ../shared/protocols/moysklad.md §4-§12 (never from the driver). Bodies carry rubles as
JSON numbers with 2 decimals, quantities with up to 3, gift card sums in kopecks, ``moment`` as
``YYYY-MM-DD HH:MM:SS``; every request carries ``Lognex-Discount-API-Auth-Token``. Quirks on
demand: preference at the top level, inside ``bonusProgram`` or null; a return's agent flat; empty
document ids; service positions; misbehaviour: a wrong token, a timeout (the same request again).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp

REMAP = "https://api.moysklad.ru/api/remap/1.2/entity"
POSAP = "https://api.moysklad.ru/api/posap/1.0/entity"


def num(kopecks: int) -> float | int:
    """Kopecks as MoySklad's ruble number (exact for 2 decimals)."""
    value = Decimal(kopecks).scaleb(-2)
    return int(value) if value == value.to_integral_value() else float(value)


def qty(milli: int) -> float | int:
    value = Decimal(milli).scaleb(-3)
    return int(value) if value == value.to_integral_value() else float(value)


@dataclass(frozen=True, slots=True)
class Item:
    """A product on the receipt: MoySklad id, unit price in kopecks, quantity in thousandths."""

    product: str
    price: int
    quantity: int
    kind: str = "product"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    data: Any

    def errors(self) -> list[dict[str, Any]]:
        return list(self.data.get("errors", [])) if isinstance(self.data, dict) else []


@dataclass
class Cloud:
    """Sends one MoySklad account's requests to a loyalty system's base URL."""

    session: aiohttp.ClientSession
    base_url: str  # the registered URL, e.g. http://127.0.0.1:8080/v1/moysklad
    token: str
    store_id: str
    timeout_s: float = 10.0
    rng: random.Random = field(default_factory=random.Random)
    sent: int = 0
    timeouts: int = 0

    def store(self) -> dict[str, Any]:
        return {
            "meta": {"href": f"{REMAP}/retailstore/{self.store_id}", "id": self.store_id},
            "name": "Магазин",
        }

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        params: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Reply:
        """One request; a timeout (``timeout_s``, default the cloud's) is retried once with the same
        request (what a resending cloud does); ``Reply(0, None)`` when both timed out."""
        headers = {
            "Lognex-Discount-API-Auth-Token": self.token if token is None else token,
            "Content-Type": "application/json",
        }
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        for attempt in (1, 2):
            self.sent += 1
            try:
                async with asyncio.timeout(self.timeout_s if timeout_s is None else timeout_s):
                    async with self.session.request(
                        method, f"{self.base_url}{path}", data=data, headers=headers, params=params
                    ) as resp:
                        raw = await resp.read()
                        return Reply(resp.status, json.loads(raw) if raw else None)
            except TimeoutError:
                self.timeouts += 1
                if attempt == 2:
                    return Reply(0, None)
        return Reply(0, None)  # pragma: no cover - the loop returns

    # ------------------------------------------------------------ bodies

    def counterparty(self, ms_id: str, phone: str, name: str, **more: Any) -> dict[str, Any]:
        return {
            "meta": {"href": f"{REMAP}/counterparty/{ms_id}", "id": ms_id},
            "name": name,
            "phone": phone,
            **more,
        }

    def positions(
        self, items: list[Item], *, answered: list[dict[str, Any]] | None = None, sync: bool = False
    ) -> list[dict[str, Any]]:
        if answered is not None:  # the sale repeats the recalc's final positions (split parts too)
            out = []
            for pos in answered:
                copy = {
                    k: v
                    for k, v in pos.items()
                    if k
                    in ("assortment", "quantity", "price", "discountPercent", "discountedPrice", "sn", "pack")
                }
                if sync:
                    copy["assortment"] = {**copy["assortment"], "syncId": self.uuid()}
                out.append(copy)
            return out
        return [
            {
                "assortment": {
                    "meta": {
                        "href": f"{REMAP}/{i.kind}/{i.product}",
                        "id": i.product,
                        "idType": "native",
                        "type": i.kind,
                    }
                },
                "quantity": qty(i.quantity),
                "price": num(i.price),
            }
            for i in items
        ]

    async def create(self, who: dict[str, Any], status: str) -> Reply:
        return await self.call(
            "POST",
            "/counterparty",
            {"retailStore": self.store(), **who, "statusCheck": status, "syncId": self.uuid()},
        )

    async def registration_code(self, sync_id: str, phone: str, name: str) -> Reply:
        return await self.call(
            "POST",
            "/counterparty/verify",
            {"meta": {"href": f"{POSAP}/counterparty/syncid/{sync_id}"}, "name": name, "phone": phone},
        )

    async def search(self, text: str) -> Reply:
        return await self.call(
            "GET", "/counterparty", params={"search": text, "retailStoreId": self.store_id}
        )

    async def detail(self, who: dict[str, Any]) -> Reply:
        return await self.call("POST", "/counterparty/detail", {"retailStore": self.store(), **who})

    async def recalc(
        self,
        who: dict[str, Any],
        items: list[Item],
        *,
        spending: bool = False,
        preferred: int | None = None,
        where: str = "top",
    ) -> Reply:
        body: dict[str, Any] = {
            "retailStore": self.store(),
            "agent": who,
            "positions": self.positions(items),
            "bonusProgram": {"transactionType": "SPENDING" if spending else "EARNING"},
        }
        if where == "program":
            body["bonusProgram"]["preferredBonusToSpend"] = preferred
        else:
            body["preferredBonusToSpend"] = preferred  # null when none (Q1)
        return await self.call("POST", "/retaildemand/recalc", body)

    async def spending_code(self, counterparty_id: str, phone: str) -> Reply:
        return await self.call(
            "POST",
            "/retaildemand/verify",
            {"retailStore": self.store(), "counterpartyId": counterparty_id, "phone": phone},
        )

    def sale_body(
        self,
        doc_id: str,
        number: str,
        moment: str,
        who: dict[str, Any] | None,
        answered: list[dict[str, Any]],
        spend: int,
        earn: int,
        cash: int,
        gift: tuple[str, str, int] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "retailStore": self.store(),
            "name": number,
            "moment": moment,
            "meta": {"href": f"{REMAP}/retaildemand/{doc_id}" if doc_id else "", "id": doc_id},
            "positions": self.positions([], answered=answered, sync=True),
            "bonusProgram": {"bonusValueToSpend": spend, "bonusValueToEarn": earn},
            "cashSum": num(cash),
            "noCashSum": 0,
        }
        if who is not None:
            body["agent"] = {"meta": who["meta"]}
        if gift is not None:
            body["giftCards"] = [{"id": gift[0], "name": gift[1], "paymentSum": gift[2]}]
        return body

    async def sale(self, body: dict[str, Any], *, timeout_s: float | None = None) -> Reply:
        return await self.call("POST", "/retaildemand", body, timeout_s=timeout_s)

    async def sales_return(
        self, doc_id: str, sale_id: str, moment: str, who: dict[str, Any], items: list[Item]
    ) -> Reply:
        body = {
            "retailStore": self.store(),
            "name": doc_id[:5],
            "moment": moment,
            "meta": {"href": f"{REMAP}/retailsalesreturn/{doc_id}", "id": doc_id},
            "demand": {"meta": {"href": f"{REMAP}/retaildemand/{sale_id}", "id": sale_id}},
            "agent": {"href": who["meta"]["href"], "id": who["meta"]["id"]},  # Q2: flat
            "positions": self.positions(items),
            "cashSum": 0,
            "noCashSum": 0,
        }
        return await self.call("POST", "/retailsalesreturn", body)

    async def gift_card(self, name: str) -> Reply:
        return await self.call("GET", "/giftcard", params={"name": name, "retailStoreId": self.store_id})
