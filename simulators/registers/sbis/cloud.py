"""A fake SBIS (Saby) cloud on 127.0.0.1, written from ../shared/protocols/sbis.md (never from the driver).

Serves, from one base URL (auth and API hosts alike):
- ``POST /oauth/service/`` (service app keys -> ``{"token", "sid"}``; wrong keys 401 JSON) and
  ``POST /auth/service/`` (JSON-RPC ``СБИС.Аутентифицировать`` -> sid; a 6th concurrent login is refused;
  ``СБИС.Выход`` logs out); tokens and sids expire after ``token_ttl_s`` (then 401);
- ``GET /ofd/v1/orgs/{inn}/kkts``, ``.../kkts/{regId}/storages``, ``.../storages/{fn}/docs`` with
  ``dateFrom``/``dateTo`` (inclusive, compared with ``dateTime`` as wall-clock text shifted by
  ``skew_s``: a zone mismatch) and ``limit`` (the first ``limit`` rows by dateTime; rows shuffled);
- misbehaviour on demand: queued faults for the next OFD requests (``429`` with or without
  ``Retry-After``, an HTML ``502`` page, a ``stall`` past the client's deadline, a malformed page,
  a ``403``: no OFD rights), the ``{"Result": "<JSON text>"}`` wrapper, token expiry, a replaced
  fiscal drive, a document read again with another fiscal sign, late uploads (documents published
  after later ones).

Every request is recorded (``requests``) for assertions. Documents are FFD-JSON ``receipt`` /
``openShift`` / ``closeShift`` wrappers with integer kopecks.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

HTML_502 = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@dataclass
class Storage:
    fn: str
    effective_from: int  # raw seconds (documents' wall clock)
    effective_to: int | None = None


@dataclass
class Kkt:
    reg_id: str
    storages: list[Storage] = field(default_factory=list)

    @property
    def current(self) -> Storage:
        return next(s for s in reversed(self.storages) if s.effective_to is None)


def wall(raw: int) -> str:
    return datetime.fromtimestamp(raw, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_wall(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


class FakeSbis:
    """The cloud's state and handlers; ``async with cloud.serving(): ... cloud.url``."""

    def __init__(
        self,
        *,
        inn: str = "7701234567",
        app: tuple[str, str, str] = ("app-id", "app-secret", "app-key"),
        login: tuple[str, str] = ("shop", "pass"),
        token_ttl_s: float = 1200.0,
        max_logins: int = 5,
        skew_s: int = 0,
        wrap_result: bool = False,
        seed: int = 1,
    ) -> None:
        self.inn, self.app, self.login = inn, app, login
        self.token_ttl_s, self.max_logins, self.skew_s, self.wrap_result = (
            token_ttl_s,
            max_logins,
            skew_s,
            wrap_result,
        )
        self.kkts: dict[str, Kkt] = {}
        self.docs: dict[str, list[dict[str, Any]]] = {}  # fn -> published wrappers, publishing order
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.faults: list[str] = []  # for the next OFD requests: 429, 429:<s>, html, stall, malformed
        self.tokens: dict[str, float] = {}  # token or sid -> expiry (monotonic)
        self.sessions: dict[str, float] = {}
        self.stall_s = 35.0  # a "stall" fault holds the answer this long (past a 30 s client deadline)
        self.fetches = 0
        self._released = asyncio.Event()
        self._released.set()
        self._rng = random.Random(seed)
        self.url = ""

    # ------------------------------------------------------------------ scripting

    def add_register(self, reg_id: str, fn: str, effective_from: int) -> None:
        self.kkts[reg_id] = Kkt(reg_id, [Storage(fn, effective_from)])
        self.docs.setdefault(fn, [])

    def replace_drive(self, reg_id: str, new_fn: str, at: int) -> None:
        kkt = self.kkts[reg_id]
        kkt.current.effective_to = at
        kkt.storages.append(Storage(new_fn, at))
        self.docs.setdefault(new_fn, [])

    def publish(self, fn: str, *wrappers: dict[str, Any]) -> None:
        """Make documents visible (uploaded to the OFD) after everything published so far."""
        self.docs.setdefault(fn, []).extend(wrappers)

    def resign(self, fn: str, fd: int, sign: int) -> None:
        """The cloud now lists document ``fd`` of ``fn`` with another fiscal sign."""
        for wrapper in self.docs[fn]:
            body = next(iter(wrapper.values()))
            if body.get("fiscalDocumentNumber") == fd:
                body["fiscalSign"] = sign

    def expire_tokens(self) -> None:
        self.tokens.clear()
        self.sessions.clear()

    def stall(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def ofd_requests(self) -> int:
        return sum(1 for _, path, _ in self.requests if path.startswith("/ofd/"))

    # ------------------------------------------------------------------ handlers

    def _answer(self, body: Any, status: int = 200) -> web.Response:
        if self.wrap_result and status == 200:
            body = {"Result": json.dumps(body, ensure_ascii=False)}
        return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    def _record(self, request: web.Request) -> None:
        self.requests.append((request.method, request.path, dict(request.query)))

    async def oauth(self, request: web.Request) -> web.Response:
        self._record(request)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": {"code": "bad_request", "message": "not JSON"}}, status=400)
        if (
            not isinstance(body, dict)
            or (body.get("app_client_id"), body.get("app_secret"), body.get("secret_key")) != self.app
        ):
            return web.json_response({"error": {"code": "unauthorized", "message": "bad keys"}}, status=401)
        token, sid = secrets.token_hex(16), secrets.token_hex(8)
        self.tokens[token] = time.monotonic() + self.token_ttl_s
        return web.json_response({"token": token, "sid": sid})

    async def rpc(self, request: web.Request) -> web.Response:
        self._record(request)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response(
                {"jsonrpc": "2.0", "error": {"code": -32700, "message": "parse"}, "id": None}
            )
        method, rid = body.get("method"), body.get("id")
        if method == "СБИС.Выход":
            self.sessions.pop(request.headers.get("X-SBISSessionID", ""), None)
            return web.json_response({"jsonrpc": "2.0", "result": True, "id": rid})
        param = (body.get("params") or {}).get("Параметр") or {}
        if method != "СБИС.Аутентифицировать" or (param.get("Логин"), param.get("Пароль")) != self.login:
            return web.json_response(
                {
                    "jsonrpc": "2.0",
                    "error": {"code": -32000, "message": "Неверный логин или пароль", "details": "auth"},
                    "id": rid,
                }
            )
        now = time.monotonic()
        live = [s for s, exp in self.sessions.items() if exp > now]
        if len(live) >= self.max_logins:
            return web.json_response(
                {"jsonrpc": "2.0", "error": {"code": -32001, "message": "too many sessions"}, "id": rid}
            )
        sid = secrets.token_hex(12)
        self.sessions[sid] = now + self.token_ttl_s
        return web.json_response({"jsonrpc": "2.0", "result": sid, "id": rid})

    def _authorised(self, request: web.Request) -> bool:
        now = time.monotonic()
        token = request.headers.get("X-SBISAccessToken", "")
        sid = request.headers.get("X-SBISSessionID", "")
        return self.tokens.get(token, 0) > now or self.sessions.get(sid, 0) > now

    async def _ofd_gate(self, request: web.Request) -> web.Response | None:
        self._record(request)
        self.fetches += 1
        await self._released.wait()
        if not self._authorised(request):
            return web.json_response(
                {"error": {"code": "unauthorized", "message": "token expired"}}, status=401
            )
        if not self.faults:
            return None
        fault = self.faults.pop(0)
        if fault.startswith("429"):
            headers = {"Retry-After": fault.split(":", 1)[1]} if ":" in fault else {}
            return web.json_response({"error": "too many requests"}, status=429, headers=headers)
        if fault == "403":
            return web.json_response(
                {"error": {"code": "forbidden", "message": "нет прав на ОФД"}}, status=403
            )
        if fault == "html":
            return web.Response(body=HTML_502, status=502, content_type="text/html")
        if fault == "stall":
            await asyncio.sleep(self.stall_s)
        if fault == "malformed":
            return web.Response(
                body=b'[{"receipt": {"fiscalDocumentNumber": 1', content_type="application/json"
            )
        return None

    async def kkt_list(self, request: web.Request) -> web.Response:
        if (refused := await self._ofd_gate(request)) is not None:
            return refused
        if request.match_info["inn"] != self.inn:
            return web.json_response({"error": "org not found"}, status=404)
        return self._answer(
            [
                {
                    "regId": k.reg_id,
                    "fsNumber": k.current.fn,
                    "address": "Москва, ул. Тестовая, 1",
                    "kktSalesPoint": "Магазин",
                    "status": 2,
                }
                for k in self.kkts.values()
            ]
        )

    async def storage_list(self, request: web.Request) -> web.Response:
        if (refused := await self._ofd_gate(request)) is not None:
            return refused
        kkt = self.kkts.get(request.match_info["reg"])
        if kkt is None:
            return web.json_response({"error": "kkt not found"}, status=404)
        rows = []
        for s in kkt.storages:
            row: dict[str, Any] = {
                "fsNumber": s.fn,
                "status": 2 if s.effective_to is None else 3,
                "effectiveFrom": wall(s.effective_from),
            }
            if s.effective_to is not None:
                row["effectiveTo"] = wall(s.effective_to)
            rows.append(row)
        return self._answer(rows)

    async def doc_list(self, request: web.Request) -> web.Response:
        if (refused := await self._ofd_gate(request)) is not None:
            return refused
        fn = request.match_info["fn"]
        try:
            lo = parse_wall(request.query["dateFrom"]) + self.skew_s
            hi = (
                parse_wall(request.query["dateTo"]) + self.skew_s
                if "dateTo" in request.query
                else int(time.time())
            )
            limit = int(request.query.get("limit", "1000"))
        except (KeyError, ValueError):
            return web.json_response({"error": "bad dateFrom/dateTo/limit"}, status=400)
        rows = [w for w in self.docs.get(fn, []) if lo <= _at(w) <= hi]
        rows = sorted(rows, key=_at)[: max(1, min(limit, 1000))]
        self._rng.shuffle(rows)  # the order of rows is not promised
        return self._answer(rows)

    @asynccontextmanager
    async def serving(self, port: int = 0) -> AsyncIterator[FakeSbis]:
        """Serve on 127.0.0.1:``port`` (0: any free port) for the duration of the block."""
        app = web.Application()
        app.router.add_post("/oauth/service/", self.oauth)
        app.router.add_post("/auth/service/", self.rpc)
        app.router.add_get("/ofd/v1/orgs/{inn}/kkts", self.kkt_list)
        app.router.add_get("/ofd/v1/orgs/{inn}/kkts/{reg}/storages", self.storage_list)
        app.router.add_get("/ofd/v1/orgs/{inn}/kkts/{reg}/storages/{fn}/docs", self.doc_list)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            yield self
        finally:
            self.release()
            await runner.cleanup()


def _at(wrapper: dict[str, Any]) -> int:
    body = next(iter(wrapper.values()))
    at = body.get("dateTime")
    return at if isinstance(at, int) else 0


def receipt(
    *,
    fn: str,
    fd: int,
    reg_id: str,
    at: int,
    items: list[tuple[str, int, int]],
    op: int = 1,
    phone: str = "",
    shift: int = 1,
    sign: int | None = None,
) -> dict[str, Any]:
    """An FFD ``receipt`` wrapper: items (name, price kopecks, quantity thousandths), cashless."""
    rows = []
    for name, price, qty in items:
        quantity: Any = qty // 1000 if qty % 1000 == 0 else qty / 1000  # repr is the exact decimal
        rows.append({"name": name, "price": price, "quantity": quantity, "sum": price * qty // 1000})
    total = sum(r["sum"] for r in rows)
    body: dict[str, Any] = {
        "code": 3,
        "operationType": op,
        "dateTime": at,
        "totalSum": total,
        "cashTotalSum": 0,
        "ecashTotalSum": total,
        "fiscalDriveNumber": fn,
        "fiscalDocumentNumber": fd,
        "kktRegId": reg_id,
        "shiftNumber": shift,
        "fiscalSign": sign if sign is not None else (fd * 2654435761) % 4294967291,
        "operator": "Кассир Иванова",
        "items": rows,
        "receiveDateTime": at + 5,
    }
    if phone:
        body["buyerPhoneOrAddress"] = phone
    return {"receipt": body}


def shift_doc(kind: str, *, fn: str, fd: int, at: int, shift: int) -> dict[str, Any]:
    return {
        kind: {
            "code": 2 if kind == "openShift" else 5,
            "fiscalDriveNumber": fn,
            "fiscalDocumentNumber": fd,
            "dateTime": at,
            "shiftNumber": shift,
            "fiscalSign": fd * 7919,
        }
    }
