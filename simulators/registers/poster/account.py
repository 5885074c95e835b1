"""A Poster account as the gateway sees it: the platform app inside the till and the webhook sender.

Never imports ``drivers`` (a simulator must not share the driver's reading of the vendor doc):
the webhook ``verify`` and the terminal's behaviour are written here from the protocol doc.

Behaviour:
- webhooks: ``verify = md5(account;object;object_id;action;[data;]time;secret)``, ``object_id`` a
  number, ``time`` and ``data`` strings; anything but HTTP 200 is undelivered and retried up to 15
  more times, each with a fresh ``time`` (the worst case), on a compressible schedule (``sleep``);
- the app: order ids are ms timestamps, ``products`` an object keyed "0", "1", …, money JS
  numbers in currency units; the terminal applies ``setOrderBonus`` (refusing a bonus above the
  total or below 0), prints the text, keeps the extras, and always goes on with the payment;
  closed orders are resent until a 2xx (the app's queue); ``orderName`` is empty until synced.
Misbehaviour switches: bad signature, stale time, duplicate delivery, out of order (the removal
webhook before the app's ``afterOrderClose``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp

RETRIES = 15  # "Poster will attempt to send the webhook 15 more times within two days"
SCHEDULE_S = (60, 300, 900, 1800, 3600, 7200, 10800, 14400, 14400, 14400, 14400, 14400, 14400, 14400, 14400)


@dataclass
class Switches:
    bad_signature: bool = False
    stale_time: bool = False
    duplicate: bool = False
    out_of_order: bool = False


@dataclass
class Delivery:
    statuses: list[int] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return bool(self.statuses) and self.statuses[-1] == 200


@dataclass
class ClosedOrder:
    order_id: int
    total: Decimal
    bonus: Decimal
    print_text: str
    extras: dict[str, str]
    statuses: list[int] = field(default_factory=list)


class SimError(AssertionError):
    """The gateway answered something a real terminal could not apply."""


def verify(parts: list[str], secret: str) -> str:
    return hashlib.md5(";".join([*parts, secret]).encode("utf-8")).hexdigest()


class PosterAccount:
    def __init__(
        self,
        base_url: str,
        *,
        secret: str,
        token: str,
        account: str = "coffee-demo",
        tablet: int = 3,
        switches: Switches | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timeout_s: float = 2.0,
    ) -> None:
        self.base = base_url.rstrip("/") + "/v1/poster"
        self.secret, self.token, self.account, self.tablet = secret, token, account, tablet
        self.switches = switches or Switches()
        self.clock, self.sleep = clock, sleep
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._last_id = 0

    # ------------------------------------------------------------ webhooks

    def webhook(self, object_id: int, action: str, data: str | None = None) -> dict[str, Any]:
        sent = int(self.clock()) - (30 * 86400 if self.switches.stale_time else 0)
        parts = [self.account, "transaction", str(object_id), action] + ([data] if data is not None else [])
        body: dict[str, Any] = {
            "account": self.account,
            "account_number": "904512",
            "object": "transaction",
            "object_id": object_id,
            "action": action,
            "time": str(sent),
            "verify": verify([*parts, str(sent)], self.secret),
        }
        if self.switches.bad_signature:
            body["verify"] = verify([*parts, str(sent)], self.secret + "-wrong")
        if data is not None:
            body["data"] = data
        return body

    async def send_webhook(
        self, session: aiohttp.ClientSession, object_id: int, action: str, data: str | None = None
    ) -> Delivery:
        out = Delivery()
        for attempt in range(RETRIES + 1):
            status = await self._post(session, "/webhook", self.webhook(object_id, action, data), {})
            out.statuses.append(status)
            if status == 200:
                break
            if attempt < RETRIES:
                await self.sleep(SCHEDULE_S[attempt])
        if out.delivered and self.switches.duplicate:
            out.statuses.append(
                await self._post(session, "/webhook", self.webhook(object_id, action, data), {})
            )
        return out

    # ------------------------------------------------------------ the platform app

    def _order(
        self,
        products: list[tuple[int, Decimal, Decimal]],
        *,
        name: int | str = "",
        extras: dict[str, str] | None = None,
        closed: bool = False,
    ) -> dict[str, Any]:
        self._last_id = max(self._last_id + 1, int(self.clock() * 1000))
        total = sum((price * qty for _, price, qty in products), Decimal(0))
        return {
            "id": self._last_id,
            "orderName": name,
            "dateStart": self._last_id,
            "dateClose": self._last_id + 1 if closed else 0,
            "status": 2 if closed else 1,
            "userId": 4,
            "products": {
                str(i): {"id": pid, "count": qty, "price": price, "modification": 0}
                for i, (pid, price, qty) in enumerate(products)
            },
            "subtotal": total,
            "total": total,
            "discount": 0,
            "payedBonus": 0,
            "loyaltyAppId": 0,
            "extras": extras or {},
        }

    def _envelope(self, event: str, data: dict[str, Any], loyalty: dict[str, Any]) -> dict[str, Any]:
        return {
            "event": event,
            "settings": {
                "accountUrl": self.account,
                "spotId": 1,
                "spotTabletId": self.tablet,
                "applicationId": "1234",
            },
            "loyalty": loyalty,
            "data": data,
        }

    async def order(
        self,
        session: aiohttp.ClientSession,
        products: list[tuple[int, Decimal, Decimal]],
        *,
        card: str = "",
        phone: str = "",
        redeem: int | str = 0,
        transaction_id: int = 0,
        removed_early: bool = False,
    ) -> ClosedOrder:
        """One order: calc before payment, the terminal applies it, then the close is reported.

        ``card`` / ``phone``: what the cashier entered in the app; ``redeem``: whole points or "max".
        ``removed_early`` (with the out-of-order switch): the back office removes the transaction
        and its webhook overtakes the app's close (the gateway must still apply the removal).
        """
        loyalty: dict[str, Any] = {"card": card} if card else ({"phone": phone} if phone else {})
        if loyalty:
            loyalty["redeem"] = redeem
        order = self._order(products)
        answer = await self._post_json(
            session, "/pos-event", self._envelope("beforeOrderClose", {"order": order}, loyalty)
        )
        bonus = (
            Decimal(str(answer.get("bonus", 0))) if answer else Decimal(0)
        )  # timeout: next() with no bonus
        if not Decimal(0) <= bonus <= order["total"]:
            raise SimError(f"bonus {bonus} outside 0..{order['total']}")
        extras = {str(k): str(v) for k, v in (answer or {}).get("extras", {}).items()}
        order.update(
            payedBonus=bonus,
            loyaltyAppId=1234 if bonus else 0,
            status=2,
            dateClose=order["id"] + 1,
            payedSum=order["total"] - bonus,
            extras=extras,
        )
        done = ClosedOrder(order["id"], order["total"], bonus, (answer or {}).get("printText", ""), extras)
        close = self._envelope("afterOrderClose", {"order": order}, loyalty)
        if transaction_id and removed_early and self.switches.out_of_order:
            await self.send_webhook(session, transaction_id, "removed")
        done.statuses.append(await self._until_2xx(session, close))
        if self.switches.duplicate:
            done.statuses.append(await self._until_2xx(session, close))
        if transaction_id:  # synced: the app's queue resends nothing, but a resend would carry the name
            order["orderName"] = transaction_id
            done.statuses.append(await self._until_2xx(session, close))
        return done

    async def return_products(
        self, session: aiohttp.ClientSession, closed: ClosedOrder, products: list[tuple[int, Decimal]]
    ) -> int:
        order = {"id": closed.order_id, "status": 2, "products": {}, "total": closed.total}
        returned = [
            {"product_id": pid, "modification_id": 0, "promotion_id": 0, "count": qty}
            for pid, qty in products
        ]
        return await self._until_2xx(
            session, self._envelope("returnFiscal", {"order": order, "userId": 4, "products": returned}, {})
        )

    # ------------------------------------------------------------ HTTP

    async def _until_2xx(self, session: aiohttp.ClientSession, body: dict[str, Any], tries: int = 20) -> int:
        status = 0
        for attempt in range(tries):
            status = await self._post(session, "/pos-event", body, {"X-Gateway-Token": self.token})
            if 200 <= status < 300 or 400 <= status < 500:
                return status
            await self.sleep(min(2.0**attempt, 60.0))
        return status

    async def _post_json(self, session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> Any:
        try:
            async with session.post(
                self.base + path,
                data=_dumps(body),
                timeout=self.timeout,
                headers={"X-Gateway-Token": self.token, "Content-Type": "application/json"},
            ) as resp:
                if resp.status != 200:
                    return None
                return json.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def _post(
        self, session: aiohttp.ClientSession, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> int:
        try:
            async with session.post(
                self.base + path,
                data=_dumps(body),
                timeout=self.timeout,
                headers={**headers, "Content-Type": "application/json"},
            ) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError):
            return 0


def _dumps(body: dict[str, Any]) -> bytes:
    """JSON with Decimal money written as JS numbers (``85.5``), like the terminal's objects."""

    def mark(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"@@D:{value.normalize():f}@@"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(body), ensure_ascii=False)
    return re.sub(r'"@@D:(-?[0-9.]+)@@"', r"\1", text).encode("utf-8")
