"""The status page at ``/`` (also ``/status``): one server-rendered HTML page for the person at the shop PC.

What it shows, each figure in a cell with a ``data-k`` name (the browser test reads them):
- the link to the core: breaker state, online calculate latency and core calls over the last hour;
- the gateway: outbox depth and oldest pending age, writability, offline answers in the last hour,
  the operator queue, what waits for its sale, a salvage not yet acknowledged;
- raised driver alarms (``ctx.alarm``), per-driver counters and their last warnings/errors,
  device drivers and whether their device answers;
- the operator queue with retry and resolve buttons: a few lines of script send
  ``POST /v1/queue/{id}/retry|resolve`` with the admin key the user types (never stored);
- recent receipts with their loyalty outcome (points accrued and redeemed, offline, refused).

Invariants: every text that reaches the page goes through :func:`html.escape` (keys, errors, names
and messages come from tills and vendors); phone numbers and cards are shown masked (last 4);
log messages pass through the configured secret redaction before they are kept. No build step,
no external resources: the page works offline at the shop.

"In the last hour" figures come from :class:`Window`, samples of the cumulative counters taken
once a minute by a task the server starts (:func:`sampler`), so they are exact to the minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.logs import RedactFilter, record_fields
from gateway.metrics import Metrics
from gateway.opqueue import format_age
from gateway.outbox import OutboxRow, OutboxStats

HOUR_S = 3600.0
SAMPLE_EVERY_S = 60.0
RECENT_RECEIPTS = 30
QUEUE_SHOWN = 100  # rows of the operator queue on the page (the count is of all)
ERRORS_KEPT = 3  # last warnings/errors kept per driver (and for the gateway itself)
DRIVER_COUNTERS = ("requests", "calc", "offline_answer", "committed", "duplicate", "bad_input",
                   "auth_failed", "storage_error", "calc_skipped", "polled", "poll_failed",
                   "device_frame", "device_absent")


# ------------------------------------------------------------------ figures over the last hour


def samples(metrics: Metrics, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called ``name`` in the registry, with its labels."""
    out: list[tuple[dict[str, str], float]] = []
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                out.append((dict(sample.labels), sample.value))
    return out


def totals(metrics: Metrics) -> dict[str, float]:
    """The cumulative figures the hour window differences."""
    def total(name: str, keep: Callable[[dict[str, str]], bool]) -> float:
        return sum(v for labels, v in samples(metrics, name) if keep(labels))

    online = lambda labels: labels.get("mode") == "online"  # noqa: E731
    return {
        "offline_answers": total("posgw_calc_answers_total", lambda labels: labels.get("mode") == "offline"),
        "online_answers": total("posgw_calc_answers_total", online),
        "calc_sum": total("posgw_calc_seconds_sum", online),
        "calc_count": total("posgw_calc_seconds_count", online),
        "core_ok": total("posgw_core_calls_total", lambda labels: labels.get("code") == "OK"),
        "core_failed": total("posgw_core_calls_total",
                             lambda labels: labels.get("code") not in ("OK", "BREAKER_OPEN", "NO_TIME")),
    }


@dataclass
class Window:
    """Samples of cumulative counters, one every ``every_s``, for the last ``span_s``.

    :meth:`since` is the growth of a figure since the oldest sample inside the span (exact to one
    sampling interval); before the first sample it is the whole figure (the process just began)."""

    span_s: float = HOUR_S
    every_s: float = SAMPLE_EVERY_S
    taken: deque[tuple[float, dict[str, float]]] = field(default_factory=deque)

    def sample(self, values: dict[str, float], now: float) -> None:
        self.taken.append((now, dict(values)))
        while len(self.taken) > 1 and self.taken[1][0] <= now - self.span_s:
            self.taken.popleft()

    def since(self, name: str, current: float, now: float) -> float:
        base = next((v for t, v in self.taken if t >= now - self.span_s), None)
        return current if base is None else max(0.0, current - base.get(name, 0.0))


async def sampler(metrics: Metrics, window: Window, stop: asyncio.Event) -> None:
    """Sample ``metrics`` into ``window`` now and every ``window.every_s`` until ``stop``."""
    while not stop.is_set():
        window.sample(totals(metrics), time.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), window.every_s)


# ------------------------------------------------------------------ last errors per driver


class RecentErrors(logging.Handler):
    """Keeps the last :data:`ERRORS_KEPT` warnings and errors per driver (``posgw.driver.<name>``
    loggers, or a record's ``driver`` field) and for the gateway itself (``"gateway"``).
    Messages pass the secret redaction of the installed log handlers before they are kept."""

    def __init__(self, keep: int = ERRORS_KEPT) -> None:
        super().__init__(logging.WARNING)
        self.keep = keep
        self.by_source: dict[str, deque[tuple[float, str, str]]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = record_fields(record)
            driver = fields.pop("driver", None)
            if isinstance(driver, str) and driver:
                source = driver
            elif record.name.startswith("posgw.driver."):
                source = record.name.removeprefix("posgw.driver.")
            else:
                source = "gateway"
            text = record.getMessage()
            if fields:
                text += " (" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"
            if record.exc_info and record.exc_info[1] is not None:
                text += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            for redact in _redactors():
                text = redact.redact(text)
            kept = self.by_source.setdefault(source, deque(maxlen=self.keep))
            kept.append((record.created, record.levelname.lower(), text[:400]))
        except Exception:  # a status page helper must never break logging
            self.handleError(record)

    def last(self, source: str) -> list[tuple[float, str, str]]:
        return list(self.by_source.get(source, ()))


def _redactors() -> list[RedactFilter]:
    return [f for h in logging.getLogger().handlers for f in h.filters if isinstance(f, RedactFilter)]


# ------------------------------------------------------------------ receipts and their loyalty outcome


@dataclass(frozen=True)
class Outcome:
    """What loyalty did for one stored event, as far as the gateway knows it."""

    customer: str  # masked identifier the till sent ("" anonymous)
    total: int  # receipt total, kopecks (0 when the event carries no receipt)
    accrued: int  # points the core accrued (delivered sales) or 0
    redeemed: int  # points redeemed (delivered: the core's figure; else what the till asked)
    discount: int  # money off at the core (points + instant discount), kopecks; 0 until delivered
    offline: bool  # the till was answered by the offline policy
    known: bool  # the core recognised the customer (delivered sales)
    text: str  # one line for people


def mask(value: str) -> str:
    """A phone or card shown on a screen: the last 4 characters only."""
    value = value.strip()
    return "…" + value[-4:] if len(value) > 4 else "…"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def outcome(row: OutboxRow) -> Outcome:
    """The loyalty outcome of ``row`` from its event and the core's stored answer."""
    ev = row.event
    receipt = ev.receipt
    who = "" if receipt is None or receipt.customer is None else \
        f"{receipt.customer.kind} {mask(receipt.customer.value)}"
    total = 0 if receipt is None else receipt.total
    asked = 0 if receipt is None else receipt.redeem_points
    try:
        result = json.loads(row.result_json) if row.result_json else {}
    except ValueError:
        result = {}
    result = result if isinstance(result, dict) else {}
    state = str(row.state)
    offline = " (answered offline)" if ev.offline else ""
    if state == "rejected":
        return Outcome(who, total, 0, 0, 0, ev.offline, False, f"refused by the core: {row.reason}{offline}")
    if state == "resolved":
        return Outcome(who, total, 0, 0, 0, ev.offline, False,
                       f"resolved by an operator: {row.note}{offline}")
    if "commit" in result:
        calc = result["commit"].get("calculation", {}) if isinstance(result["commit"], dict) else {}
        accrued = _int(calc.get("points_to_accrue"))
        redeemed = _int(calc.get("redeemed_ordinary")) + _int(calc.get("redeemed_certificate"))
        discount = redeemed + _int(calc.get("instant_discount"))
        known = bool(calc.get("customer_id"))
        text = (f"+{accrued} points" + (f", {redeemed} redeemed" if redeemed else "") if known else
                "no customer" if not who else "customer not found: no loyalty")
        return Outcome(who, total, accrued, redeemed, discount, ev.offline, known, text + offline)
    for kind in ("refund", "cancel"):
        if kind in result and isinstance(result[kind], dict):
            back = _int(result[kind].get("points_restored"))
            return Outcome(who, total, 0, 0, 0, ev.offline, False, f"{kind} applied, {back} points restored")
    if "attach_customer" in result and isinstance(result["attach_customer"], dict):
        got = _int(result["attach_customer"].get("points_accrued"))
        return Outcome(who, total, got, 0, 0, ev.offline, True, f"customer attached later: +{got} points")
    waiting = "waiting for its sale" if state == "waiting" else "not delivered yet"
    asked_text = f", asks to redeem {asked}" if asked else ""
    return Outcome(who, total, 0, asked, 0, ev.offline, False, waiting + asked_text + offline)


# ------------------------------------------------------------------ the page


@dataclass(frozen=True)
class DriverView:
    name: str
    title: str
    shape: str


@dataclass(frozen=True)
class PageData:
    """Everything the page shows, gathered by the server (see :mod:`gateway.server`)."""

    stats: OutboxStats | None
    core_state: str
    metrics: Metrics
    window: Window
    errors: RecentErrors
    drivers: Sequence[DriverView]
    queue: Sequence[OutboxRow]
    recent: Sequence[OutboxRow]
    started_at: float
    admin_key_set: bool
    stopping: bool = False
    now: float = 0.0


def _rub(kopecks: int) -> str:
    sign = "-" if kopecks < 0 else ""
    return f"{sign}{abs(kopecks) // 100:,}".replace(",", " ") + f".{abs(kopecks) % 100:02d}"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def overview(d: PageData) -> tuple[str, list[tuple[str, str, str]]]:
    """The overall verdict and the (key, label, value) rows of the gateway table."""
    now = d.now or time.time()
    stats = d.stats
    cur = totals(d.metrics)
    problems = []
    if d.stopping:
        problems.append("stopping")
    if stats is None:
        problems.append("outbox unreadable")
    elif not stats.writable or stats.stuck:
        problems.append("outbox not writable" if not stats.writable else "delivery stuck")
    verdict = ("NOT SERVING: " + ", ".join(problems)) if problems else \
        "DEGRADED" if (stats is not None and stats.salvage) or d.metrics.alarms else "OK"
    n = d.window.since("calc_count", cur["calc_count"], now)
    s = d.window.since("calc_sum", cur["calc_sum"], now)
    latency = f"{s / n * 1000:.1f} ms average over {n:.0f} answers" if n else \
        "no online answer in the last hour"

    def hour(name: str) -> str:
        return f"{d.window.since(name, cur[name], now):.0f}"

    rows = [
        ("core_state", "core link (circuit breaker)", d.core_state),
        ("core_latency", "calculate through the core", latency),
        ("core_calls_ok", "core calls answered (last hour)", hour("core_ok")),
        ("core_calls_failed", "core calls failed (last hour)", hour("core_failed")),
        ("offline_hour", "offline answers (last hour)", hour("offline_answers")),
        ("offline_total", "offline answers (since start)", f"{cur['offline_answers']:.0f}"),
        ("outbox_pending", "outbox pending", "unreadable" if stats is None else str(stats.pending)),
        ("oldest_pending", "oldest pending age",
         "-" if stats is None else f"{stats.oldest_pending_age_s:.0f} s"),
        ("outbox_writable", "outbox writable", "-" if stats is None else ("yes" if stats.writable else "NO")),
        ("stuck", "delivery stuck", "-" if stats is None else ("YES" if stats.stuck else "no")),
        ("operator_queue", "operator queue", "-" if stats is None else str(stats.rejected)),
        ("waiting", "waiting for their sale", "-" if stats is None else str(stats.waiting)),
        ("uptime", "uptime", format_age(now - d.started_at)),
    ]
    for report in stats.salvage if stats is not None else ():
        rows.append(("salvage", "DEGRADED: outbox salvaged",
                     f"{report.salvaged} events salvaged ({report.pending} pending), {report.lost} lost"
                     f"{'' if report.complete else ' at least'}; damaged file moved to "
                     f"{report.moved_to or report.source}; acknowledge with `posgw outbox ack-salvage`"))
    return verdict, rows


def driver_counters(metrics: Metrics) -> dict[str, dict[str, float]]:
    """driver -> counter name -> value, including ``http 2xx``-style request classes."""
    out: dict[str, dict[str, float]] = {}
    for labels, value in samples(metrics, "posgw_driver_events_total"):
        out.setdefault(labels.get("driver", ""), {})[labels.get("what", "")] = value
    for labels, value in samples(metrics, "posgw_http_requests_total"):
        out.setdefault(labels.get("driver", ""), {})[f"http {labels.get('status', '')}"] = value
    for labels, value in samples(metrics, "posgw_driver_restarts_total"):
        out.setdefault(labels.get("driver", ""), {})["restarts"] = value
    return out


def _table(head: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    """A table of already escaped cells."""
    e = html.escape
    out = [f"<table class='{e(cls)}'><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(row) + "</tr>" for row in rows]
    out.append("</table>")
    return "".join(out)


def _td(value: object, key: str = "") -> str:
    attr = f" data-k='{html.escape(key)}'" if key else ""
    return f"<td{attr}>{html.escape(str(value))}</td>"


STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:1em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}
th{background:#f3f3f3}.OK{color:#060}.DEGRADED,.warn{color:#a60}.bad{color:#b00}
#verdict{font-size:1.3em;font-weight:bold}#msg{font-weight:bold;min-height:1.2em}"""

# Retry/resolve: the admin key typed by the user goes in the Authorization header; never stored.
SCRIPT = """document.querySelectorAll('button[data-action]').forEach(function (b) {
  b.addEventListener('click', async function () {
    var id = b.dataset.id, action = b.dataset.action, msg = document.getElementById('msg');
    var key = document.getElementById('admin-key').value;
    // credentials 'omit': a 401 (its Basic challenge) must not open the browser's login prompt
    var init = {method: 'POST', credentials: 'omit', headers: {'Authorization': 'Bearer ' + key}};
    if (action === 'resolve') {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify({note: document.getElementById('note-' + id).value});
    }
    try {
      var r = await fetch('/v1/queue/' + id + '/' + action, init);
      var body = await r.json();
      if (r.ok) {
        document.getElementById('state-' + id).textContent = body.state;
        msg.textContent = 'event ' + id + ': ' + action + ' done, now ' + body.state;
      } else {
        msg.textContent = 'event ' + id + ': ' + (body.error ? body.error.message : r.status);
      }
    } catch (err) { msg.textContent = 'event ' + id + ': ' + err; }
  });
});"""


def render(d: PageData) -> str:
    """The whole page (see the module docstring)."""
    e = html.escape
    now = d.now or time.time()
    verdict, rows = overview(d)
    css = "OK" if verdict == "OK" else "DEGRADED" if verdict == "DEGRADED" else "bad"
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width'><link rel='icon' href='data:,'>",
             f"<title>posgw status</title><style>{STYLE}</style></head><body>",
             f"<h1>posgw</h1><p id='verdict' class='{css}'>{e(verdict)}</p>",
             f"<p>as of {e(_when(now))} · <a href=''>refresh</a> · <a href='/healthz'>/healthz</a> · "
             "<a href='/metrics'>/metrics</a></p><h2>Gateway and core link</h2><table>"]
    parts += [f"<tr data-k='{e(key)}'><th>{e(label)}</th>{_td(value)}</tr>" for key, label, value in rows]
    parts.append("</table>")
    parts.append(_alarms(d))
    parts.append(_drivers(d))
    parts.append(_devices(d))
    parts.append(_queue(d, now))
    parts.append(_recent(d))
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "".join(parts)


def _alarms(d: PageData) -> str:
    if not d.metrics.alarms:
        return "<h2>Alarms</h2><p data-k='alarms'>none</p>"
    rows = [[_td(drv), _td(key), _td(msg), _td(_when(since))]
            for (drv, key), (msg, since) in sorted(d.metrics.alarms.items())]
    return "<h2>Alarms</h2>" + _table(("driver", "alarm", "what to do", "since"), rows, "alarms")


def _drivers(d: PageData) -> str:
    e = html.escape
    counters = driver_counters(d.metrics)
    names = [v.name for v in d.drivers] + sorted(set(counters) - {v.name for v in d.drivers})
    titles = {v.name: v.title for v in d.drivers}
    out = ["<h2>Drivers</h2>"]
    if not names:
        return out[0] + "<p>no driver enabled</p>"
    head = ("driver", *DRIVER_COUNTERS, "http 2xx", "http 4xx", "http 5xx", "restarts", "last warnings")
    rows = []
    for name in names:
        c = counters.get(name, {})
        errs = "<br>".join(f"{e(_when(t))} {e(level)}: {e(text)}" for t, level, text in d.errors.last(name))
        rows.append([_td(f"{name} ({titles[name]})" if name in titles else name),
                     *(_td(f"{c.get(k, 0):.0f}", f"{name}.{k}") for k in DRIVER_COUNTERS),
                     *(_td(f"{c.get(f'http {k}', 0):.0f}", f"{name}.http_{k}")
                       for k in ("2xx", "4xx", "5xx")),
                     _td(f"{c.get('restarts', 0):.0f}", f"{name}.restarts"),
                     f"<td data-k='{e(name)}.errors'>{errs or 'none'}</td>"])
    out.append(_table(head, rows, "drivers"))
    gateway = d.errors.last("gateway")
    if gateway:
        out.append("<p>gateway's last warnings:</p><ul data-k='gateway.errors'>")
        out += [f"<li>{e(_when(t))} {e(level)}: {e(text)}</li>" for t, level, text in gateway]
        out.append("</ul>")
    return "".join(out)


def _devices(d: PageData) -> str:
    devices = [v for v in d.drivers if v.shape == "device"]
    if not devices:
        return "<h2>Devices</h2><p data-k='devices'>no device driver enabled</p>"
    counters = driver_counters(d.metrics)
    rows = []
    for v in devices:
        alarms = [msg for (drv, _), (msg, _since) in d.metrics.alarms.items() if drv == v.name]
        c = counters.get(v.name, {})
        frames = c.get("device_frame", 0)
        state = ("ALARM: " + "; ".join(alarms) if alarms else
                 "present" if frames else "no alarm, nothing read yet")
        rows.append([_td(f"{v.name} ({v.title})"), _td(state, f"{v.name}.device"),
                     _td(f"{c.get('device_frame', 0):.0f}"), _td(f"{c.get('device_absent', 0):.0f}")])
    return "<h2>Devices</h2>" + _table(("driver", "device", "frames read", "failed opens"), rows, "devices")


def _queue(d: PageData, now: float) -> str:
    out = [f"<h2>Operator queue (<span data-k='queue_rows'>{len(d.queue)}</span>)</h2>"]
    if not d.queue:
        return out[0] + "<p>empty: nothing waits for an operator</p>"
    if not d.admin_key_set:
        out.append("<p class='warn'>set gateway.admin_api_key in the config "
                   "to retry or resolve from here</p>")
    out.append("<p><label>admin key <input type='password' id='admin-key' autocomplete='off'></label> "
               "(gateway.admin_api_key; sent with each action, not stored)</p><p id='msg'></p>")
    rows = []
    for r in d.queue[:QUEUE_SHOWN]:
        i = int(r.id)
        rows.append([_td(i), _td(r.key), _td(r.kind), _td(r.reason), _td(r.last_error),
                     _td(format_age(now - r.created_at)),
                     f"<td id='state-{i}'>{html.escape(str(r.state))}</td>",
                     f"<td><button data-id='{i}' data-action='retry'>retry</button> "
                     f"<input id='note-{i}' placeholder='how it was handled' size='18'> "
                     f"<button data-id='{i}' data-action='resolve'>resolve</button></td>"])
    out.append(_table(("id", "key", "kind", "reason", "error", "age", "state", "action"), rows, "queue"))
    if len(d.queue) > QUEUE_SHOWN:
        out.append(f"<p>and {len(d.queue) - QUEUE_SHOWN} more: <code>posgw queue list</code></p>")
    return "".join(out)


def _recent(d: PageData) -> str:
    out = ["<h2>Recent receipts</h2>"]
    if not d.recent:
        return out[0] + "<p>none yet</p>"
    rows = []
    for r in d.recent:
        o = outcome(r)
        receipt = r.event.receipt
        number = r.key if receipt is None else (receipt.receipt_number or receipt.document_id or r.key)
        rows.append([_td(_when(r.created_at)), _td(r.kind), _td(r.register_id), _td(number),
                     _td(_rub(o.total) if receipt is not None else "-"), _td(o.customer or "-"),
                     _td(str(r.state)), _td(o.text)])
    out.append(_table(("stored", "kind", "register", "number", "total ₽", "customer", "state", "loyalty"),
                      rows, "recent"))
    return "".join(out)
