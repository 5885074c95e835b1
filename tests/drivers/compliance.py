"""The driver compliance suite: one set of checks every driver passes in the real gateway.

A driver's ``tests/drivers/<name>/test_compliance.py`` subclasses :class:`ComplianceSuite`
with an :class:`Adapter` saying how to talk to it (requests with headers, paths and bodies;
what its "ok" answer and its vendor-shaped error look like). Each check runs the driver mounted
in the real daemon (see :mod:`tests.drivers.compliance_harness`: real Pipeline, real SQLite
Outbox in ``tmp_path``, a stub gRPC core or a closed port, real sockets) and asserts:

- no acknowledgement before the durable write: while ``Outbox.append`` is held, no answer
  arrives and no row exists; an append that raises StorageError is never answered 2xx;
- a commit delivered twice (one after the other, and two at once) is stored once and the
  second answer is the vendor's success (what a redelivering till / cloud expects);
- bad input gets the vendor-shaped 4xx and stores nothing; so do auth failures;
- a calc is answered in the vendor's shape online and with the core unreachable;
- the calc token: a sale carrying a token this gateway issued is stored with what the token
  says (customer, points, hold, offline) and without the token; a forged, foreign or altered
  token gets the vendor-shaped 4xx and nothing is stored;
- a body that does not arrive within the driver's read limit gets 408 in the vendor's shape;
  past ``gateway.max_requests_in_flight`` a request gets the vendor's 503 with ``Retry-After``
  at once, without reaching the driver;
- clean stop: the daemon stops within its bound while a commit is in flight, that commit is
  answered and stored, no task is left behind, nothing is logged at WARNING by the daemon;
- the standard metrics are in ``/metrics``: ``posgw_http_requests_total{driver=<name>}`` and
  ``posgw_driver_events_total{driver=<name>}``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.calc_token import CalcTokens
from gateway.errors import StorageError
from gateway.receipt import CustomerId, Event, IdKind
from tests.drivers.compliance_harness import (
    TOKENS,
    Gateway,
    Reply,
    Request,
    calc_token,
    read_rows,
    running,
    stored_events,
    wait_until,
)

KINDS = ("sale", "refund", "cancel")
TOKEN_CUSTOMER = CustomerId(IdKind.CARD, "2000012345")  # the customer a calc token names (the payloads' card)
HELD_S = 0.3  # how long a held append must keep the answer back (the thing asserted, not a wait for work)


class Adapter:
    """How the suite talks to one driver. Subclass and fill in every method."""

    name: ClassVar[str] = ""

    def options(self) -> dict[str, Any]:
        """The ``[drivers.<name>]`` section (without ``enabled``): auth secrets etc."""
        raise NotImplementedError

    def calc(self) -> Request:
        """A valid calc request for a receipt with a customer."""
        raise NotImplementedError

    def commits(self) -> dict[str, Request]:
        """Valid commit requests by kind (``sale`` required; ``refund``/``cancel`` if supported)."""
        raise NotImplementedError

    def bad_inputs(self) -> list[Request]:
        """Authorized requests with malformed or invalid bodies (each must get a 4xx)."""
        raise NotImplementedError

    def unauthorized(self) -> list[Request]:
        """Commit/calc requests with missing or wrong credentials (each must get 401/403)."""
        raise NotImplementedError

    def sale_with_token(self, token: str) -> Request:
        """A valid sale whose till carried ``token`` (the calc token) back from its calculate, the
        way this vendor's till carries data from calc to commit."""
        raise NotImplementedError

    def check_ok(self, kind: str, reply: Reply, *, duplicate: bool) -> None:
        """Assert ``reply`` is the vendor's success for a commit (``duplicate``: a redelivery)."""
        raise NotImplementedError

    def check_calc(self, reply: Reply, *, online: bool) -> None:
        """Assert ``reply`` is a calc answer the till applies (never one that blocks the sale)."""
        raise NotImplementedError

    def check_error(self, reply: Reply) -> None:
        """Assert ``reply`` carries the vendor's error body (status already checked)."""
        raise NotImplementedError


Append = Callable[[Event], Awaitable[bool]]


def _commit(adapter: Adapter, kind: str) -> Request:
    req = adapter.commits().get(kind)
    if req is None:
        pytest.skip(f"the {adapter.name} driver has no {kind} request")
    return req


def _hold_appends(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event]:
    """Make every outbox append wait for ``release`` (``entered`` is set when one is waiting)."""
    outbox = gw.daemon.outbox
    assert outbox is not None
    original: Append = outbox.append
    entered, release = asyncio.Event(), asyncio.Event()

    async def held(event: Event) -> bool:
        entered.set()
        await release.wait()
        return await original(event)

    monkeypatch.setattr(outbox, "append", held)
    return entered, release


class ComplianceSuite:
    """Inherit in ``TestXxxCompliance`` and set ``adapter``; pytest collects the checks below."""

    adapter: ClassVar[Adapter]

    # ------------------------------------------------------------ durable write before the ack

    @pytest.mark.parametrize("kind", KINDS)
    async def test_no_ack_before_the_durable_write(
        self, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        req = _commit(self.adapter, kind)
        async with running(self.adapter.name, self.adapter.options(), tmp_path) as gw:
            entered, release = _hold_appends(gw, monkeypatch)
            answer = asyncio.create_task(gw.send(req), name=f"compliance-{kind}")
            await asyncio.wait_for(entered.wait(), 10)
            done, _ = await asyncio.wait({answer}, timeout=HELD_S)
            assert not done, f"{kind}: answered before the outbox write finished: {answer.result()}"
            assert gw.rows() == []
            release.set()
            reply = await answer
            self.adapter.check_ok(kind, reply, duplicate=False)
            assert len(gw.rows()) == 1

    @pytest.mark.parametrize("kind", KINDS)
    async def test_storage_failure_is_never_acknowledged(
        self, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        req = _commit(self.adapter, kind)
        async with running(self.adapter.name, self.adapter.options(), tmp_path) as gw:
            async def failing(event: Event) -> bool:
                raise StorageError("disk full (compliance test)")

            monkeypatch.setattr(gw.daemon.outbox, "append", failing)
            reply = await gw.send(req)
            assert not 200 <= reply.status < 300, f"{kind}: acknowledged a failed write: {reply}"
            assert reply.status >= 500, f"{kind}: a storage failure must ask for a resend, got {reply}"
            self.adapter.check_error(reply)
            assert gw.rows() == []

    # ------------------------------------------------------------ duplicates

    @pytest.mark.parametrize("kind", KINDS)
    async def test_duplicate_is_stored_once_and_answered_as_success(self, kind: str, tmp_path: Path) -> None:
        req = _commit(self.adapter, kind)
        async with running(self.adapter.name, self.adapter.options(), tmp_path) as gw:
            self.adapter.check_ok(kind, await gw.send(req), duplicate=False)
            self.adapter.check_ok(kind, await gw.send(req), duplicate=True)
            rows = gw.rows()
            assert len(rows) == 1, rows

    async def test_concurrent_duplicates_are_stored_once(self, tmp_path: Path) -> None:
        req = _commit(self.adapter, "sale")
        async with running(self.adapter.name, self.adapter.options(), tmp_path) as gw:
            replies = await asyncio.gather(*(gw.send(req) for _ in range(4)))
            for reply in replies:
                assert 200 <= reply.status < 300, reply
            for reply in replies:  # each is the first answer or a redelivery's; which one is a race
                try:
                    self.adapter.check_ok("sale", reply, duplicate=False)
                except AssertionError:
                    self.adapter.check_ok("sale", reply, duplicate=True)
            assert len(gw.rows()) == 1

    # ------------------------------------------------------------ bad input, auth

    async def test_bad_input_gets_the_vendor_4xx_and_nothing_is_stored(self, tmp_path: Path) -> None:
        bad = self.adapter.bad_inputs()
        assert bad, "give at least one bad-input request"
        async with running(self.adapter.name, self.adapter.options(), tmp_path) as gw:
            for req in bad:
                reply = await gw.send(req)
                assert 400 <= reply.status < 500, (req.note or req.path, reply)
                self.adapter.check_error(reply)
            assert gw.rows() == []

    async def test_auth_failures_are_rejected_and_nothing_is_stored(self, tmp_path: Path) -> None:
        denied = self.adapter.unauthorized()
        assert denied, "give at least one request with missing or wrong credentials"
        async with running(self.adapter.name, self.adapter.options(), tmp_path) as gw:
            for req in denied:
                reply = await gw.send(req)
                assert reply.status in (401, 403), (req.note or req.path, reply)
                self.adapter.check_error(reply)
            assert gw.rows() == []
            assert gw.core is not None and gw.core.calculations == 0

    # ------------------------------------------------------------ slow and busy

    async def test_a_slow_body_gets_408_in_the_read_limit_and_nothing_stored(self, tmp_path: Path) -> None:
        req = _commit(self.adapter, "sale")
        options = dict(self.adapter.options(), read_timeout_ms=300)
        async with running(self.adapter.name, options, tmp_path) as gw:
            head = "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
            port = gw.daemon.port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(f"{req.method} /v1/{gw.name}{req.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
                             f"Content-Length: {len(req.body)}\r\n\r\n".encode() + req.body[:5])
                await writer.drain()  # ...and the rest never comes
                raw = await asyncio.wait_for(reader.read(65536), 10)
            finally:
                writer.close()
            head_raw, _, body = raw.partition(b"\r\n\r\n")
            status_line, *header_lines = head_raw.decode("latin-1").split("\r\n")
            assert status_line.split()[1] == "408", raw
            headers = dict(line.split(": ", 1) for line in header_lines)
            self.adapter.check_error(Reply(408, body, headers))
            assert gw.rows() == []

    async def test_past_the_in_flight_limit_tills_get_a_fast_vendor_shaped_retry(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        req = _commit(self.adapter, "sale")
        async with running(self.adapter.name, self.adapter.options(), tmp_path,
                           gateway={"max_requests_in_flight": 1}) as gw:
            entered, release = _hold_appends(gw, monkeypatch)
            first = asyncio.create_task(gw.send(req), name="compliance-held")
            await asyncio.wait_for(entered.wait(), 10)
            busy = await gw.send(req)  # the one slot is taken: refused before any handler runs
            assert busy.status == 503 and busy.headers.get("Retry-After") == "1", busy
            self.adapter.check_error(busy)
            release.set()
            self.adapter.check_ok("sale", await first, duplicate=False)
            assert len(gw.rows()) == 1
            metrics = await gw.get("/metrics")
            assert b'posgw_http_refused_total{reason="busy"} 1.0' in metrics.body

    # ------------------------------------------------------------ the calc token route

    async def test_calc_token_brought_back_is_applied_and_never_stored(self, tmp_path: Path) -> None:
        token = calc_token(hold_id="hold-c", redeemed=7, offline=True, customer=TOKEN_CUSTOMER)
        async with running(self.adapter.name, self.adapter.options(), tmp_path) as gw:
            reply = await gw.send(self.adapter.sale_with_token(token))
            self.adapter.check_ok("sale", reply, duplicate=False)
            [event] = stored_events(gw.outbox_path)
        assert event.offline and event.hold_id == "hold-c" and event.expected_redeemed == 7
        assert event.receipt is not None and event.receipt.customer == TOKEN_CUSTOMER
        assert not event.calc_token

    @pytest.mark.parametrize("forge", ["altered", "foreign", "garbage"])
    async def test_forged_calc_token_is_refused_and_nothing_stored(self, forge: str, tmp_path: Path) -> None:
        good = calc_token(redeemed=5000, customer=TOKEN_CUSTOMER)
        token = {"altered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
                 "foreign": CalcTokens(b"k" * 32).issue(TOKENS.read(good)),
                 "garbage": "c1.not-a.token"}[forge]
        async with running(self.adapter.name, self.adapter.options(), tmp_path) as gw:
            reply = await gw.send(self.adapter.sale_with_token(token))
            assert 400 <= reply.status < 500, reply
            self.adapter.check_error(reply)
            assert gw.rows() == []

    # ------------------------------------------------------------ calc

    @pytest.mark.parametrize("online", [True, False], ids=["core-up", "core-down"])
    async def test_calc_is_answered_in_the_vendor_shape(self, online: bool, tmp_path: Path) -> None:
        async with running(self.adapter.name, self.adapter.options(), tmp_path, online=online) as gw:
            started = time.monotonic()
            reply = await gw.send(self.adapter.calc())
            assert time.monotonic() - started < 5, "a calc must not hang the till"
            self.adapter.check_calc(reply, online=online)
            assert gw.rows() == []

    # ------------------------------------------------------------ clean stop

    async def test_clean_stop_with_a_commit_in_flight(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    ) -> None:
        req = _commit(self.adapter, "sale")
        caplog.set_level(logging.WARNING, logger="posgw.daemon")
        async with running(self.adapter.name, self.adapter.options(), tmp_path) as gw:
            entered, release = _hold_appends(gw, monkeypatch)
            answer = asyncio.create_task(gw.send(req), name="compliance-in-flight")
            await asyncio.wait_for(entered.wait(), 10)
            started = time.monotonic()
            stopping = asyncio.create_task(gw.daemon.stop(timeout=5.0), name="compliance-stop")
            gw.stopped = True
            await wait_until(lambda: gw.daemon._drivers_stopping.is_set())
            release.set()
            reply = await answer
            await stopping
            elapsed = time.monotonic() - started
            self.adapter.check_ok("sale", reply, duplicate=False)
            assert elapsed < 5.0, f"stop took {elapsed:.2f} s"
            port = gw.daemon.port
        assert len(read_rows(gw.outbox_path)) == 1  # the acknowledged commit is on disk
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        assert left == [], left
        daemon_warnings = [r.getMessage() for r in caplog.records if r.name == "posgw.daemon"]
        assert daemon_warnings == []

    # ------------------------------------------------------------ metrics

    async def test_standard_metrics_are_emitted(self, tmp_path: Path) -> None:
        name = self.adapter.name
        async with running(name, self.adapter.options(), tmp_path) as gw:
            self.adapter.check_ok("sale", await gw.send(_commit(self.adapter, "sale")), duplicate=False)
            await gw.send(self.adapter.bad_inputs()[0])
            scraped = await gw.get("/metrics")
            assert scraped.status == 200
            http: dict[str, float] = {}
            events: dict[str, float] = {}
            for family in text_string_to_metric_families(scraped.text()):
                for sample in family.samples:
                    if sample.labels.get("driver") != name:
                        continue
                    if sample.name == "posgw_http_requests_total":
                        http[sample.labels["status"]] = sample.value
                    elif sample.name == "posgw_driver_events_total":
                        events[sample.labels["what"]] = sample.value
            assert http.get("2xx", 0) >= 1 and http.get("4xx", 0) >= 1, http
            assert events and sum(events.values()) >= 1, events
