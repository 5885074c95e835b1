"""The driver compliance suite applied to the MoySklad driver (MoySklad's cloud calling the Loyalty API).

MoySklad's cloud carries nothing from recalc to sale (no field of the sale is ours to fill): the
recalc keeps its calc token in the driver's state under the key its goods, counterparty and store
make (``drivers.moysklad.mapping.calc_key``) and the sale of those goods commits with it. So the
suite's calc-token checks run here with the token put where the recalc keeps it, instead of in a
field of the request (``sale_with_token`` cannot be one request); the assertions are the suite's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from drivers.moysklad import mapping, wire
from gateway.calc_token import CalcTokens
from tests.drivers.compliance import TOKEN_CUSTOMER, Adapter, ComplianceSuite
from tests.drivers.compliance_harness import TOKENS, Reply, Request, calc_token, running, stored_events
from tests.drivers.moysklad import payloads as p


def _post(path: str, body: Any, headers: dict[str, str] = p.HEADERS, note: str = "") -> Request:
    return Request(path, p.dumps(body), dict(headers), note=note)


class MoySkladAdapter(Adapter):
    name = "moysklad"

    def options(self) -> dict[str, Any]:
        return {"tokens": [p.TOKEN]}

    def calc(self) -> Request:
        return _post("/retaildemand/recalc", p.recalc())

    def commits(self) -> dict[str, Request]:
        return {
            "sale": _post("/retaildemand", p.sale()),
            "refund": _post("/retailsalesreturn", p.sales_return()),
        }

    def sale_with_token(self, token: str) -> Request:
        raise NotImplementedError("MoySklad's sale carries no calc token: the recalc keeps it (docstring)")

    def bad_inputs(self) -> list[Request]:
        return [
            _post("/retaildemand", b"{", note="malformed JSON"),
            _post("/retaildemand", {**p.sale(), "positions": []}, note="no positions"),
            _post("/retaildemand", p.sale(pos=[p.position("x", -1, 10)]), note="negative quantity"),
            _post("/retaildemand", p.sale(pos=[p.position("x", 1, "1e30")]), note="huge price"),
            _post("/retaildemand", p.sale(spend=5), note="spending more than any recalc allowed"),
            _post("/retaildemand/recalc", {**p.recalc(), "retailStore": {}}, note="no retail store"),
            _post("/retaildemand/recalc", p.recalc(spending=True, preferred=-5), note="negative preference"),
            _post(
                "/retailsalesreturn",
                {**p.sales_return(), "meta": {"id": ""}, "name": ""},
                note="return without id, name or moment",
            ),
            Request(
                "/counterparty?retailStoreId=x",
                b"",
                dict(p.HEADERS),
                method="GET",
                note="search without text",
            ),
        ]

    def unauthorized(self) -> list[Request]:
        return [
            _post("/retaildemand", p.sale(), {"Content-Type": "application/json"}, note="no token"),
            _post(
                "/retaildemand",
                p.sale(),
                {**p.HEADERS, "Lognex-Discount-API-Auth-Token": "nope"},
                note="wrong token",
            ),
            _post(
                "/retaildemand/recalc",
                p.recalc(),
                {"Authorization": f"Bearer {p.TOKEN}"},
                note="wrong header",
            ),
        ]

    def check_ok(self, kind: str, reply: Reply, *, duplicate: bool) -> None:
        assert reply.status == 201, reply
        assert reply.body == b"", reply

    def check_calc(self, reply: Reply, *, online: bool) -> None:
        assert reply.status == 200, reply
        body = json.loads(reply.body)
        assert [(x["price"], x["discountedPrice"]) for x in body["positions"]] == [(500, 500), (250, 250)], (
            body
        )
        assert body["bonusProgram"]["bonusValueToSpend"] == 0 and body["needVerification"] is False, body

    def check_error(self, reply: Reply) -> None:
        body = json.loads(reply.body)
        [item] = body["errors"]
        assert item["error"] and item["error_message"] and isinstance(item["code"], int), body


class TestMoySkladCompliance(ComplianceSuite):
    adapter: ClassVar[Adapter] = MoySkladAdapter()

    async def _sale_after(self, token: str, spend: int, tmp_path: Path) -> tuple[Reply, list[Any]]:
        """A sale spending ``spend`` whose recalc left ``token`` (codes are the driver tests' business)."""
        body = p.sale(spend=spend)
        doc = wire.parse_sale(p.dumps(body))
        key = mapping.calc_key(doc.store, doc.agent, doc.positions)
        options = {**self.adapter.options(), "codes_for_spending": False}
        async with running(self.adapter.name, options, tmp_path) as gw:
            assert gw.daemon.outbox is not None
            await gw.daemon.outbox.put_state(self.adapter.name, key, token)  # as the recalc keeps it
            reply = await gw.send(_post("/retaildemand", body))
            if reply.status < 300:
                self.adapter.check_ok("sale", reply, duplicate=False)
            else:
                self.adapter.check_error(reply)
            return reply, stored_events(gw.outbox_path)

    async def test_calc_token_brought_back_is_applied_and_never_stored(self, tmp_path: Path) -> None:
        token = calc_token(hold_id="hold-c", redeemed=7, offline=True, customer=TOKEN_CUSTOMER)
        reply, [event] = await self._sale_after(token, 7, tmp_path)
        assert reply.status == 201, reply
        assert event.offline and event.hold_id == "hold-c" and event.expected_redeemed == 7
        assert event.receipt is not None and event.receipt.customer == TOKEN_CUSTOMER
        assert not event.calc_token

    @pytest.mark.parametrize("forge", ["altered", "foreign", "garbage"])
    async def test_forged_calc_token_is_refused_and_nothing_stored(self, forge: str, tmp_path: Path) -> None:
        """A token the gateway cannot verify (its key file replaced, its state tampered with) grants
        nothing: the sale spending what it claims is refused in MoySklad's shape, nothing stored."""
        good = calc_token(redeemed=5000, customer=TOKEN_CUSTOMER)
        token = {"altered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
                 "foreign": CalcTokens(b"k" * 32).issue(TOKENS.read(good)),
                 "garbage": "c1.not-a.token"}[forge]
        reply, events = await self._sale_after(token, 5000, tmp_path)
        assert 400 <= reply.status < 500, reply
        assert events == []


async def test_the_same_document_id_with_other_content_is_refused_and_counted_as_a_conflict(
    tmp_path: Path,
) -> None:
    """In the real daemon: 409 in the errors shape; the copy is a RECEIPT_CONFLICT row of the operator
    queue (the first sale untouched) and ``posgw_outbox_events_total{outcome="conflict"}`` counts it."""
    adapter = MoySkladAdapter()
    other = p.sale(pos=[p.position("1d2c3b4a-0b6c-11ef-0a80-0d6e00778899", 3, 500.00)])
    async with running(adapter.name, adapter.options(), tmp_path) as gw:
        adapter.check_ok("sale", await gw.send(_post("/retaildemand", p.sale())), duplicate=False)
        refused = await gw.send(_post("/retaildemand", other))
        assert refused.status == 409, refused
        adapter.check_error(refused)
        adapter.check_ok("sale", await gw.send(_post("/retaildemand", p.sale())), duplicate=True)
        rows = gw.rows()
        metrics = (await gw.get("/metrics")).text()
    key = "moysklad:demand:5f6e7d8c-6ea1-11f0-0a80-0d6e00aabbcc"
    assert [k for k, _ in rows] == [key, f"{key}:conflict:1"] and rows[1][1] == "rejected", rows
    assert 'posgw_outbox_events_total{outcome="conflict"} 1.0' in metrics
