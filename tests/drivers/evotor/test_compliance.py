"""The driver compliance suite applied to the Evotor driver (plugin path; cloud sale as a second commit)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from tests.drivers.compliance import Adapter, ComplianceSuite
from tests.drivers.compliance_harness import Reply, Request, calc_token
from tests.drivers.evotor import payloads

PLUGIN = {"X-Gateway-Token": "plug-tok", "Content-Type": "application/json"}
CLOUD = {"Authorization": "Bearer user-tok", "Content-Type": "application/json"}
REFUND_UUID = "0b7d5c3e-9a1f-4e2d-8c6b-3f4a5b6c7d8e"


def _post(path: str, body: Any, headers: dict[str, str] = PLUGIN, note: str = "") -> Request:
    data = body if isinstance(body, bytes) else payloads.body(body)
    return Request(path, data, dict(headers), note=note)


class EvotorAdapter(Adapter):
    name = "evotor"

    def options(self) -> dict[str, Any]:
        return {"pairing_tokens": ["plug-tok"], "cloud_user_token": "user-tok", "cloud_app_token": "app-tok"}

    def calc(self) -> Request:
        return _post("/event", payloads.calc(redeem="0"))

    def commits(self) -> dict[str, Request]:
        refund = payloads.close(uuid=REFUND_UUID, kind="payback", doc_type="PAYBACK", base=payloads.RECEIPT)
        cleared = payloads.close(extra={"posgw": calc_token(hold_id="hold-1")})
        cleared["action"] = "evotor.intent.action.receipt.sell.CLEARED"
        return {"sale": _post("/event", payloads.close()), "refund": _post("/event", refund),
                "cancel": _post("/event", cleared)}

    def sale_with_token(self, token: str) -> Request:
        return _post("/event", payloads.close(extra={"posgw": token}))

    def bad_inputs(self) -> list[Request]:
        no_snapshot = payloads.close()
        del no_snapshot["receipt"]
        bad_money = payloads.close(pos=[dict(payloads.positions()[0], price="1,80")])
        return [
            _post("/event", b"{", note="malformed JSON"),
            _post("/event", {"action": "evotor.intent.action.receipt.sell.SOMETHING"}, note="unknown action"),
            _post("/event", no_snapshot, note="close without the receipt snapshot"),
            _post("/event", bad_money, note="comma in a price"),
            _post("/cloud/api/v2/receipts", b"[1]", CLOUD, note="cloud receipt not an object"),
        ]

    def unauthorized(self) -> list[Request]:
        sale = payloads.close()
        return [
            _post("/event", sale, {}, note="no token"),
            _post("/event", sale, {"X-Gateway-Token": "wrong"}, note="wrong token"),
            _post("/event", payloads.calc(), {"Authorization": "Bearer plug-tok"}, note="wrong header"),
            _post("/cloud/api/v2/receipts", b"{}", {"Authorization": "Bearer plug-tok"}, note="plugin token"),
        ]

    def check_ok(self, kind: str, reply: Reply, *, duplicate: bool) -> None:
        assert reply.status == 200, reply
        assert json.loads(reply.body) == {"accepted": True, "duplicate": duplicate}, reply

    def check_calc(self, reply: Reply, *, online: bool) -> None:
        assert reply.status == 200, reply
        body = json.loads(reply.body)
        assert body["callback"] in ("onResult", "skip"), body
        if body["callback"] == "onResult":
            result = body["result"]
            assert set(result) >= {"discount", "positionUuidToDiscountMap", "changes"}, body
            assert result["discount"] == "0.00", body  # the stub core and the offline policy give none

    def check_error(self, reply: Reply) -> None:
        errors = json.loads(reply.body)["errors"]
        assert isinstance(errors, list) and isinstance(errors[0]["code"], int) and errors[0]["reason"], errors


class TestEvotorCompliance(ComplianceSuite):
    adapter: ClassVar[Adapter] = EvotorAdapter()
