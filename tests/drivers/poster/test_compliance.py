"""The driver compliance suite applied to the Poster driver (platform app + webhooks)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

from tests.drivers.compliance import Adapter, ComplianceSuite
from tests.drivers.compliance_harness import Reply, Request, running, stored_events
from tests.drivers.poster import payloads as p

APP = {"X-Gateway-Token": p.TOKEN, "Content-Type": "application/json"}
JSON = {"Content-Type": "application/json"}


def _req(path: str, body: Any, headers: dict[str, str] = APP, note: str = "") -> Request:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Request(path, data, dict(headers), note=note)


def _now_hook(**kw: Any) -> dict[str, Any]:
    return p.webhook(time=str(int(time.time())), **kw)


class PosterAdapter(Adapter):
    name = "poster"

    def options(self) -> dict[str, Any]:
        return {"pairing_tokens": [p.TOKEN], "application_secret": p.SECRET}

    def calc(self) -> Request:
        return _req("/pos-event", p.before_close())

    def commits(self) -> dict[str, Request]:
        return {
            "sale": _req("/pos-event", p.after_close()),
            "refund": _req("/pos-event", p.return_fiscal()),
            "cancel": _req("/webhook", _now_hook(), JSON, note="transaction removed webhook"),
        }

    def sale_with_token(self, token: str) -> Request:
        return _req("/pos-event", p.after_close(token=token))

    def bad_inputs(self) -> list[Request]:
        no_order = json.loads(p.after_close())
        del no_order["data"]["order"]
        return [
            _req("/pos-event", b"{", note="malformed JSON"),
            _req("/pos-event", {"event": "pay", "settings": p.settings()}, note="unknown event"),
            _req("/pos-event", no_order, note="afterOrderClose without the order"),
            _req("/webhook", {"account": "x"}, JSON, note="webhook missing fields"),
            _req("/webhook", dict(_now_hook(), data={"a": 1}), JSON, note="data not a string"),
        ]

    def unauthorized(self) -> list[Request]:
        stale = p.webhook(time=str(int(time.time()) - 30 * 86400))
        tampered = dict(_now_hook(), object_id=58032)
        return [
            _req("/pos-event", p.after_close(), JSON, note="no token"),
            _req("/pos-event", p.after_close(), {"X-Gateway-Token": "wrong"}, note="wrong token"),
            _req(
                "/pos-event",
                p.before_close(),
                {"X-Poster-Signature": "0" * 32, "X-Poster-Time": "1"},
                note="bad proxy signature",
            ),
            _req("/webhook", dict(_now_hook(), verify="0" * 32), JSON, note="bad verify"),
            _req("/webhook", tampered, JSON, note="tampered object_id"),
            _req("/webhook", stale, JSON, note="stale time"),
        ]

    def check_ok(self, kind: str, reply: Reply, *, duplicate: bool) -> None:
        assert reply.status == 200, reply
        body = json.loads(reply.body)
        if kind == "cancel":  # a webhook: Poster stops redelivering on 200 + {"status":"accept"}
            assert body == {"status": "accept"}, body
        else:
            assert body == {"accepted": True, "duplicate": duplicate}, body

    def check_calc(self, reply: Reply, *, online: bool) -> None:
        assert reply.status == 200, reply
        body = json.loads(reply.body)
        assert body["bonus"] == 0, body  # the stub core and the offline policy give no discount

    def check_error(self, reply: Reply) -> None:
        body = json.loads(reply.body)
        assert body["status"] == "error" and body["error"]["code"] and body["error"]["message"], body


class TestPosterCompliance(ComplianceSuite):
    adapter: ClassVar[Adapter] = PosterAdapter()


async def test_a_removal_before_its_order_closed_is_relinked_to_the_orders_sale(tmp_path: Path) -> None:
    """Poster can report a transaction removed before the app reports its order closed: the
    removal then names the transaction, a sale the core will never know. When the order closes,
    the waiting removal is made to name the order's sale instead (once), so it is applied."""
    options = PosterAdapter().options()
    async with running("poster", options, tmp_path, online=False) as gw:  # nothing leaves: rows stay
        early = await gw.send(_req("/webhook", _now_hook(object_id=58031), JSON, note="removed first"))
        assert early.status == 200
        sale = await gw.send(_req("/pos-event", p.after_close(name=58031)))
        assert sale.status == 200
        events = stored_events(gw.outbox_path)
    removal = next(e for e in events if e.kind == "refund")
    order_sale = next(e for e in events if e.kind == "sale")
    assert removal.sale_key == order_sale.key and removal.refund_full
    assert len(events) == 2  # relinked in place: no second removal, no conflict row
