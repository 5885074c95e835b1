"""Real-shaped Poster payloads (made-up ids and amounts; shapes from the protocol doc) and signers.

The signers here are written from the documented formulas with hashlib, independently of
drivers.poster.wire, so tests check the driver against them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from gateway.receipt import CustomerId, IdKind
from tests.drivers.fake_context import token as calc_token

SECRET = "fe2bc8e865d8fc2236968ee53c3b2bd5"
TOKEN = "pair-tok"
ACCOUNT = "coffee-demo"
ORDER_ID = 1767254400123


def settings() -> dict[str, Any]:
    return {"accountUrl": ACCOUNT, "spotId": 1, "spotTabletId": 3, "applicationId": "1234"}


def order(
    *,
    order_id: int = ORDER_ID,
    name: str | int = "",
    extras: dict[str, Any] | None = None,
    status: int = 1,
    date_close: int = 0,
) -> dict[str, Any]:
    return {
        "id": order_id,
        "orderName": name,
        "dateStart": order_id,
        "dateClose": date_close,
        "status": status,
        "userId": 4,
        "tableId": 0,
        "clientId": 77,
        "products": {
            "0": {"id": 12, "count": 2, "price": 190, "modification": 0},
            "1": {"id": 40, "count": 1, "price": 85.5, "modification": 0},
        },
        "subtotal": 465.5,
        "total": 465.5,
        "discount": 0,
        "payedBonus": 0,
        "approvedBonus": 0,
        "platformDiscount": 0,
        "loyaltyAppId": 0,
        "extras": extras or {},
    }


def pos_event(event: str, data: dict[str, Any], *, card: str | None = "2000012345", redeem: Any = 0) -> bytes:
    loyalty = {"card": card, "redeem": redeem} if card else {}
    return json.dumps({"event": event, "settings": settings(), "loyalty": loyalty, "data": data}).encode()


def before_close(**kw: Any) -> bytes:
    return pos_event("beforeOrderClose", {"order": order()}, **kw)


def after_close(*, token: str = "", **kw: Any) -> bytes:
    extras = {"posgw": token or calc_token(customer=CustomerId(IdKind.CARD, "2000012345"))}
    return pos_event(
        "afterOrderClose", {"order": order(status=2, date_close=ORDER_ID + 60_000, extras=extras, **kw)}
    )


def return_fiscal(count: int = 1) -> bytes:
    products = [{"product_id": 12, "modification_id": 0, "promotion_id": 0, "count": count}]
    return pos_event("returnFiscal", {"order": order(status=2), "userId": 4, "products": products})


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def webhook(
    object_id: int = 58031,
    action: str = "removed",
    *,
    data: str | int | None = None,
    time: str = "1767254466",
    secret: str = SECRET,
    account: str = ACCOUNT,
    obj: str = "transaction",
) -> dict[str, Any]:
    signed_data = [] if data is None else [str(data)]  # a number as PHP's implode prints it
    parts = [account, obj, str(object_id), action, *signed_data, time, secret]
    hook: dict[str, Any] = {
        "account": account,
        "account_number": "904512",
        "object": obj,
        "object_id": object_id,
        "action": action,
        "time": time,
        "verify": md5(";".join(parts)),
    }
    if data is not None:
        hook["data"] = data
    return hook
