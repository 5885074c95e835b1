"""drivers.onec_pull.mapping: LoyaltyFeed receipts -> sale and refund events (keys, lines, points)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from drivers.onec_pull.mapping import doc_key, to_event
from gateway.errors import BadInput
from gateway.receipt import EventKind, IdKind
from tests.drivers.onec_pull.receipts import receipt

MSK = ZoneInfo("Europe/Moscow")


def test_a_sale() -> None:
    doc = {**receipt(1), "PaidByBonus": Decimal("30.50"), "DateTime": datetime(2026, 3, 14, 12)}
    e = to_event(doc, MSK, store_id="", pv=100)
    assert (e.kind, e.key, e.register_id, e.expected_redeemed) == (
        EventKind.SALE,
        doc_key(doc["Id"]),
        "SHOP1/POS1",
        30,
    )
    assert e.receipt is not None and e.occurred_at == datetime(2026, 3, 14, 9, tzinfo=UTC)
    assert [(ln.line_id, ln.price, ln.qty_milli, ln.amount) for ln in e.receipt.lines] == [
        ("MILK", 8990, 1000, 8990),
        ("BREAD", 4500, 2000, 9000),
    ]
    assert e.receipt.customer is not None and e.receipt.customer.kind == IdKind.PHONE


def test_a_return_cites_its_sale() -> None:
    sale = receipt(1)
    e = to_event(
        {
            **receipt(2, op="Return", base=sale["Id"]),
            "Line": sale["Line"][:1],
            "SummDiscounted": Decimal("89.90"),
        },
        MSK,
        store_id="S",
        pv=100,
    )
    assert (e.kind, e.sale_key, e.refund_amount) == (EventKind.REFUND, doc_key(sale["Id"]), 8990)
    assert [(x.line_id, x.qty_milli) for x in e.refund_lines] == [("MILK", 1000)]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"Id": ""}, "Receipt.Id"),
        ({"OperationType": "Inventory"}, "OperationType"),
        ({"OperationType": "Return"}, "BaseId"),
        ({"POS": None}, "POS"),
        (
            {"Summ": Decimal(-1), "OperationType": "Return", "BaseId": "x", "SummDiscounted": Decimal(-1)},
            "SummDiscounted",
        ),
        ({"Line": [{"Article": "A", "Price": Decimal(1), "Quantity": Decimal(-1)}]}, "Quantity"),
        ({"DateTime": "yesterday"}, "DateTime"),
    ],
)
def test_malformed_receipts_name_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(BadInput) as info:
        to_event({**receipt(3), **change}, MSK, store_id="", pv=100)
    assert field in info.value.field
