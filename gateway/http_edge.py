"""The HTTP edge every HTTP driver shares (JSON or XML; a till, an app or a cloud calling us).

One request guard, one way to answer, one translation of errors. Owns:

- :func:`guard`: wraps a driver's handler: counts the request, checks the caller the way its
  vendor does (:class:`HeaderToken`, :class:`BasicAuth`, :class:`Signed`; constant-time
  comparisons; a token before the body is read, a signature after), reads the body within the
  limits the driver declared in its :class:`gateway.driver.Edge`, and answers every refusal in
  the vendor's shape from the driver's :class:`gateway.driver.Refusals` table: 401/403 auth,
  408 slow body, 413 too large, 415 wrong content type, 400 bad input, 503 not stored ("resend");
  each counted in ``posgw_driver_events_total{what=requests|auth_failed|bad_input|storage_error}``;
- :func:`calculate`: the one translation of calc failures: BadInput is the till's fault (400),
  any other gateway error answers "sell without loyalty" (never blocks a sale);
- :func:`submit_all`: submit a request's events in order, count them, tell duplicates and
  ignored documents apart;
- :func:`read_body`: reads a request body in chunks, refusing it (:class:`BodyTooLarge`) as
  soon as it passes ``limit`` bytes (a ``Content-Length`` above the limit is refused before
  anything is read) and giving up (``TimeoutError``) when it is not received within
  ``timeout_s``, so a slow or endless sender cannot hold a handler;
- :func:`render_accepted`: the answer our own till plugins read after a commit,
  ``{"accepted":true,"duplicate":…[,"ignored":"why"]}`` (compact, ASCII);
- :func:`token_matches`: compares a presented token with every configured secret in constant
  time (all secrets are compared, whichever matches); an empty secret never matches.

The vendor-shaped bodies stay in each driver's ``wire.py``; the driver declares which is which.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Generic, Protocol, TypeVar

from aiohttp import web
from pydantic import SecretStr

from gateway.config import EdgeOptions
from gateway.driver import CalcResult, DriverContext, Edge, Refusals
from gateway.errors import AuthError, BadInput, GatewayError, StorageError
from gateway.receipt import Event, Receipt

__all__ = ["Auth", "BasicAuth", "BodyTooLarge", "Edge", "HeaderToken", "HttpDriver", "Refusals", "Signed",
           "bearer", "calculate", "guard", "read_body", "refuse", "refuse_other", "render_accepted", "reply",
           "secret_value", "submit_all", "token_matches"]

CHUNK = 1 << 16


class BodyTooLarge(BadInput):
    """The request body is larger than the driver accepts (answer 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes", "body")
        self.limit = limit


async def read_body(request: web.Request, *, limit: int, timeout_s: float) -> bytes:
    """The whole body, at most ``limit`` bytes, read within ``timeout_s``.

    Raises :class:`BodyTooLarge` (declared or actual size above ``limit``) or
    ``TimeoutError`` (not received in time). A body that had wholly arrived when the handler
    started (a till's request: one small packet) is taken as it is, without arming a timer or
    looping over chunks; the same checks apply to it.
    """
    if (request.content_length or 0) > limit:
        raise BodyTooLarge(limit)
    content = request.content
    if content.is_eof():  # the parser has seen the body's end: all of it is buffered
        body = content.read_nowait()
        if len(body) > limit:
            raise BodyTooLarge(limit)
        return body
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout(timeout_s):
        async for chunk in request.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            chunks.append(chunk)
    return b"".join(chunks)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Inner = Callable[[DriverContext, bytes], Awaitable[web.Response]]
C = TypeVar("C", bound=EdgeOptions)


class HttpDriver(Generic[C]):
    """The base of a push driver (a till, an app or a cloud calls us): keeps its validated
    ``config``, its :class:`Edge` made from the config's limits and the class's ``refusals``, a
    clock, and a ``run`` that returns at once. A subclass sets ``name`` and ``refusals`` and
    writes ``routes``."""

    name: ClassVar[str]
    refusals: ClassVar[Refusals]

    def __init__(self, config: C, *, now: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.edge = Edge(self.refusals, config.max_body_bytes, config.read_timeout_ms / 1000)
        self.now = now or (lambda: datetime.now(UTC))

    async def run(self, ctx: DriverContext) -> None:
        return None


class Auth(Protocol):
    """How a vendor proves a request is its own. ``check`` raises :class:`AuthError` (never
    naming the secret); ``needs_body`` says whether it reads the body (a signature), else it
    runs before the body is read."""

    @property
    def needs_body(self) -> bool: ...

    def check(self, request: web.Request, body: bytes) -> None: ...


@dataclass(frozen=True)
class HeaderToken:
    """A shared token in ``header``. In ``Authorization`` the ``Bearer`` prefix is optional
    unless ``bearer_required`` (a token without it is then refused as missing)."""

    secrets: Sequence[SecretStr | str]
    header: str = "Authorization"
    bearer_required: bool = False
    needs_body: bool = False

    def check(self, request: web.Request, body: bytes) -> None:
        raw = request.headers.get(self.header, "")
        if self.bearer_required and raw[:7].lower() != "bearer ":
            raw = ""
        presented = bearer(raw) if self.header.lower() == "authorization" else raw.strip()
        if not presented:
            raise AuthError("no_token", status=401)
        if not token_matches(presented, self.secrets):
            raise AuthError("wrong_token", status=401)


@dataclass(frozen=True)
class BasicAuth:
    """HTTP Basic: ``users`` maps a user name to its password; every pair is compared in
    constant time, whichever matches."""

    users: Mapping[str, SecretStr | str]
    needs_body: bool = False

    def check(self, request: web.Request, body: bytes) -> None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise AuthError("no_credentials", status=401)
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise AuthError("malformed_credentials", status=401) from None
        user, sep, password = decoded.partition(":")
        ok = False
        for name, secret in self.users.items():
            same_user = hmac.compare_digest(user.encode(), name.encode())
            ok |= bool(sep) & same_user & token_matches(password, [secret])
        if not ok:
            raise AuthError("wrong_credentials", status=401)


@dataclass(frozen=True)
class Signed:
    """A signature over the request and its body: ``verify`` returns "" when authentic, else
    why not (a short snake_case reason); ``missing`` reasons answer 401, the others 403."""

    verify: Callable[[web.Request, bytes], str]
    missing: frozenset[str] = frozenset({"no_token", "no_signature"})
    needs_body: bool = True

    def check(self, request: web.Request, body: bytes) -> None:
        why = self.verify(request, body)
        if why:
            raise AuthError(why, status=401 if why in self.missing else 403)


def reply(edge: Edge, status: int, body: bytes, *, content_type: str = "") -> web.Response:
    """An answer of ``edge``'s driver: its content type unless given, its extra headers."""
    refusals = edge.refusals
    return web.Response(status=status, body=body, content_type=content_type or refusals.content_type,
                        charset=refusals.charset or None, headers=dict(refusals.headers) or None)


def refuse(edge: Edge, status: int, body: bytes) -> web.Response:
    """A refusal in ``edge``'s shape (with ``WWW-Authenticate`` on a 401 when the vendor has one)."""
    response = reply(edge, status, body)
    if status == 401 and edge.refusals.challenge:
        response.headers["WWW-Authenticate"] = edge.refusals.challenge
    return response


def refuse_other(edge: Edge, status: int, code: str, message: str) -> web.Response:
    """404/405/415/500/503... in ``edge``'s shape (the server's middleware and the guard use it)."""
    return refuse(edge, status, edge.refusals.other(status, code, message))


def guard(ctx: DriverContext, edge: Edge, inner: Inner, *, auth: Auth | None,
          content_types: tuple[str, ...] = ()) -> Handler:
    """``inner`` behind the shared edge: nothing reaches it unauthorised, beyond the driver's
    limits or of another content type (when ``content_types`` is given), and nothing it raises as
    BadInput, AuthError or StorageError escapes as a 500."""
    refusals = edge.refusals
    limit, timeout_s = edge.max_body_bytes, edge.read_timeout_s

    def denied(exc: AuthError) -> web.Response:
        ctx.count("auth_failed")
        ctx.log.warning("request refused", extra={"driver": ctx.name, "reason": exc.reason,
                                                  "action": "nothing_stored"})
        return refuse(edge, exc.status, refusals.unauthorized(exc.reason))

    async def handle(request: web.Request) -> web.StreamResponse:
        ctx.count("requests")
        try:
            if auth is not None and not auth.needs_body:
                auth.check(request, b"")
            if content_types and request.content_type not in content_types:
                ctx.count("bad_input")
                return refuse_other(edge, 415, "UNSUPPORTED_MEDIA_TYPE",
                                    f"send Content-Type: {' or '.join(content_types)}")
            try:
                body = await read_body(request, limit=limit, timeout_s=timeout_s)
            except TimeoutError:
                ctx.count("bad_input")
                return refuse(edge, 408, refusals.timeout)
            except BodyTooLarge:
                ctx.count("bad_input")
                return refuse(edge, 413, refusals.too_large(limit))
            if auth is not None and auth.needs_body:
                auth.check(request, body)
            return await inner(ctx, body)
        except AuthError as exc:
            return denied(exc)
        except BadInput as exc:
            ctx.count("bad_input")
            return refuse(edge, 400, refusals.bad_input(exc))
        except StorageError:
            ctx.count("storage_error")  # the outbox logs the state change once (not one line per refusal)
            ctx.log.debug("event not stored", extra={"driver": ctx.name, "action": "answered_503_for_resend"})
            return refuse(edge, 503, refusals.not_stored)

    return handle


async def calculate(ctx: DriverContext, receipt: Receipt) -> CalcResult | None:
    """``ctx.calculate`` as every driver needs it: BadInput goes on to the guard (a 400); any
    other gateway error answers None, which the driver turns into its vendor's "sell without
    loyalty" (the pipeline should never raise these, and a bug must never block a sale).
    Counts ``calc``, ``offline_answer`` and ``calc_skipped``."""
    ctx.count("calc")
    try:
        result = await ctx.calculate(receipt)
    except BadInput:
        raise
    except GatewayError as exc:
        ctx.count("calc_skipped")
        ctx.log.warning("calculate failed, answered without loyalty",
                        extra={"driver": ctx.name, "error": type(exc).__name__})
        return None
    if result.offline:
        ctx.count("offline_answer")
    return result


async def submit_all(ctx: DriverContext, events: Sequence[Event | str]) -> tuple[bool, str]:
    """Submit every event in order (the caller parsed them all first, so bad input stores
    nothing); a str is the reason a document is acknowledged without storing anything.
    Returns (any was a duplicate, the last ignored reason). Counts committed/duplicate/ignored."""
    duplicate, ignored = False, ""
    for event in events:
        if isinstance(event, str):
            ctx.count("ignored")
            ignored = event
            continue
        new = await ctx.submit(event)
        ctx.count("committed" if new else "duplicate")
        duplicate = duplicate or not new
    return duplicate, ignored


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
