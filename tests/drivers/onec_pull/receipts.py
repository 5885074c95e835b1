"""1C LoyaltyFeed receipts as the site's extension publishes them (for the onec_pull tests)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drivers.onec_pull.config import Config
from simulators.registers.onec_pull import FakePublication

USER, PASSWORD = "posgw", "infobase-secret"


def receipt(n: int, *, op: str = "Sale", base: str = "", phone: str = "+79160000101") -> dict[str, Any]:
    return {
        "Id": f"8c1f0000-0000-4000-8000-{n:012d}",
        "Number": f"{n:06d}",
        "DateTime": "2026-03-14T12:00:00+03:00",
        "Store": "SHOP1",
        "POS": "POS1",
        "OperationType": op,
        "BaseId": base,
        "Phone": phone,
        "Summ": Decimal("179.90"),
        "SummDiscounted": Decimal("179.90"),
        "PaidByBonus": Decimal(0),
        "Line": [
            {
                "LineNo": 1,
                "Article": "MILK",
                "Name": "Молоко",
                "Price": Decimal("89.90"),
                "Quantity": Decimal(1),
                "Summ": Decimal("89.90"),
            },
            {
                "LineNo": 2,
                "Article": "BREAD",
                "Name": "Хлеб",
                "Price": Decimal("45.00"),
                "Quantity": Decimal(2),
                "Summ": Decimal("90.00"),
            },
        ],
    }


def config(vendor: FakePublication, **kw: Any) -> Config:
    return Config.model_validate(
        {
            "wsdl_url": vendor.wsdl_url,
            "user": USER,
            "password": PASSWORD,
            "max_count": 2,
            "interval_s": 0.02,
            "backoff_max_s": 0.05,
            "operation_timeout_s": 5.0,
            **kw,
        }
    )
