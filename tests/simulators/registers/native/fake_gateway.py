"""A small fake of the gateway's native JSON API (aiohttp on 127.0.0.1:0), for the till sim tests.

It validates every request strictly against GATEWAY_API.md (integer kopecks and thousandths,
required fields, RFC 3339 times with an offset) and records what it saw; problems go to
``schema_errors`` and get a 400. Calculations give 5 % off discountable lines (kept above the
minimum price), plus up to 10 points when ``redeem_max`` is asked. Commits are deduplicated by
the receipt's identity. Knobs on the instance make it misbehave for specific tests.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime
from typing import Any

from aiohttp import web

LINE_FIELDS = {"line_id": str, "sku": str, "name": str, "price": int, "qty_milli": int, "amount": int}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class FakeGateway:
    def __init__(self, api_key: str = "secret") -> None:
        self.api_key = api_key
        self.requests: list[tuple[str, dict[str, Any]]] = []  # authorized requests only
        self.unauthorized: list[str] = []
        self.schema_errors: list[str] = []
        self.calc_answers: dict[str, dict[str, Any]] = {}  # identity -> last answer
        self.keys: dict[str, str] = {}  # identity -> key
        self.sales: dict[str, dict[str, Any]] = {}  # key -> body
        self.refunds: dict[str, dict[str, Any]] = {}
        self.cancels: dict[str, dict[str, Any]] = {}
        self.attempts: Counter[str] = Counter()
        # knobs
        self.fail_sales: int = 0  # 503 for the first N attempts of each sale
        self.delay_first_sale_s: float = 0.0
        self.bad_answer: bool = False
        self.offline: bool = False
        self.reject_redeem: bool = False
        self.dedup: bool = True
        self.accept_any_key: bool = False
        self.reject_sales_400: bool = False
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        for name in ("identify", "calculate", "sales", "refunds", "cancels"):
            app.router.add_post(f"/v1/native/{name}", self._handler(name))
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def seen(self, endpoint: str) -> list[dict[str, Any]]:
        return [body for name, body in self.requests if name == endpoint]

    # -- plumbing --------------------------------------------------------------------------

    def _handler(self, name: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {self.api_key}" and not self.accept_any_key:
                self.unauthorized.append(name)
                return _error(401, "UNAUTHORIZED", "bad key")
            try:
                body = json.loads(await request.read())
            except ValueError:
                return self._bad("body is not JSON", "")
            self.requests.append((name, body))
            handler = getattr(self, f"_{name}")
            result: web.Response = await handler(body)
            return result

        return handle

    def _bad(self, message: str, field: str) -> web.Response:
        self.schema_errors.append(f"{field}: {message}")
        return _error(400, "BAD_REQUEST", message, field)

    def _check_receipt(self, body: dict[str, Any], *, sale: bool) -> web.Response | None:
        if not isinstance(body.get("register_id"), str) or not body["register_id"]:
            return self._bad("required", "register_id")
        lines = body.get("lines")
        if not isinstance(lines, list) or not lines:
            return self._bad("required", "lines")
        for i, line in enumerate(lines):
            for name, kind in LINE_FIELDS.items():
                value = line.get(name)
                if not (_is_int(value) if kind is int else isinstance(value, kind)):
                    return self._bad(f"{name} must be {kind.__name__}", f"lines[{i}].{name}")
            if line["qty_milli"] <= 0 or line["amount"] < 0 or line["price"] < 0:
                return self._bad("out of range", f"lines[{i}]")
            for flag in ("discountable", "accruable"):
                if flag in line and not isinstance(line[flag], bool):
                    return self._bad("must be a boolean", f"lines[{i}].{flag}")
            if "min_unit_price" in line and not _is_int(line["min_unit_price"]):
                return self._bad("must be an integer", f"lines[{i}].min_unit_price")
        if "occurred_at" in body:
            try:
                if datetime.fromisoformat(body["occurred_at"]).tzinfo is None:
                    return self._bad("needs an offset", "occurred_at")
            except (TypeError, ValueError):
                return self._bad("not RFC 3339", "occurred_at")
        if sale:
            for name in ("receipt_number", "shift"):
                if not isinstance(body.get(name), str) or not body[name]:
                    return self._bad("required", name)
            if not _is_int(body.get("redeemed_points")) or body["redeemed_points"] < 0:
                return self._bad("must be a non-negative integer", "redeemed_points")
            for j, pay in enumerate(body.get("payments", [])):
                if not isinstance(pay.get("kind"), str) or not _is_int(pay.get("amount")):
                    return self._bad("kind and integer amount", f"payments[{j}]")
        return None

    @staticmethod
    def identity(body: dict[str, Any]) -> str:
        if body.get("document_id"):
            return f"{body['register_id']}:doc:{body['document_id']}"
        return f"{body['register_id']}:{body['shift']}:{body['receipt_number']}:{body.get('fiscal_sign', '')}"

    # -- endpoints -------------------------------------------------------------------------

    async def _identify(self, body: dict[str, Any]) -> web.Response:
        customer = body.get("customer")
        if not isinstance(customer, dict) or not customer:
            return self._bad("required", "customer")
        return web.json_response({"found": True, "customer_id": "c-1", "display_name": "Анна К.",
                                  "tier": "base", "balance": 500, "offline": self.offline})

    async def _calculate(self, body: dict[str, Any]) -> web.Response:
        if (bad := self._check_receipt(body, sale=False)) is not None:
            return bad
        if self.reject_redeem and body.get("redeem_max"):
            return web.json_response({"lines": [], "rejection": "REDEMPTION_NOT_PERMITTED",
                                      "message": "weak identification", "redeemed_points": 0,
                                      "points_to_accrue": 0, "max_points": 0, "payable": 0,
                                      "offline": False, "customer": None, "hold_id": ""})
        out, capacity = [], []
        for line in body["lines"]:
            floor = -(-line.get("min_unit_price", 0) * line["qty_milli"] // 1000)
            cap = max(0, line["amount"] - floor) if line.get("discountable", True) else 0
            d = min(cap, line["amount"] * 5 // 100)
            out.append({"line_id": line["line_id"], "discount": d, "paid": line["amount"] - d})
            capacity.append(cap - d)
        points = min(10, sum(capacity) // 100) if body.get("redeem_max") and body.get("customer") else 0
        left = points * 100
        for item, cap in zip(out, capacity, strict=True):
            take = min(cap, left)
            item["discount"] += take
            item["paid"] -= take
            left -= take
        if self.bad_answer:
            out[0]["paid"] = -1
        payable = sum(i["paid"] for i in out)
        answer = {"lines": out, "redeemed_points": points, "points_to_accrue": max(payable, 0) // 10000,
                  "max_points": points, "payable": payable, "offline": self.offline,
                  "customer": None, "hold_id": "h-1" if points else "", "message": "", "rejection": None}
        self.calc_answers[f"{body['register_id']}/{body.get('shift')}/{body.get('receipt_number')}"] = answer
        return web.json_response(answer)

    async def _sales(self, body: dict[str, Any]) -> web.Response:
        if (bad := self._check_receipt(body, sale=True)) is not None:
            return bad
        ident = self.identity(body)
        self.attempts[ident] += 1
        if self.attempts[ident] <= self.fail_sales:
            return _error(503, "STORAGE_UNAVAILABLE", "outbox not writable, retry")
        if self.delay_first_sale_s and self.attempts[ident] == 1:
            await asyncio.sleep(self.delay_first_sale_s)
        if self.reject_sales_400:
            return self._bad("rejected by the test", "lines")
        return self._commit(self.sales, ident, f"sale:{ident}", body)

    async def _refunds(self, body: dict[str, Any]) -> web.Response:
        if not body.get("refund_id") or not isinstance(body.get("sale"), dict):
            return self._bad("refund_id and sale required", "refund_id")
        if not body.get("full") and not all(_is_int(x.get("qty_milli")) for x in body.get("lines", [None])):
            return self._bad("lines with integer qty_milli, or full", "lines")
        ident = f"{body['register_id']}:refund:{body['refund_id']}"
        return self._commit(self.refunds, ident, ident, body)

    async def _cancels(self, body: dict[str, Any]) -> web.Response:
        if not body.get("cancel_id") or not isinstance(body.get("sale"), dict):
            return self._bad("cancel_id and sale required", "cancel_id")
        ident = f"{body['register_id']}:cancel:{body['cancel_id']}"
        return self._commit(self.cancels, ident, ident, body)

    def _commit(
        self, store: dict[str, dict[str, Any]], ident: str, key: str, body: dict[str, Any]
    ) -> web.Response:
        duplicate = ident in self.keys
        if duplicate and not self.dedup:
            key = f"{key}#{self.attempts[ident]}"
            duplicate = False
        self.keys.setdefault(ident, key)
        store[key] = body
        return web.json_response({"key": key, "duplicate": duplicate})


def _error(status: int, code: str, message: str, field: str = "") -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "field": field}}, status=status)
