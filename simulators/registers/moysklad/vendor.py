"""MoySklad's Vendor API as `posgw moysklad register` meets it: ``PUT``/``PATCH``
``/api/vendor/1.0/apps/{appId}/{accountId}/loyalty`` (protocol notes §2).

A real aiohttp server on 127.0.0.1: ``Authorization: Bearer <vendor JWT>`` required (401 otherwise);
PUT needs all of ``url`` (string), ``token`` (string) and ``externalSearch`` (boolean), PATCH any
of them (400 with code 2006-style errors otherwise); an unknown (appId, accountId) is 404 (code
2004); a solution in another state than SettingsRequired/Installed is 400 (code 2007). Success is
200 with an empty body. ``registered`` holds what each account has; ``fail_next`` makes the next
call answer 500 (a failing Vendor API).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PATH = "/api/vendor/1.0/apps/{app_id}/{account_id}/loyalty"
FIELDS = {"url": str, "token": str, "externalSearch": bool}


def _error(status: int, code: int, text: str) -> web.Response:
    return web.json_response({"errors": [{"error": text, "code": code}]}, status=status)


@dataclass
class VendorApi:
    jwt: str
    installed: dict[tuple[str, str], str] = field(default_factory=dict)  # (app, account) -> state
    registered: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: int = 0
    fail_next: bool = False

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if request.headers.get("Authorization", "") != f"Bearer {self.jwt}":
            return _error(401, 1056, "Ошибка аутентификации")
        if self.fail_next:
            self.fail_next = False
            return _error(500, 1000, "Внутренняя ошибка")
        key = (request.match_info["app_id"], request.match_info["account_id"])
        state = self.installed.get(key)
        if state is None:
            return _error(404, 2004, "Решение не установлено на аккаунт")
        if state not in ("SettingsRequired", "Installed"):
            return _error(400, 2007, "Установка решения не завершена")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, 1000, "Тело запроса не JSON")
        if not isinstance(body, dict):
            return _error(400, 1000, "Тело запроса не объект")
        wanted = FIELDS if request.method == "PUT" else {k: v for k, v in FIELDS.items() if k in body}
        if not wanted or any(not isinstance(body.get(k), t) for k, t in wanted.items()):
            return _error(400, 1000, f"Нужны поля {', '.join(FIELDS)}")
        self.registered[key] = {**self.registered.get(key, {}), **{k: body[k] for k in wanted}}
        return web.Response(status=200)


@asynccontextmanager
async def serving(api: VendorApi) -> AsyncIterator[str]:
    """The Vendor API on 127.0.0.1:<free port>; yields its base URL (``http://127.0.0.1:N``)."""
    app = web.Application()
    app.router.add_put(PATH, api.handle)
    app.router.add_patch(PATH, api.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
