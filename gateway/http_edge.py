"""The HTTP edge every JSON driver shares: the request guard, body reading, JSON with Decimal
numbers, token checks.

Owns five small jobs that were copied between drivers:

- :func:`guard`: wraps a driver's handler: counts the request, checks the caller, reads the
  body within the driver's size and time limits, and answers bad input (400) and a failed
  durable write (503, "resend") in the vendor's own error shape (:class:`Refusals`), counting
  each (``posgw_driver_events_total{what=requests|auth_failed|bad_input|storage_error}``);
- :func:`read_body`: reads a request body in chunks, refusing it (:class:`BodyTooLarge`) as
  soon as it passes ``limit`` bytes (a ``Content-Length`` above the limit is refused before
  anything is read) and giving up (``TimeoutError``) when it is not received within
  ``timeout_s``, so a slow or endless sender cannot hold a handler;
- :func:`loads`: UTF-8 JSON whose non-integer numbers become :class:`~decimal.Decimal`
  (never ``float``: money stays exact); any malformed input raises
  :class:`gateway.errors.BadInput` naming ``body``, nothing else escapes;
- :func:`render_accepted`: the answer our own till plugins read after a commit,
  ``{"accepted":true,"duplicate":…[,"ignored":"why"]}`` (compact, ASCII);
- :func:`token_matches`: compares a presented token with every configured secret in constant
  time (all secrets are compared, whichever matches); an empty secret never matches.

Pure apart from :func:`read_body`, which only awaits the request stream. The vendor-shaped
error bodies stay in each driver's ``wire.py``: only the mechanics (and our plugins' one
shared answer) live here.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from aiohttp import web
from pydantic import SecretStr

from gateway.driver import DriverContext
from gateway.errors import BadInput, StorageError

CHUNK = 1 << 16


class BodyTooLarge(BadInput):
    """The request body is larger than the driver accepts (answer 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes", "body")
        self.limit = limit


async def read_body(request: web.Request, *, limit: int, timeout_s: float) -> bytes:
    """The whole body, at most ``limit`` bytes, read within ``timeout_s``.

    Raises :class:`BodyTooLarge` (declared or actual size above ``limit``) or
    ``TimeoutError`` (not received in time).
    """
    if (request.content_length or 0) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout(timeout_s):
        async for chunk in request.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            chunks.append(chunk)
    return b"".join(chunks)


Handler = Callable[[web.Request], Awaitable[web.Response]]
Inner = Callable[[DriverContext, bytes], Awaitable[web.Response]]


@dataclass(frozen=True)
class Refusals:
    """A vendor's error bodies for what :func:`guard` refuses (the status codes are the guard's)."""

    unauthorized: bytes  # 401
    timeout: bytes  # 408: the body did not arrive within the read timeout
    too_large: Callable[[int], bytes]  # 413, given the limit in bytes
    bad_input: Callable[[BadInput], bytes]  # 400
    not_stored: bytes  # 503: the durable write failed, the till should resend


def guard(ctx: DriverContext, inner: Inner, *, refusals: Refusals, limit: int, timeout_s: float,
          authorized: Callable[[web.Request], bool]) -> Handler:
    """``inner`` behind the shared edge: nothing reaches it unauthorised or beyond the limits,
    and nothing it raises as BadInput or StorageError escapes as a 500."""

    def reply(status: int, body: bytes) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    async def handle(request: web.Request) -> web.Response:
        ctx.count("requests")
        if not authorized(request):
            ctx.count("auth_failed")
            return reply(401, refusals.unauthorized)
        try:
            body = await read_body(request, limit=limit, timeout_s=timeout_s)
        except TimeoutError:
            ctx.count("bad_input")
            return reply(408, refusals.timeout)
        except BodyTooLarge:
            return reply(413, refusals.too_large(limit))
        try:
            return await inner(ctx, body)
        except BadInput as exc:
            ctx.count("bad_input")
            return reply(400, refusals.bad_input(exc))
        except StorageError:
            ctx.count("storage_error")
            ctx.log.error("event=%s_store_failed action=answered_503_for_resend", ctx.name)
            return reply(503, refusals.not_stored)

    return handle


def loads(body: bytes | str) -> object:
    """Parse JSON; non-integer numbers become ``Decimal``. Raises BadInput (field ``body``)."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return json.loads(text, parse_float=Decimal)
    except UnicodeDecodeError as exc:
        raise BadInput("body is not UTF-8", "body") from exc
    except (ValueError, RecursionError) as exc:
        raise BadInput(f"body is not JSON: {str(exc)[:80]}", "body") from exc


def render_accepted(*, duplicate: bool, ignored: str = "") -> bytes:
    """``{"accepted":true,"duplicate":…}``, with ``"ignored"`` when the event changed nothing."""
    out: dict[str, object] = {"accepted": True, "duplicate": duplicate}
    if ignored:
        out["ignored"] = ignored
    return json.dumps(out, separators=(",", ":")).encode()


def secret_value(secret: SecretStr | str) -> str:
    """The plain text of a configured secret (``SecretStr`` or str)."""
    return secret.get_secret_value() if isinstance(secret, SecretStr) else str(secret)


def token_matches(presented: str, secrets: Iterable[SecretStr | str]) -> bool:
    """True when ``presented`` equals one of ``secrets``; constant time, empty secrets never match."""
    ok = False
    given = presented.encode()
    for secret in secrets:
        value = secret_value(secret)
        ok |= bool(value) & hmac.compare_digest(given, value.encode())
    return ok


def bearer(authorization: str) -> str:
    """The token of an ``Authorization`` header value; the ``Bearer`` prefix is optional."""
    raw = authorization.strip()
    return raw[7:].strip() if raw[:7].lower() == "bearer " else raw
