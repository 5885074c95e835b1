"""The driver compliance suite applied to the native JSON API (see tests/drivers/compliance.py)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from tests.drivers.compliance import Adapter, ComplianceSuite
from tests.drivers.compliance_harness import Reply, Request

KEY = "till-key-1"
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
LINE = {"line_id": "1", "sku": "MILK", "name": "Milk", "price": 10000, "qty_milli": 1000, "amount": 10000}
SALE = {"register_id": "R1", "receipt_number": "9", "shift": "3", "lines": [LINE],
        "customer": {"card": "2000012345"}, "redeemed_points": 0}


def _post(path: str, body: Any, headers: dict[str, str] = AUTH, note: str = "") -> Request:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Request(path, data, dict(headers), note=note)


class NativeAdapter(Adapter):
    name = "native"

    def options(self) -> dict[str, Any]:
        return {"api_keys": [KEY]}

    def calc(self) -> Request:
        return _post("/calculate", {"register_id": "R1", "lines": [LINE], "customer": {"card": "2000012345"}})

    def commits(self) -> dict[str, Request]:
        sale_ref = {"receipt_number": "9", "shift": "3"}
        return {
            "sale": _post("/sales", SALE),
            "refund": _post("/refunds", {"register_id": "R1", "refund_id": "rf-1", "sale": sale_ref,
                                         "lines": [{"line_id": "1", "qty_milli": 1000}]}),
            "cancel": _post("/cancels", {"register_id": "R1", "cancel_id": "c-1", "sale": sale_ref}),
        }

    def sale_with_token(self, token: str) -> Request:
        relies = {k: v for k, v in SALE.items() if k not in ("customer", "redeemed_points")}
        return _post("/sales", dict(relies, calc_token=token))  # a till that keeps only the token

    def bad_inputs(self) -> list[Request]:
        float_money = dict(SALE, lines=[dict(LINE, amount=100.5)])
        return [
            _post("/sales", b"{", note="malformed JSON"),
            _post("/sales", float_money, note="float money"),
            _post("/sales", dict(SALE, lines=[]), note="no lines"),
            _post("/refunds", {"register_id": "R1", "sale": {"receipt_number": "9"}}, note="no refund_id"),
            _post("/sales", SALE, {"Authorization": AUTH["Authorization"], "Content-Type": "text/plain"},
                  note="wrong media type"),
        ]

    def unauthorized(self) -> list[Request]:
        return [
            _post("/sales", SALE, {"Content-Type": "application/json"}, note="no key"),
            _post("/sales", SALE, {"Authorization": "Bearer wrong", "Content-Type": "application/json"},
                  note="wrong key"),
            _post("/calculate", SALE, {"Authorization": KEY, "Content-Type": "application/json"},
                  note="key without Bearer"),
        ]

    def check_ok(self, kind: str, reply: Reply, *, duplicate: bool) -> None:
        assert reply.status == 200, reply
        body = json.loads(reply.body)
        assert body["duplicate"] is duplicate and body["key"].startswith("native:"), body

    def check_calc(self, reply: Reply, *, online: bool) -> None:
        assert reply.status == 200, reply
        body = json.loads(reply.body)
        assert body["offline"] is (not online)
        assert body["payable"] == sum(x["paid"] for x in body["lines"]) == 10000

    def check_error(self, reply: Reply) -> None:
        error = json.loads(reply.body)["error"]
        assert isinstance(error["code"], str) and error["code"].isupper() and error["message"], error


class TestNativeCompliance(ComplianceSuite):
    adapter: ClassVar[Adapter] = NativeAdapter()
