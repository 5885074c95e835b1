"""The one aiohttp Application: every HTTP driver under ``/v1/<name>/`` plus the operator endpoints.

Endpoints:
- ``/v1/<driver>/...``: a sub-application per driver with its own middleware, all taken from
  the driver's declared :class:`gateway.driver.Edge` (one decision per driver, nothing
  gateway-wide): its body limit (``client_max_size``; 413 in the driver's own error shape),
  404/405 (with ``Allow``) and unexpected errors in that shape too, and
  ``posgw_http_requests_total{driver,status}``;
- ``/healthz``: 200 ``{"status": "ok", ...}``; 200 ``degraded`` with the salvage report (where the
  damaged outbox was moved, what was salvaged and lost) while a salvage is not acknowledged;
  503 ``not_serving`` while the outbox cannot be written, its backlog is stuck, or the daemon is
  stopping (the salvage report is shown then too);
- ``POST /v1/outbox/ack-salvage`` (admin key): the operator acknowledges the salvage report;
- ``/metrics``: Prometheus text of the daemon's registry (outbox gauges refreshed at scrape);
- ``/`` (and ``/status``): the status page for the person at the shop PC (:mod:`gateway.status_page`);
- ``/v1/queue``: the operator queue (rejected events) as a JSON list of rows in the same form as
  ``posgw queue`` (:mod:`gateway.opqueue`); ``POST /v1/queue/{id}/retry`` and ``/resolve``.
- admin key: ``/v1/queue*`` and ``/v1/outbox/*`` always need ``Authorization: Bearer
  <gateway.admin_api_key>`` (or HTTP Basic with the key as password, what a browser can send);
  with no key configured they answer 403. ``/metrics`` and the status page need it too when
  ``build_app(protect=...)`` names them (``gateway.metrics_need_admin_key``,
  ``status_needs_admin_key``). Keys are compared in constant time.

The catch-all ``except Exception`` in the driver middleware is the HTTP supervisor: one bad
request must not take the process down, and the till still gets an answer in its format.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import http_edge, status_page
from gateway.driver import REGISTRY, Driver, DriverContext, Edge, driver_info
from gateway.limits import Admission
from gateway.metrics import Metrics
from gateway.opqueue import row_view
from gateway.outbox import OutboxRow, OutboxStats

log = logging.getLogger("posgw.server")
DEFAULT_MAX_BODY = 1 << 20
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class OutboxView(Protocol):
    """The part of :class:`gateway.outbox.Outbox` the server reads and the operator changes."""

    async def stats(self) -> OutboxStats: ...

    async def rejected(self) -> Sequence[OutboxRow]: ...

    async def get(self, row_id: int) -> OutboxRow | None: ...

    async def retry(self, row_id: int) -> bool: ...

    async def resolve(self, row_id: int, note: str) -> bool: ...

    async def ack_salvage(self) -> int: ...

    async def recent(self, limit: int = 50, *, since: float = 0.0, until: float | None = None,
                     ) -> Sequence[OutboxRow]: ...


@dataclass(frozen=True)
class MountedDriver:
    name: str
    driver: Driver
    ctx: DriverContext


@dataclass
class ServerState:
    outbox: OutboxView
    metrics: Metrics
    core_state: Callable[[], str]
    admin_key: str = ""
    stopping: bool = False
    started_at: float = 0.0
    drivers: tuple[str, ...] = ()
    stats_error: str = ""  # the last failure to read the outbox's stats ("" while they read)
    stats_error_at: float = 0.0
    driver_names: tuple[str, ...] = ()
    window: status_page.Window = field(default_factory=status_page.Window)  # "last hour" figures
    errors: status_page.RecentErrors = field(default_factory=status_page.RecentErrors)


STATE = web.AppKey("posgw_state", ServerState)


def _titled(name: str) -> str:
    """``name (title)`` for the status page, from the driver package's metadata."""
    return f"{name} ({driver_info(name).title})" if name in REGISTRY else name


def default_error(status: int, code: str, message: str, field: str = "") -> web.Response:
    """The error format of the operator endpoints (``/v1/queue``)."""
    error: dict[str, str] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return web.json_response({"error": error}, status=status)


def build_app(
    *, outbox: OutboxView, metrics: Metrics, drivers: Sequence[MountedDriver], core_state: Callable[[], str],
    admin_key: str = "", max_body_bytes: int = DEFAULT_MAX_BODY, admission: Admission | None = None,
    protect: Sequence[str] = (),
) -> web.Application:
    """The application; ``admission`` bounds the driver requests in flight (default: 256);
    ``protect``: more paths that answer only with the admin key (``/metrics``, ``/``, ``/status``)."""
    admission = admission or Admission(256)
    app = web.Application(client_max_size=max_body_bytes,
                          middlewares=[_protected(frozenset(protect))] if protect else [])
    state = ServerState(outbox, metrics, core_state, admin_key, started_at=time.time(),
                        drivers=tuple(_titled(d.name) for d in drivers),
                        driver_names=tuple(d.name for d in drivers))
    app[STATE] = state
    app.cleanup_ctx.append(_status_sources)
    app.router.add_get("/", status_endpoint)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/status", status_endpoint)
    app.router.add_get("/v1/queue", queue_list)
    app.router.add_post("/v1/queue/{id:\\d+}/retry", queue_retry)
    app.router.add_post("/v1/queue/{id:\\d+}/resolve", queue_resolve)
    app.router.add_post("/v1/outbox/ack-salvage", outbox_ack_salvage)
    for mounted in drivers:
        routes = mounted.driver.routes(mounted.ctx)
        if not routes:
            continue
        edge = mounted.driver.edge
        if edge is None:
            raise ValueError(f"driver {mounted.name!r} has HTTP routes but declares no edge")
        # Bodies are read by http_edge.guard within the edge's limits (never request.read()).
        sub = web.Application(middlewares=[driver_middleware(mounted.name, edge, metrics, admission)])
        sub.add_routes(routes)
        app.add_subapp(f"/v1/{mounted.name}", sub)
    return app


def driver_middleware(name: str, edge: Edge, metrics: Metrics, admission: Admission) -> Any:
    counter = metrics.http_requests
    busy = metrics.child(metrics.http_refused, "busy")
    by_class: dict[int, Any] = {}  # status // 100 -> the labelled counter child

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if admission.try_enter():
            try:
                response = await _guarded(request, handler, edge, name)
            finally:
                admission.leave()
        else:  # overload: a fast "try again" in the driver's shape, the handler never runs
            busy.inc()
            response = http_edge.refuse_other(edge, 503, "BUSY", "the gateway is busy: retry in a second")
            response.headers["Retry-After"] = "1"
        status_class = response.status // 100
        child = by_class.get(status_class)
        if child is None:
            child = by_class[status_class] = metrics.child(counter, name, f"{status_class}xx")
        child.inc()
        return response

    return middleware


async def _guarded(request: web.Request, handler: Handler, edge: Edge, name: str) -> web.StreamResponse:
    limit = edge.max_body_bytes
    size = request.content_length
    if size is not None and size > limit:
        return http_edge.refuse(edge, 413, edge.refusals.too_large(limit))
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return http_edge.refuse(edge, 413, edge.refusals.too_large(limit))
    except web.HTTPNotFound:
        where = f"{request.method} {request.path}"
        return http_edge.refuse_other(edge, 404, "NOT_FOUND", f"no such endpoint: {where}")
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        response = http_edge.refuse_other(edge, 405, "METHOD_NOT_ALLOWED", f"use {allowed}")
        response.headers["Allow"] = allowed
        return response
    except web.HTTPException as exc:
        code = exc.reason.upper().replace(" ", "_")
        return http_edge.refuse_other(edge, exc.status, code, exc.text or exc.reason)
    except Exception:  # the HTTP supervisor: see the module docstring
        log.exception("request failed", extra={"driver": name, "path": request.path})
        return http_edge.refuse_other(edge, 500, "INTERNAL",
                                      "internal error: the request was not processed, retry later")


# ------------------------------------------------------------------ health, metrics, status


STATS_REMIND_S = 60.0  # an outbox that stays unreadable: one ERROR per change, then one a minute


async def _stats(state: ServerState) -> Any | None:
    try:
        stats = await state.outbox.stats()
    except Exception as exc:  # an unreadable outbox is exactly what /healthz must report, not raise
        now = time.monotonic()
        if str(exc) != state.stats_error or now - state.stats_error_at >= STATS_REMIND_S:
            log.exception("outbox stats failed")  # not once per /healthz poll
            state.stats_error, state.stats_error_at = str(exc), now
        return None
    if state.stats_error:
        log.error("outbox stats readable again", extra={"last_error": state.stats_error})
        state.stats_error = ""
    return stats


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    stats = await _stats(state)
    problems: list[str] = []
    if state.stopping:
        problems.append("stopping")
    if stats is None:
        problems.append("outbox unreadable")
    else:
        if not stats.writable:
            problems.append("outbox not writable")
        if stats.stuck:
            problems.append("outbox backlog stuck")
    salvage = [r.summary() for r in stats.salvage] if stats is not None else []
    alarms = [{"driver": driver, "key": key, "message": message, "since": since}
              for (driver, key), (message, since) in sorted(state.metrics.alarms.items())]
    status = "not_serving" if problems else "degraded" if salvage or alarms else "ok"
    body: dict[str, Any] = {"status": status, "problems": problems, "core": state.core_state()}
    if alarms:
        body["alarms"] = alarms
    if stats is not None:
        body |= {"pending": stats.pending, "oldest_pending_age_s": round(stats.oldest_pending_age_s, 3),
                 "rejected": stats.rejected, "waiting_for_sale": stats.waiting, "writable": stats.writable,
                 "stuck": stats.stuck}
        if not stats.writable:
            body["storage_error"] = stats.last_storage_error
    if salvage:
        body["salvage"] = salvage
        body["action"] = ("a damaged outbox was salvaged: check what was lost, then acknowledge with "
                          "`posgw outbox ack-salvage` or POST /v1/outbox/ack-salvage")
    return web.json_response(body, status=503 if problems else 200)


async def metrics_endpoint(request: web.Request) -> web.Response:
    state = request.app[STATE]
    stats = await _stats(state)
    if stats is not None:
        state.metrics.outbox_depth.set(stats.pending)
        state.metrics.outbox_oldest_age.set(stats.oldest_pending_age_s)
        state.metrics.operator_queue.set(stats.rejected)
        state.metrics.outbox_writable.set(1 if stats.writable else 0)
        state.metrics.salvage_unacknowledged.set(len(stats.salvage))
        state.metrics.salvaged_rows.set(sum(r.salvaged for r in stats.salvage))
        state.metrics.salvage_lost_rows.set(sum(r.lost for r in stats.salvage))
    response = web.Response(body=generate_latest(state.metrics.registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def _status_sources(app: web.Application) -> AsyncIterator[None]:
    """While the app runs: the status page's hour window is sampled and warnings are kept."""
    state = app[STATE]
    stop = asyncio.Event()
    task = asyncio.create_task(status_page.sampler(state.metrics, state.window, stop), name="status-sampler")
    logging.getLogger("posgw").addHandler(state.errors)
    try:
        yield
    finally:
        logging.getLogger("posgw").removeHandler(state.errors)
        stop.set()
        await task


def _driver_view(name: str) -> status_page.DriverView:
    if name not in REGISTRY:
        return status_page.DriverView(name, name, "push")
    info = driver_info(name)
    return status_page.DriverView(name, info.title, info.shape)


async def status_endpoint(request: web.Request) -> web.Response:
    """The status page (:mod:`gateway.status_page`); a part that cannot be read is shown as such."""
    state = request.app[STATE]
    stats = await _stats(state)
    queue: Sequence[OutboxRow] = ()
    recent: Sequence[OutboxRow] = ()
    if stats is not None:
        try:
            queue = await state.outbox.rejected()
            recent = await state.outbox.recent(status_page.RECENT_RECEIPTS)
        except Exception:  # shown as "outbox unreadable" with the figures above
            log.exception("status page: outbox rows unreadable")
            stats = None
    data = status_page.PageData(
        stats=stats, core_state=state.core_state(), metrics=state.metrics, window=state.window,
        errors=state.errors, drivers=[_driver_view(n) for n in state.driver_names], queue=queue,
        recent=recent, started_at=state.started_at, admin_key_set=bool(state.admin_key),
        stopping=state.stopping, now=time.time())
    return web.Response(text=status_page.render(data), content_type="text/html")


# ------------------------------------------------------------------ operator queue


def _admin(request: web.Request) -> web.Response | None:
    """None when allowed; else the 401/403 answer."""
    key = request.app[STATE].admin_key
    if not key:
        return default_error(403, "FORBIDDEN", "set gateway.admin_api_key to use this endpoint over HTTP")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":  # a browser's login prompt: any user name, the key as password
        try:
            token = base64.b64decode(token.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            token = ""
    if scheme.lower() in ("bearer", "basic") and hmac.compare_digest(token.strip().encode(), key.encode()):
        return None
    denied = default_error(401, "UNAUTHORIZED", "send Authorization: Bearer <gateway.admin_api_key>")
    denied.headers["WWW-Authenticate"] = 'Basic realm="posgw admin", charset="UTF-8"'
    return denied


def _protected(paths: frozenset[str]) -> Any:
    """Middleware: a request for one of ``paths`` is answered only with the admin key."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in paths and (denied := _admin(request)) is not None:
            return denied
        return await handler(request)

    return middleware


async def queue_list(request: web.Request) -> web.Response:
    """The rejected rows as a JSON list of :func:`gateway.opqueue.row_view` (the CLI's fields)."""
    if (denied := _admin(request)) is not None:
        return denied
    rows = await request.app[STATE].outbox.rejected()
    now = time.time()
    return web.json_response([row_view(r, now) for r in rows])


async def outbox_ack_salvage(request: web.Request) -> web.Response:
    """The operator has seen the salvage report: stop reporting degraded (admin key required)."""
    if (denied := _admin(request)) is not None:
        return denied
    n = await request.app[STATE].outbox.ack_salvage()
    log.info("operator acknowledged the outbox salvage", extra={"salvages": n})
    return web.json_response({"acknowledged": n})


async def queue_retry(request: web.Request) -> web.Response:
    return await _queue_change(request, "retry")


async def queue_resolve(request: web.Request) -> web.Response:
    return await _queue_change(request, "resolve")


async def _queue_change(request: web.Request, action: str) -> web.Response:
    if (denied := _admin(request)) is not None:
        return denied
    outbox = request.app[STATE].outbox
    row_id = int(request.match_info["id"])
    note = ""
    if action == "resolve":
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return default_error(400, "BAD_REQUEST", "malformed JSON")
        note = body.get("note", "") if isinstance(body, dict) else ""
        if not isinstance(note, str) or not note.strip():
            return default_error(400, "BAD_REQUEST", "say how it was handled: {\"note\": \"...\"}", "note")
    row = await outbox.get(row_id)
    if row is None:
        return default_error(404, "NOT_FOUND", f"no event with id {row_id}")
    if row.state != "rejected":
        return default_error(409, "CONFLICT", f"event {row_id} is {row.state}, not rejected")
    ok = await (outbox.retry(row_id) if action == "retry" else outbox.resolve(row_id, note.strip()))
    if ok is False:
        return default_error(409, "CONFLICT", f"event {row_id} is no longer rejected")
    log.info("operator queue change", extra={"action": action, "row_id": row_id})
    after = await outbox.get(row_id)
    return web.json_response(row_view(after or row, time.time()))  # only delivered rows are pruned, later
