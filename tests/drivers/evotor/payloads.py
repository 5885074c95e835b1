"""Real-shaped Evotor plugin payloads (made-up ids and amounts, the protocol doc's shapes)."""

from __future__ import annotations

import json
from typing import Any

STORE = "20230301-AB12-4C0D-8E11-0F2A3B4C5D6E"
RECEIPT = "9d3c1e2a-6b7f-4c11-a0d2-5e8f9a1b2c3d"
P1 = "5a1f0c2e-0001-4e6b-9c3d-2b7e8f901a01"
P2 = "5a1f0c2e-0002-4e6b-9c3d-2b7e8f901a02"
PRODUCT1 = "b7e2d4c6-1111-4a2b-8c9d-0e1f2a3b4c01"


def positions() -> list[dict[str, Any]]:
    return [
        {
            "uuid": P1,
            "productUuid": PRODUCT1,
            "productCode": "101",
            "name": "Cappuccino",
            "measureName": "шт",
            "measurePrecision": 0,
            "price": "180.00",
            "priceWithDiscountPosition": "180.00",
            "quantity": "2",
        },
        {
            "uuid": P2,
            "productUuid": None,
            "name": "Cheese, by weight",
            "measureName": "кг",
            "measurePrecision": 3,
            "price": "900.00",
            "priceWithDiscountPosition": "900.00",
            "quantity": "0.245",
        },
    ]


def calc(
    *,
    card: str | None = "2000012345",
    redeem: str = "50",
    discount: str = "0",
    pos: list[dict[str, Any]] | None = None,
    discounts: dict[str, str] | None = None,
    action: str = "evo.v2.receipt.sell.receiptDiscount",
) -> dict[str, Any]:
    loyalty = {"card": card, "redeem": redeem} if card else {}
    return {
        "action": action,
        "device": {"storeUuid": STORE, "userId": "01-000000004455667"},
        "loyalty": loyalty,
        "event": {"receiptUuid": RECEIPT, "discount": discount},
        "receipt": {
            "header": {
                "uuid": RECEIPT,
                "baseReceiptUuid": None,
                "number": None,
                "type": "SELL",
                "date": None,
            },
            "printDocuments": [
                {
                    "payments": [],
                    "discounts": discounts or {},
                    "positions": pos if pos is not None else positions(),
                }
            ],
        },
    }


def close(
    *,
    uuid: str = RECEIPT,
    kind: str = "sell",
    doc_type: str = "SELL",
    base: str | None = None,
    extra: dict[str, Any] | None = None,
    discounts: dict[str, str] | None = None,
    pos: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "action": f"evotor.intent.action.receipt.{kind}.RECEIPT_CLOSED",
        "device": {"storeUuid": STORE, "deviceUuid": "20240713-774A-4038-8037-E66BF3AA7552"},
        "event": {"receiptUuid": uuid},
        "receipt": {
            "header": {
                "uuid": uuid,
                "baseReceiptUuid": base,
                "number": "42",
                "type": doc_type,
                "date": "2026-01-01T10:05:10.000+03:00",
                "sessionNumber": "17",
                "extra": json.dumps(extra or {}),
            },
            "printDocuments": [
                {
                    "payments": [{"uuid": "x", "value": "454.50", "system": {"paymentType": "ELECTRON"}}],
                    "discounts": discounts or {},
                    "positions": pos if pos is not None else positions(),
                }
            ],
        },
    }


def body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()
