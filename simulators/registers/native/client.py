"""HTTP client side of the native JSON API, as a till uses it (thin I/O over the shared Poster).

Owns the native wire details only: URL layout (``{gateway}/v1/native/<endpoint>``), the bearer
token, the body encoding (``json.dumps`` defaults, as aiohttp's ``json=`` sends it) and how the
gateway's ``{"error": {code, field, message}}`` reads in a report. Timeouts, slow reading and
the commit retry loop (the *same* body again after a 5xx, a timeout or a refused connection)
are :class:`~simulators.registers.http.Poster`'s.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from simulators.registers.http import Answer, Delivery, Poster, RetriableStatus, TransportError

__all__ = ["Delivery", "NativeClient", "Reply", "RetriableStatus", "TransportError"]


class Reply(Answer):
    """An answer of the native API; its error text is the gateway's error object."""

    __slots__ = ()

    def error_text(self) -> str:
        error = self.data.get("error") if isinstance(self.data, dict) else None
        if isinstance(error, dict):
            return " ".join(str(error.get(k, "")) for k in ("code", "field", "message")).strip()
        return ""


class NativeClient:
    """Posts bodies to one gateway with one API key over a shared aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, gateway_url: str, api_key: str, *,
                 slow_read_ms: int = 0) -> None:
        self._poster = Poster(session, gateway_url.rstrip("/") + "/v1/native", slow_read_ms=slow_read_ms,
                              answer_type=Reply)
        self._key = api_key

    def _headers(self, api_key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key if api_key is None else api_key}"}

    async def post(self, endpoint: str, body: dict[str, Any], *, timeout_s: float,
                   api_key: str | None = None) -> Answer:
        """One POST; raises :class:`TransportError` when no answer came within ``timeout_s``."""
        return await self._poster.send(endpoint, json.dumps(body).encode(), headers=self._headers(api_key),
                                       timeout_s=timeout_s)

    async def commit(self, endpoint: str, body: dict[str, Any], *, timeout_s: float, retry_for_s: float,
                     first_timeout_s: float | None = None, max_attempts: int = 50) -> Delivery:
        """POST until a final answer: retries 5xx and transport errors with the same body.

        ``first_timeout_s`` shortens the first attempt (a till that gives up early, then
        resends). Raises the last :class:`TransportError` / :class:`RetriableStatus` when
        ``retry_for_s`` or ``max_attempts`` runs out.
        """
        return await self._poster.deliver(endpoint, json.dumps(body).encode(), headers=self._headers(),
                                          timeout_s=timeout_s, retry_for_s=retry_for_s,
                                          first_timeout_s=first_timeout_s, max_attempts=max_attempts)
