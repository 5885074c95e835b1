"""The driver contract: the only things a driver talks to, and the registry of drivers.

A driver parses its vendor's wire format, maps it to :class:`gateway.receipt.Receipt`, and
calls :meth:`DriverContext.calculate` / :meth:`DriverContext.submit`. Deadlines, retries,
storage, offline policy and replay live in the pipeline, never in a driver.

Invariants a driver keeps:
- it acknowledges its till (HTTP 200, cursor advance) only after ``submit`` returned;
- it never catches :class:`gateway.errors.StorageError` to acknowledge anyway;
- HTTP drivers mount routes only under ``/v1/<name>/`` and declare their :class:`Edge` (body
  and read-time limits, vendor-shaped refusals): the server and :mod:`gateway.http_edge` take
  every limit and every error body from it, nothing from gateway-wide defaults or attributes
  looked up by name; poll and device drivers run in ``run(ctx)`` until ``ctx.stopping`` is set,
  are restarted with backoff by the supervisor when they raise, and declare ``edge = None``;
- its name is written once, as the package's ``NAME`` in ``drivers/<name>/__init__.py``; the
  folder, the registry key, the ``[drivers.<name>]`` config section, the metric label and
  the ``posgw sim <name>`` simulator all use that one name (checked by
  ``tests/test_conventions.py``).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from gateway.errors import BadInput
from gateway.receipt import CustomerId, Event, Receipt

# The only names ``DriverContext.count`` accepts: the same label values for every driver.
COUNTERS = frozenset({
    "requests",        # an HTTP request reached the driver's edge
    "auth_failed",     # refused 401/403: missing or wrong token, signature or password
    "bad_input",       # refused 4xx: malformed or invalid body; nothing stored
    "storage_error",   # refused 503: the durable write failed; the till resends
    "identify",        # a customer lookup answered
    "calc",            # a calculate answered
    "offline_answer",  # ... of which the offline policy answered
    "calc_skipped",    # a calculate answered without loyalty because the gateway failed
    "committed",       # a new event stored
    "duplicate",       # an event already stored (answered as the vendor expects)
    "ignored",         # acknowledged, changes nothing (a document kind without loyalty)
    "polled",          # a poll driver fetched a page of documents
    "poll_failed",     # a poll of the vendor failed (retried with backoff)
    "device_frame",    # a device driver read a frame
    "device_absent",   # a device driver could not open its port
})


@dataclass(frozen=True, slots=True)
class CalcLine:
    line_id: str
    discount: int
    paid: int
    accrues: bool


@dataclass(frozen=True, slots=True)
class CalcResult:
    """What a driver turns into its till's answer.

    ``offline`` means the gateway's offline policy answered (accrual provisional, balance
    pending). ``customer_found`` is False when the customer is unknown: sell without loyalty.
    """

    lines: tuple[CalcLine, ...]
    redeemed_points: int
    points_to_accrue: int
    max_points: int
    payable: int
    offline: bool
    customer_found: bool
    customer_id: str = ""
    display_name: str = ""
    tier: str = ""
    balance: int | None = None  # None when unknown (offline): print "pending", not a stale figure
    hold_id: str = ""
    limited_by: str = ""
    message: str = ""  # text for the slip / cashier screen, in the program's language
    rejection: str = ""  # a §2.5 code when the requested redemption was refused
    token: str = ""  # the signed calc token (see gateway.calc_token): hand it to the till if it carries data
    # who the answer is for: the till's customer, or the one a scanner bound to its register when the
    # till named none (gateway.bindings). Drivers build answers and slips from this, not their receipt.
    customer: CustomerId | None = None

    @property
    def total_discount(self) -> int:
        return sum(line.discount for line in self.lines)


@dataclass(frozen=True, slots=True)
class CustomerInfo:
    customer_id: str
    display_name: str
    tier: str
    balance: int | None
    offline: bool


@dataclass(frozen=True, slots=True)
class RegisterNews:
    """What happened at a register, told to the devices watching it
    (:meth:`DriverContext.watch_register`): ``calc`` (a calculate was answered: ``result``, for
    ``customer``) or ``closed`` (a sale of the register was stored; ``customer`` it was for)."""

    kind: str  # "calc" | "closed"
    register_id: str
    customer: CustomerId | None = None
    result: CalcResult | None = None


class StateStore(Protocol):
    """Persisted per-driver key/value state (cursors, last seen ids, links between ids).
    ``put`` returns once the value is durable; a value put with ``keep_s`` is forgotten that many
    seconds later (None: kept until overwritten). Lookups are indexed: many keys are fine."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str, *, keep_s: float | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class CalcClaims:
    """What a calculate decided, as read back from a verified calc token."""

    customer: CustomerId | None
    redeemed: int
    discount: int
    hold_id: str
    offline: bool
    program_version: str
    register_id: str


@dataclass(frozen=True)
class Refusals:
    """A vendor's refusals as data: the bodies the edge answers with; the statuses are the edge's.

    ``other`` renders the rest (404, 405, 415, 429, 500, 503) from ``(status, code, message)``.
    """

    unauthorized: Callable[[str], bytes]  # 401 / 403, given why (never the secret)
    timeout: bytes  # 408: the body did not arrive within the read time limit
    too_large: Callable[[int], bytes]  # 413, given the limit in bytes
    bad_input: Callable[[BadInput], bytes]  # 400
    not_stored: bytes  # 503: the durable write failed, the till should resend
    other: Callable[[int, str, str], bytes]
    content_type: str = "application/json"
    charset: str = ""  # e.g. "utf-8" for text/xml answers; "" leaves the charset out
    headers: Mapping[str, str] = field(default_factory=dict)  # on every answer (CORS)
    challenge: str = ""  # WWW-Authenticate value sent with a 401, when the vendor has one


@dataclass(frozen=True)
class Edge:
    """An HTTP driver's declaration of its edge: limits and refusals in its vendor's shape."""

    refusals: Refusals
    max_body_bytes: int = 1 << 20
    read_timeout_s: float = 10.0


class CodeSent(Protocol):
    """The core's answer to a confirmation-code request."""

    @property
    def code(self) -> str: ...  # the code issued ("" when none was issued)

    @property
    def status(self) -> str: ...  # sent | not_sent (provider slow or down) | rate_limited | locked

    @property
    def retry_after_s(self) -> int: ...  # seconds before another code may be asked for this phone


@runtime_checkable
class CustomerDesk(Protocol):
    """Core operations a till may ask for beyond calculate / identify / submit: creating a customer
    at the till and sending a confirmation code (``ctx.desk``; :class:`gateway.core_client.CoreClient`
    is one). Every call is bounded by ``timeout`` (the driver's budget) and raises only gateway
    errors: :class:`gateway.errors.CoreUnavailable` when the core is away or slow,
    :class:`gateway.errors.BusinessRejection` for a refusal. Nothing here is stored by the gateway:
    these are online-only operations with no offline answer."""

    async def register_customer(
        self, *, phone: str, card: str, name: str, email: str, birth_date: str, gender: str,
        store_id: str, timeout: float,  # noqa: ASYNC109 - the driver's budget, passed to gRPC
    ) -> str:
        """The core's customer id of a new (or already registered) customer."""
        ...

    async def send_code(
        self, phone: str, *, purpose: str, wait_ms: int, timeout: float,  # noqa: ASYNC109
    ) -> CodeSent:
        """Issue a code for ``phone`` and hand it to the SMS provider, waiting at most ``wait_ms``."""
        ...


class DriverContext(Protocol):
    name: str
    log: logging.Logger
    state: StateStore
    stopping: asyncio.Event
    desk: CustomerDesk | None  # the core's customer desk; None when the gateway has none to give

    async def calculate(self, receipt: Receipt) -> CalcResult:
        """Answer within the calc budget, online or from the offline policy. Never raises
        for core trouble; raises BadInput for receipts the core would refuse."""
        ...

    async def identify(self, customer: CustomerId) -> CustomerInfo | None: ...

    async def submit(self, event: Event) -> bool:
        """Store durably; return True if new, False if the key was already stored
        (a duplicate). Raises StorageError when nothing was stored, BadInput when
        ``event.calc_token`` is forged or altered (nothing stored)."""
        ...

    def calc_claims(self, token: str) -> CalcClaims:
        """What the calculate that issued ``token`` decided; BadInput when the token was not
        issued by this gateway or was altered."""
        ...

    def count(self, what: str, n: int = 1) -> None:
        """Increment ``posgw_driver_events_total{driver,what}``; ``what`` is one of COUNTERS."""
        ...

    def alarm(self, key: str, message: str | None) -> None:
        """Raise (``message``: what is wrong and what to do) or clear (None) the alarm ``key``
        (``[a-z0-9_:.-]``, e.g. ``fiscal_sign:<drive>`` or ``port:<name>``): listed in ``/healthz``
        (status ``degraded``) and ``posgw_driver_alarm{driver,key}`` until cleared."""
        ...

    async def bind_customer(self, register_id: str, customer: CustomerId, *, keep_s: float) -> None:
        """Bind ``customer`` to ``register_id``'s next receipt for ``keep_s`` seconds (any driver's
        calculate and sale of that register naming no customer get it; see
        :mod:`gateway.bindings`); returns once durable, StorageError when nothing was bound."""
        ...

    def watch_register(self, register_id: str,
                       listener: Callable[[RegisterNews], None]) -> Callable[[], None]:
        """Call ``listener`` (on the loop; it must not block) with the news of ``register_id``
        until the returned function is called."""
        ...


@runtime_checkable
class Driver(Protocol):
    name: str

    @property
    def edge(self) -> Edge | None:
        """The HTTP edge's declaration; None: no HTTP routes (poll and device drivers)."""
        ...

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        """HTTP routes, paths relative to ``/v1/<name>/``; empty for poll/serial drivers."""
        ...

    async def run(self, ctx: DriverContext) -> None:
        """Long-running work (poll loop, port loop); return at once for HTTP-only drivers."""
        ...


class DriverFactory(Protocol):
    def __call__(self, options: Mapping[str, Any]) -> Driver: ...


def discover(package: str = "drivers") -> dict[str, str]:
    """Every driver folder of ``package`` (a sub-package with a ``driver.py``) as
    name -> ``"drivers.<name>.driver:create"``; the folder name is the driver's name."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return {}
    found: dict[str, str] = {}
    for location in spec.submodule_search_locations:
        for folder in sorted(Path(location).iterdir()):
            if (folder / "__init__.py").is_file() and (folder / "driver.py").is_file():
                found[folder.name] = f"{package}.{folder.name}.driver:create"
    return found


# The registry, derived from the folders under drivers/: name -> "module:factory".
REGISTRY: dict[str, str] = discover()
SHAPES = ("push", "poll", "device")


@dataclass(frozen=True, slots=True)
class DriverInfo:
    """A driver package's plain metadata (``drivers/<name>/__init__.py``): ``NAME``, ``TITLE``
    (what an installer reads), ``SHAPE`` (push, poll or device) and ``DELIVERY`` (how its
    vendor redelivers and what makes a copy the same)."""

    name: str
    title: str
    shape: str
    delivery: str
    called_by: str = "till"  # CALLED_BY: "till" (a LAN device calls us) or "cloud" (a vendor's cloud)


CALLERS = ("till", "cloud")


def driver_info(name: str) -> DriverInfo:
    """The metadata of the registered driver ``name`` (its package, imported by name).

    ``CALLED_BY`` is optional in the package (default ``"till"``); ``"cloud"`` means the vendor's
    cloud calls the gateway, so it must be reachable from the internet over HTTPS
    (``check-config`` warns when such a driver listens on plain-HTTP loopback)."""
    package = importlib.import_module(REGISTRY[name].partition(":")[0].rpartition(".")[0])
    return DriverInfo(name=str(package.NAME), title=str(package.TITLE), shape=str(package.SHAPE),
                      delivery=str(package.DELIVERY), called_by=str(getattr(package, "CALLED_BY", "till")))


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of a driver's own configuration check, as ``check-config`` and ``doctor`` print it.

    A driver module (``drivers/<name>/driver.py``) may define ``check(options) -> list[Finding]``
    to check what its pydantic ``Config`` cannot (a serial port that does not exist, a host that
    does not resolve); it must not block for more than a second and never raises for bad input
    (that is a FAIL finding). ``key`` is the option under ``[drivers.<name>]``.
    """

    level: str  # "FAIL" (the config cannot work) or "WARN" (it works, but probably not as meant)
    key: str
    message: str  # what is wrong
    fix: str  # what to do about it


def driver_check(name: str, options: Mapping[str, Any]) -> list[Finding]:
    """The findings of driver ``name``'s optional ``check(options)``; [] when it has none."""
    module = importlib.import_module(REGISTRY[name].partition(":")[0])
    check = getattr(module, "check", None)
    return list(check(options)) if callable(check) else []


def load_driver(name: str, options: Mapping[str, Any]) -> Driver:
    """Instantiate a registered driver by name (the CLI passes the config section)."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown driver {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    module_name, _, attr = target.partition(":")
    factory: DriverFactory = getattr(importlib.import_module(module_name), attr)
    return factory(options)
