"""The HTTP side every till simulator shares: one JSON request, and the at-least-once resend loop.

Owns:
- :class:`Poster`: one JSON request (POST/PUT) to ``{base_url}/{path}`` with a total timeout and
  optional slow reading of the answer (a till on a bad line), and :meth:`Poster.deliver`, the
  loop a till's forwarding outbox runs: the *same* body again after a timeout, a refused
  connection or a 5xx (exponential backoff with jitter, tenacity), until a final answer;
- :class:`Answer` (status, parsed JSON, time taken) and :class:`Delivery` (a final answer and
  what it took); a simulator whose gateway words its errors differently subclasses
  :class:`Answer` (``error_text``) and passes it as ``answer_type``;
- :class:`TransportError` (no answer) and :class:`RetriableStatus` (a 5xx, after retries ran out).

Never imports ``drivers``: the simulators speak the wire as the vendors describe it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
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


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, parsed JSON (None if not JSON), time taken."""

    status: int
    data: Any
    elapsed_ms: float

    def error_text(self) -> str:
        return json.dumps(self.data, ensure_ascii=False)[:200] if self.data is not None else ""


class RetriableStatus(Exception):
    """A 5xx answer a till retries (503 STORAGE_UNAVAILABLE above all); raised when retries ran out."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(f"HTTP {answer.status} {answer.error_text()}")
        self.answer = answer


@dataclass(frozen=True, slots=True)
class Delivery:
    """A request that got a final (non-retriable) answer, and what it took."""

    answer: Answer
    attempts: int
    timeouts: int


class Poster:
    """Sends JSON bodies to one gateway over a shared aiohttp session.

    ``path`` is joined to ``base_url`` with exactly one slash and names the request in errors.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        slow_read_ms: int = 0,
        answer_type: type[Answer] = Answer,
    ) -> None:
        self._session = session
        self.base = base_url.rstrip("/")
        self.slow_read_ms = slow_read_ms
        self._answer_type = answer_type

    async def send(
        self, path: str, body: Any, *, headers: Mapping[str, str], timeout_s: float, method: str = "POST"
    ) -> Answer:
        """One request; raises :class:`TransportError` when no answer came within ``timeout_s``.

        ``body`` as bytes goes as it is; anything else as JSON (``ensure_ascii=False``).
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        raw_body = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        hdrs = {"Content-Type": "application/json", **headers}
        url = f"{self.base}/{path.lstrip('/')}"
        try:
            async with asyncio.timeout(timeout_s):
                async with self._session.request(method, url, data=raw_body, headers=hdrs) as resp:
                    raw = await self._read(resp)
                    status = resp.status
        except TimeoutError as exc:
            raise TransportError(f"{path}: no answer in {timeout_s:g} s", timeout=True) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"{path}: {type(exc).__name__}: {exc}") from exc
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return self._answer_type(status, data, (loop.time() - started) * 1000)

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        if not self.slow_read_ms:
            return await resp.read()
        parts = []
        async for chunk in resp.content.iter_chunked(64):  # a till on a slow line
            parts.append(chunk)
            await asyncio.sleep(self.slow_read_ms / 1000)
        return b"".join(parts)

    async def deliver(
        self,
        path: str,
        body: Any,
        *,
        headers: Mapping[str, str],
        timeout_s: float,
        retry_for_s: float,
        first_timeout_s: float | None = None,
        method: str = "POST",
        max_attempts: int = 50,
    ) -> Delivery:
        """Send until a final answer, resending the same body after 5xx and transport errors.

        ``first_timeout_s`` shortens the first attempt (a plugin that gives up early and
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
                    answer = await self.send(path, body, headers=headers, timeout_s=limit, method=method)
                except TransportError as exc:
                    timeouts += exc.timeout
                    raise
                if answer.status in RETRY_STATUSES:
                    raise RetriableStatus(answer)
                return Delivery(answer, attempts, timeouts)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover
