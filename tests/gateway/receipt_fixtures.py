"""A full canonical receipt for conversion tests (protobuf and outbox payload): every field set."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gateway.receipt import CustomerId, IdKind, Line, Payment, Receipt

MSK = timezone(timedelta(hours=3))


def make_receipt(**kw: object) -> Receipt:
    base: dict[str, object] = {
        "register_id": "R1",
        "receipt_number": "42",
        "lines": (
            Line("1", "sku-1", "Milk", price=8990, qty_milli=2000, amount=17980, category="dairy"),
            Line("2", "sku-2", "Beer", price=15000, qty_milli=1000, amount=15000,
                 discountable=False, accruable=False, min_unit_price=12000),
        ),
        "occurred_at": datetime(2025, 3, 9, 12, 30, 15, 123456, tzinfo=MSK),
        "shift": "7",
        "fiscal_sign": "FS1",
        "cashier_id": "c1",
        "cashier_name": "Анна",
        "store_id": "S1",
        "customer": CustomerId(IdKind.PHONE, "+79991234567", otp="1234"),
        "redeem_points": 100,
        "payments": (Payment("card", 32980),),
        "driver": "native",
    }
    base.update(kw)
    return Receipt(**base)  # type: ignore[arg-type]
