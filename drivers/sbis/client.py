"""HTTP to the SBIS cloud: one shared session or token, deadlines, pacing, Retry-After (thin I/O).

Invariants:
- **one** token (service app) or session id (login) per process, obtained and renewed under a
  lock: concurrent callers share it (SBIS limits concurrent logins per user); renewed every
  ``token_renew_s`` and once on a 401 (a second 401 is an ``auth`` VendorError); a login session
  is closed (``СБИС.Выход``) by :meth:`Client.close`;
- every request has a deadline (``aiohttp.ClientTimeout``: connect and total) and a bounded body;
- requests start at most ``max_rps`` per second; after a 429 (or a 503 with ``Retry-After``) no
  request is sent before the time the cloud asked for (capped at ``retry_after_max_s``): callers
  get a ``rate`` VendorError at once instead;
- every failure is a :class:`~drivers.sbis.wire.VendorError`, ``TimeoutError`` or
  ``aiohttp.ClientError``; nothing is retried here except the one renewal after a 401.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp

from drivers.sbis import wire
from drivers.sbis.config import Config

MAX_BODY = 32 << 20  # a docs page of 1000 receipts is a few MB


class Client:
    def __init__(
        self, session: aiohttp.ClientSession, config: Config, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._session, self._cfg, self._clock = session, config, clock
        self._timeout = aiohttp.ClientTimeout(
            total=config.request_timeout_s,
            sock_connect=config.connect_timeout_s,
            connect=config.connect_timeout_s,
        )
        self._auth_lock = asyncio.Lock()
        self._pace_lock = asyncio.Lock()
        self._credential = ""  # token or sid; "" = none yet
        self._sid = ""
        self._renew_at = 0.0
        self._next_start = 0.0
        self.not_before = 0.0  # monotonic: no request before (Retry-After)
        self.requests = 0  # sent (auth included)
        self.logins = 0

    # ------------------------------------------------------------------ API

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET ``api_url + path`` as JSON (the Result wrapper decoded); renews auth once on a 401."""
        for attempt in (1, 2):
            credential = await self._ensure_auth()
            try:
                return await self._call(
                    "GET",
                    self._cfg.api_url.rstrip("/") + path,
                    params=params,
                    headers=self._auth_headers(credential),
                )
            except wire.VendorError as exc:
                if exc.kind != "auth" or attempt == 2:
                    raise
                await self._invalidate(credential)
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Log a login session out (frees one of the user's concurrent logins); best effort, bounded."""
        if self._cfg.auth != "login" or not self._credential:
            return
        sid, self._credential = self._credential, ""
        try:
            await self._call(
                "POST",
                self._cfg.auth_url.rstrip("/") + "/auth/service/",
                data=wire.logout_request(),
                headers={"Content-Type": wire.RPC_CONTENT_TYPE, wire.SESSION_HEADER: sid},
            )
        except (wire.VendorError, aiohttp.ClientError, TimeoutError):
            pass

    # ------------------------------------------------------------------ auth

    def _auth_headers(self, credential: str) -> dict[str, str]:
        if self._cfg.auth == "login":
            return {wire.SESSION_HEADER: credential}
        headers = {wire.TOKEN_HEADER: credential}
        if self._sid:
            headers[wire.SESSION_HEADER] = self._sid
        return headers

    async def _ensure_auth(self) -> str:
        async with self._auth_lock:
            if not self._credential or self._clock() >= self._renew_at:
                self._credential = await self._authenticate()
                self._renew_at = self._clock() + self._cfg.token_renew_s
            return self._credential

    async def _invalidate(self, used: str) -> None:
        async with self._auth_lock:
            if self._credential == used:  # another caller may have renewed it already
                self._credential = ""

    async def _authenticate(self) -> str:
        cfg = self._cfg
        base = cfg.auth_url.rstrip("/")
        self.logins += 1
        if cfg.auth == "token":
            data = await self._call(
                "POST",
                base + "/oauth/service/",
                headers={"Content-Type": "application/json"},
                data=wire.token_request(
                    cfg.app_client_id, cfg.app_secret.get_secret_value(), cfg.secret_key.get_secret_value()
                ),
            )
            token, self._sid = wire.token_answer(data)
            return token
        data = await self._call(
            "POST",
            base + "/auth/service/",
            headers={"Content-Type": wire.RPC_CONTENT_TYPE},
            data=wire.login_request(cfg.login, cfg.password.get_secret_value()),
        )
        return wire.session_answer(data)

    # ------------------------------------------------------------------ one request

    async def _pace(self) -> None:
        wait = self.not_before - self._clock()
        if wait > 0:
            raise wire.VendorError("rate", f"the cloud asked to wait {wait:.0f} s more (Retry-After)")
        async with self._pace_lock:
            delay = self._next_start - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next_start = self._clock() + 1.0 / self._cfg.max_rps

    async def _call(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> Any:
        await self._pace()
        self.requests += 1
        async with self._session.request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            timeout=self._timeout,
            allow_redirects=False,
        ) as resp:
            body = await _read(resp)
            try:
                wire.check_status(
                    resp.status,
                    resp.headers.get("Content-Type", ""),
                    body,
                    resp.headers.get("Retry-After"),
                    datetime.now(UTC),
                )
            except wire.VendorError as exc:
                if exc.retry_after is not None:
                    self.not_before = self._clock() + min(exc.retry_after, self._cfg.retry_after_max_s)
                elif exc.kind == "rate":  # 429 without Retry-After: the first backoff step
                    self.not_before = self._clock() + self._cfg.backoff_initial_s
                raise
            return wire.load(body)


async def _read(resp: aiohttp.ClientResponse) -> bytes:
    if resp.content_length is not None and resp.content_length > MAX_BODY:
        raise wire.VendorError("malformed", f"answer of {resp.content_length} bytes is over {MAX_BODY}")
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_BODY:
            raise wire.VendorError("malformed", f"answer over {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
