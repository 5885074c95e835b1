"""HTTP client side of the native JSON API, as a till uses it (thin I/O).

Owns the wire details: URL layout (``{gateway}/v1/native/<endpoint>``), the bearer token, a
total timeout on every request, optional slow reading of responses, and the retry loop for
commits (tenacity: exponential backoff with jitter), which resends the *same* body, so the
same receipt identity, after a 5xx, a timeout or a refused connection.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_exponential, wait_random

RETRY_STATUSES = frozenset({500, 502, 503, 504})


class TransportError(Exception):
    """No HTTP answer: timeout, refused or dropped connection. ``timeout`` tells which."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class RetriableStatus(Exception):
    """A 5xx answer the till retries (503 STORAGE_UNAVAILABLE above all)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"HTTP {reply.status} {reply.error_text()}")
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, parsed JSON body (None if not JSON), time taken."""

    status: int
    data: Any
    elapsed_ms: float

    def error_text(self) -> str:
        error = self.data.get("error") if isinstance(self.data, dict) else None
        if isinstance(error, dict):
            return " ".join(str(error.get(k, "")) for k in ("code", "field", "message")).strip()
        return ""


@dataclass(frozen=True, slots=True)
class Delivered:
    """A commit that got a final (non-retriable) answer, and what it took."""

    reply: Reply
    attempts: int
    timeouts: int


class NativeClient:
    """Posts bodies to one gateway with one API key over a shared aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, gateway_url: str, api_key: str, *,
                 slow_read_ms: int = 0) -> None:
        self._session = session
        self._base = gateway_url.rstrip("/") + "/v1/native/"
        self._key = api_key
        self.slow_read_ms = slow_read_ms

    async def post(self, endpoint: str, body: dict[str, Any], *, timeout_s: float,
                   api_key: str | None = None) -> Reply:
        """One POST; raises :class:`TransportError` when no answer came within ``timeout_s``."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        headers = {"Authorization": f"Bearer {self._key if api_key is None else api_key}"}
        try:
            async with asyncio.timeout(timeout_s):
                async with self._session.post(self._base + endpoint, json=body, headers=headers) as resp:
                    raw = await self._read(resp)
                    status = resp.status
        except TimeoutError as exc:
            raise TransportError(f"{endpoint}: no answer in {timeout_s:g} s", timeout=True) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"{endpoint}: {type(exc).__name__}: {exc}") from exc
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return Reply(status, data, (loop.time() - started) * 1000)

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        if not self.slow_read_ms:
            return await resp.read()
        parts = []
        async for chunk in resp.content.iter_chunked(64):  # a till on a slow line
            parts.append(chunk)
            await asyncio.sleep(self.slow_read_ms / 1000)
        return b"".join(parts)

    async def commit(self, endpoint: str, body: dict[str, Any], *, timeout_s: float, retry_for_s: float,
                     first_timeout_s: float | None = None, max_attempts: int = 50) -> Delivered:
        """POST until a final answer: retries 5xx and transport errors with the same body.

        ``first_timeout_s`` shortens the first attempt (a till that gives up early, then
        resends). Raises the last :class:`TransportError` / :class:`RetriableStatus` when
        ``retry_for_s`` or ``max_attempts`` runs out.
        """
        attempts = timeouts = 0
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((TransportError, RetriableStatus)),
            stop=stop_after_delay(retry_for_s) | stop_after_attempt(max_attempts),
            wait=wait_exponential(multiplier=0.05, max=1.0) + wait_random(0, 0.05),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                attempts += 1
                limit = first_timeout_s if attempts == 1 and first_timeout_s else timeout_s
                try:
                    reply = await self.post(endpoint, body, timeout_s=limit)
                except TransportError as exc:
                    timeouts += exc.timeout
                    raise
                if reply.status in RETRY_STATUSES:
                    raise RetriableStatus(reply)
                return Delivered(reply, attempts, timeouts)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover
