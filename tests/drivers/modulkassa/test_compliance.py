"""The driver compliance suite applied to the Modul Kassa driver (loyalty plugin + check broadcasts)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from drivers.modulkassa import wire
from tests.drivers.compliance import Adapter, ComplianceSuite
from tests.drivers.compliance_harness import Reply, Request, calc_token
from tests.drivers.modulkassa.test_wire import closed, operation

TOKEN = {"X-Gateway-Token": "mk-tok", "Content-Type": "application/json"}


def _post(path: str, body: Any, headers: dict[str, str] = TOKEN, note: str = "") -> Request:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Request(path, data, dict(headers), note=note)


class ModulKassaAdapter(Adapter):
    name = "modulkassa"

    def options(self) -> dict[str, Any]:
        return {"pairing_tokens": ["mk-tok"]}

    def calc(self) -> Request:
        return _post("/operation", operation())

    def commits(self) -> dict[str, Request]:
        cancel = {"action": wire.CANCELLED, "extras": {"check_id": "chk-2", "check_sum": "0"},
                  "loyalty": {"data": calc_token(hold_id="h-1")}}
        return {
            "sale": _post("/event", closed()),
            "refund": _post("/event", closed("RETURN", check_id="ret-1", saleCheckId="chk-1")),
            "cancel": _post("/event", cancel),
        }

    def sale_with_token(self, token: str) -> Request:
        return _post("/event", closed(data=token))

    def bad_inputs(self) -> list[Request]:
        return [
            _post("/event", b"{", note="malformed JSON"),
            _post("/event", b'{"action":"x","extras":{}}', note="unknown action"),
            _post("/operation", b'{"operation":"pay"}', note="unknown operation"),
            _post("/event", dict(closed(), extras={"check_id": "c"}), note="close without the check"),
        ]

    def unauthorized(self) -> list[Request]:
        return [
            _post("/event", closed(), {}, note="no token"),
            _post("/event", closed(), {"X-Gateway-Token": "nope"}, note="wrong token"),
            _post("/operation", operation(), {"Authorization": "Bearer mk-tok"}, note="wrong header"),
        ]

    def check_ok(self, kind: str, reply: Reply, *, duplicate: bool) -> None:
        assert reply.status == 200, reply
        assert json.loads(reply.body) == {"accepted": True, "duplicate": duplicate}, reply

    def check_calc(self, reply: Reply, *, online: bool) -> None:
        assert reply.status == 200, reply
        body = json.loads(reply.body)
        assert body["result"] == "succeeded", body
        data = body["data"]
        prices = [data[f"impact/{i}/price"] for i in data["impacts"]]
        assert prices == ["150.00", "640.00"], data  # no discount from the stub core or offline

    def check_error(self, reply: Reply) -> None:
        body = json.loads(reply.body)
        assert body["result"] == "failed" and body["message"], body


class TestModulKassaCompliance(ComplianceSuite):
    adapter: ClassVar[Adapter] = ModulKassaAdapter()
