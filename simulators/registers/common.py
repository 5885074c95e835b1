"""What every vendor till simulator shares: an HTTP poster with retries, money text, ids, consistency.

Owns:
- :class:`Poster`: one JSON request (POST/PUT) with a total timeout and optional slow reading
  of the answer (a till on a bad line), and :meth:`Poster.deliver`, the at-least-once loop a
  till's forwarding outbox runs: the *same* body again after a timeout, a refused connection
  or a 5xx (exponential backoff with jitter, tenacity), until a final answer;
- :func:`rubles` / :func:`kopecks` / :func:`qty_text`: the vendors' decimal strings from and
  to integer kopecks and thousandths (``Decimal``, half-up; never float);
- :func:`rng_uuid`: uuid4-shaped ids from a seeded ``random.Random`` (reproducible runs);
- :func:`receipt_problems`: the check every till applies to a receipt after applying a
  loyalty answer (no negative line, lines add up to the total).

The report types (:class:`~simulators.registers.native.report.Recorder`, ``Ack``,
``SimReport``) are the native simulator's, reused as they are. Never imports ``drivers``.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_exponential, wait_random

from simulators.registers.native.client import RetriableStatus, TransportError

RETRY_STATUSES = frozenset({500, 502, 503, 504})

__all__ = [
    "Answer",
    "Delivery",
    "Num",
    "Poster",
    "RetriableStatus",
    "TransportError",
    "dumps",
    "kopecks",
    "line_sum",
    "milli",
    "qty_text",
    "receipt_problems",
    "rng_uuid",
    "rubles",
]


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, parsed JSON (None if not JSON), time taken."""

    status: int
    data: Any
    elapsed_ms: float

    def error_text(self) -> str:
        return json.dumps(self.data, ensure_ascii=False)[:200] if self.data is not None else ""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A request that got a final (non-retriable) answer, and what it took."""

    answer: Answer
    attempts: int
    timeouts: int


class Poster:
    """Sends JSON bodies to one gateway over a shared aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, *, slow_read_ms: int = 0) -> None:
        self._session = session
        self.base = base_url.rstrip("/")
        self.slow_read_ms = slow_read_ms

    async def send(
        self, path: str, body: Any, *, headers: Mapping[str, str], timeout_s: float, method: str = "POST"
    ) -> Answer:
        """One request; raises :class:`TransportError` when no answer came within ``timeout_s``."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        raw_body = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        hdrs = {"Content-Type": "application/json", **headers}
        try:
            async with asyncio.timeout(timeout_s):
                async with self._session.request(
                    method, self.base + path, data=raw_body, headers=hdrs
                ) as resp:
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
        return Answer(status, data, (loop.time() - started) * 1000)

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        if not self.slow_read_ms:
            return await resp.read()
        parts = []
        async for chunk in resp.content.iter_chunked(64):
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
        resends). Raises the last TransportError / RetriableStatus when retries run out.
        """
        attempts = timeouts = 0
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((TransportError, _Retry)),
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
                    raise _Retry(answer)
                return Delivery(answer, attempts, timeouts)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


class _Retry(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(f"HTTP {answer.status} {answer.error_text()}")
        self.answer = answer


def rubles(kop: int) -> str:
    """Integer kopecks -> ``"199.90"`` (what the devices send)."""
    sign = "-" if kop < 0 else ""
    whole, cents = divmod(abs(kop), 100)
    return f"{sign}{whole}.{cents:02d}"


def kopecks(value: object) -> int:
    """A ruble string or JSON number (int or Decimal; float refused) -> kopecks, half-up."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"not a money value: {value!r}")
    dec = Decimal(value) * 100
    return int(dec.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def milli(value: object) -> int:
    """A quantity string -> thousandths, half-up."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"not a quantity: {value!r}")
    return int((Decimal(value) * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def qty_text(qty_milli: int, *, weighted: bool) -> str:
    """Thousandths -> ``"2"`` for piece goods, ``"0.245"`` for weight goods."""
    if not weighted and qty_milli % 1000 == 0:
        return str(qty_milli // 1000)
    whole, frac = divmod(qty_milli, 1000)
    return f"{whole}.{frac:03d}"


def line_sum(price: int, qty_milli: int) -> int:
    """Unit price x quantity, half-up to the kopeck."""
    return (price * qty_milli + 500) // 1000


class Num(str):
    """A decimal written into JSON as a bare number (``199.9``), not a string: see :func:`dumps`."""


_NUM = "\u0000num:"


def dumps(body: Any) -> bytes:
    """JSON with :class:`Num` values as numbers (the Evotor cloud writes money as numbers) and
    ``Decimal`` too; everything else as ``json.dumps`` does. Never goes through float."""

    def mark(value: Any) -> Any:
        if isinstance(value, Num | Decimal):
            return _NUM + str(value)
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(body), ensure_ascii=False, separators=(",", ":"))
    return re.sub(r'"\\u0000num:(-?[0-9.]+)"', r"\1", text).encode()


def rng_uuid(rng: random.Random) -> str:
    """A uuid4-shaped id from ``rng`` (reproducible with a seed)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def receipt_problems(lines: Sequence[tuple[str, int]], total: int) -> list[str]:
    """Every inconsistency of a receipt after loyalty: negative lines, lines not adding up."""
    out = [f"line {name}: negative sum {amount}" for name, amount in lines if amount < 0]
    if sum(amount for _, amount in lines) != total:
        out.append(f"lines add up to {sum(a for _, a in lines)}, the receipt total is {total}")
    return out
