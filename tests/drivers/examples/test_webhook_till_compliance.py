"""The push compliance suite against the example webhook till (tests/drivers/examples/webhook_till/),
a driver written from drivers/README.md alone, run in the real daemon like the four drivers.

The example lives under tests/, so the registry (derived from drivers/) does not know it: the
autouse fixture registers it under its NAME for each test, which is all the daemon and the config
loader need (the loader finds ``tests.drivers.examples.webhook_till.config:Config`` from it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gateway.driver import REGISTRY
from tests.drivers.compliance import Adapter, ComplianceSuite
from tests.drivers.compliance_harness import Reply, Request, calc_token
from tests.drivers.examples.webhook_till import NAME

TARGET = "tests.drivers.examples.webhook_till.driver:create"
HEADERS = {"X-Till-Token": "till-secret", "Content-Type": "application/json"}
ITEMS = [{"sku": "MILK", "name": "Milk", "price": 8990, "qty": 1000},
         {"sku": "BREAD", "name": "Bread", "price": 4500, "qty": 2000}]
SALE = {"till": "T1", "number": "42", "at": "2026-03-14T12:00:00+03:00", "card": "2000012345", "items": ITEMS}


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(REGISTRY, NAME, TARGET)
    yield


def _post(path: str, body: Any, headers: dict[str, str] = HEADERS, note: str = "") -> Request:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Request(path, data, dict(headers), note=note)


class WebhookTillAdapter(Adapter):
    name = NAME

    def options(self) -> dict[str, Any]:
        return {"tokens": ["till-secret"]}

    def calc(self) -> Request:
        return _post("/calc", {k: v for k, v in SALE.items() if k != "number"})

    def commits(self) -> dict[str, Request]:
        return {"sale": _post("/sale", dict(SALE, calc_token=calc_token(register_id="T1")))}

    def sale_with_token(self, token: str) -> Request:
        return _post("/sale", dict(SALE, calc_token=token))

    def bad_inputs(self) -> list[Request]:
        return [
            _post("/sale", b"{", note="malformed JSON"),
            _post("/sale", dict(SALE, items=[]), note="no items"),
            _post("/sale", dict(SALE, items=[dict(ITEMS[0], price=89.9)]), note="float money"),
            _post("/sale", {k: v for k, v in SALE.items() if k != "number"}, note="no receipt number"),
            _post("/sale", dict(SALE, calc_token="c1.forged.token"), note="forged calc token"),
            _post("/sale", SALE, {"X-Till-Token": "till-secret", "Content-Type": "text/plain"},
                  note="wrong media type"),
        ]

    def unauthorized(self) -> list[Request]:
        return [
            _post("/sale", SALE, {"Content-Type": "application/json"}, note="no token"),
            _post("/sale", SALE, {"X-Till-Token": "wrong", "Content-Type": "application/json"}, note="wrong"),
            _post("/calc", SALE, {"Authorization": "Bearer till-secret"}, note="token in the wrong header"),
        ]

    def check_ok(self, kind: str, reply: Reply, *, duplicate: bool) -> None:
        assert reply.status == 200, reply
        assert json.loads(reply.body) == {"ok": True, "duplicate": duplicate}, reply

    def check_calc(self, reply: Reply, *, online: bool) -> None:
        assert reply.status == 200, reply
        body = json.loads(reply.body)
        assert body["ok"] is True and body["discount"] == 0, body  # the stub core gives no discount
        assert body["offline"] is (not online) and body["token"].startswith("c1."), body

    def check_error(self, reply: Reply) -> None:
        error = json.loads(reply.body)["error"]
        assert json.loads(reply.body)["ok"] is False and error["code"].isupper() and error["text"], reply


class TestWebhookTillCompliance(ComplianceSuite):
    adapter: ClassVar[Adapter] = WebhookTillAdapter()


def test_driver_py_is_under_100_lines() -> None:
    lines = (Path(__file__).parent / "webhook_till" / "driver.py").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 100, len(lines)
