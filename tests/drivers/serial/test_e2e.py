"""End to end on pty pairs: the real gateway and reference core processes, the serial driver's
scanner and display on pty pairs this test plays, the Evotor simulator's terminal and the native
API as the after-the-fact path.

- a scan binds a customer; the next receipt of a till that calculates through the native API
  without a customer is calculated and committed for them, and the display shows the points to
  earn and the balance, then thanks, then the idle text;
- the next Evotor terminal receipt (sent without a customer) is calculated for the customer
  scanned at that terminal's register (the plugin gets an answer with our calc token, which it
  carries to the close) and committed for them;
- a sale sent after the fact (closed receipts only, no calc) is committed for the customer whose
  scan preceded its close time; one closed before the scan is not;
- with the core down: the scan still binds ("Карта принята" / "Баланс недоступен"), the receipt
  is answered offline and the display says the balance is unavailable;
- unplugging the scanner and the display (closing their ptys) and plugging them back under the
  same names recovers without a restart;
- a scanner flooding garbage does not block the event loop: calc latency at the till is measured
  with and without the flood and printed (no timed assertion: a shared noisy machine).
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.receipt import CustomerId, IdKind
from simulators.devices.display import DisplayModel
from simulators.devices.ptys import DevicePty
from simulators.devices.scanner import frame, garbage
from simulators.registers.evotor.till import EvotorConfig, EvotorTill
from simulators.registers.http import Poster
from simulators.registers.native.report import Recorder, percentile
from simulators.stack import Stack, StackOptions
from tests.drivers.compliance_harness import stored_events

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240),
              pytest.mark.skipif(sys.platform != "linux", reason="pty pairs")]

PHONE = "+79162000101"
LATE_PHONE = "+79162000102"
TOKEN = "e2e-evotor-plugin"
TILL = "till-n1"  # the native till the scanner and the display stand at
NO_CUSTOMER = EvotorConfig(customer_share=0.0, redeem_share=0.0, refund_share=0.0, cancel_share=0.0,
                           cloud_share=0.0, free_price_share=0.0)


@dataclass
class Screen:
    """The display pty, decoded as a person reads it: every screen it showed, in order (read every
    10 ms; the driver repaints at most 5 times a second, so no screen is missed)."""

    pty: DevicePty
    model: DisplayModel
    history: list[tuple[str, str]]
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            data = self.pty.read()
            if data:
                self.model.feed(data)
                if not self.history or self.history[-1] != self.model.text():
                    self.history.append(self.model.text())
            await asyncio.sleep(0.01)

    def mark(self) -> int:
        return len(self.history)

    async def shows(self, want: tuple[str, str] | None = None, *, first: str = "", since: int | None = None,
                    within_s: float = 15.0) -> tuple[str, str]:
        """The first screen from ``since`` (default: the current one) that is ``want`` or whose first
        line starts with ``first``."""
        start = max(0, len(self.history) - 1) if since is None else since
        end = time.monotonic() + within_s
        while True:
            for text in self.history[start:]:
                if (want is not None and text == want) or (first and text[0].startswith(first)):
                    return text
            if time.monotonic() > end:
                raise AssertionError(f"display showed {self.history[start:]}, expected {want or first}")
            await asyncio.sleep(0.02)


def toml(register: str, evotor_register: str, scanner: Path, late: Path, display: Path) -> str:
    return f"""
[drivers.evotor]
enabled = true
pairing_tokens = ["{TOKEN}"]
cloud_user_token = "e2e-cloud-user"

[drivers.serial]
enabled = true
bind_s = 120.0
thanks_s = 1.0

[[drivers.serial.devices]]
name = "scanner"
role = "scanner"
register_id = "{register}"
port = "{scanner}"

[[drivers.serial.devices]]
name = "evotor-scanner"
role = "scanner"
register_id = "{evotor_register}"
port = "{late}"

[[drivers.serial.devices]]
name = "display"
role = "display"
register_id = "{register}"
port = "{display}"
command_set = "cd5220"
encoding = "cp866"
"""


async def wait_open(*ptys: DevicePty, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    end = time.monotonic() + timeout
    while not all(p.peer_open() for p in ptys):
        assert time.monotonic() < end, "the gateway did not open the device ports"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # pyserial flushes its input right after opening


async def scan(pty: DevicePty, code: str) -> None:
    await asyncio.to_thread(pty.send, frame(code, "crlf"))


def stored_customer(stack: Stack, register: str, number: str) -> CustomerId | None:
    for event in stored_events(stack.gateway_dir / "outbox.db"):
        if event.receipt is not None and (event.receipt.register_id, event.receipt.receipt_number) == (
                register, number):
            return event.receipt.customer
    raise AssertionError(f"no sale {register}/{number} stored")


async def calc_answers(stack: Stack, driver: str) -> dict[str, float]:
    """``posgw_calc_answers_total{driver}`` by mode (online, offline, no_customer), from /metrics."""
    async with aiohttp.ClientSession() as session, session.get(f"{stack.gateway_url}/metrics") as resp:
        text = await resp.text()
    return {sample.labels["mode"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "posgw_calc_answers_total" and sample.labels.get("driver") == driver}


def native_receipt(register: str, number: str, at: datetime) -> dict[str, Any]:
    return {"register_id": register, "receipt_number": number, "shift": "1",
            "occurred_at": at.isoformat(timespec="seconds"),
            "lines": [{"line_id": "1", "sku": "4600001", "name": "Кофе", "price": 50_000, "qty_milli": 1000,
                       "amount": 50_000}]}


async def native(session: aiohttp.ClientSession, stack: Stack, path: str, body: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {stack.options.api_key}"}
    async with session.post(f"{stack.gateway_url}/v1/native/{path}", json=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def native_sale(session: aiohttp.ClientSession, stack: Stack, register: str, number: str,
                      at: datetime) -> None:
    await native(session, stack, "sales", native_receipt(register, number, at))


async def native_till(session: aiohttp.ClientSession, stack: Stack, number: str) -> dict[str, Any]:
    """A till on the native API: calculate without a customer, then the sale with the calc token."""
    receipt = native_receipt(TILL, number, datetime.now(UTC))
    answer = await native(session, stack, "calculate", receipt)
    await native(session, stack, "sales", dict(receipt, calc_token=answer["calc_token"]))
    return dict(answer)


async def wait_known(stack: Stack, *phones: str) -> None:
    """Until the gateway identifies every phone online (the core link is up, the customers exist)."""
    headers = {"Authorization": f"Bearer {stack.options.api_key}"}
    async with aiohttp.ClientSession() as session:
        for phone in phones:
            for _ in range(200):
                async with session.post(f"{stack.gateway_url}/v1/native/identify", headers=headers,
                                        json={"customer": {"phone": phone}}) as resp:
                    found = await resp.json()
                if resp.status == 200 and found.get("found") and not found.get("offline"):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"the gateway never identified {phone} online")
    await asyncio.sleep(1.5)  # one more snapshot refresh: the offline answers know them too


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[tuple[Stack, EvotorTill, DevicePty, DevicePty, Screen]]:
    scanner = DevicePty(tmp_path / "by-id-scanner")
    late = DevicePty(tmp_path / "by-id-late-scanner")
    display = DevicePty(tmp_path / "by-id-display")
    recorder = Recorder()
    session = aiohttp.ClientSession()
    try:
        stack = Stack(tmp_path / "stack", StackOptions(calc_budget_ms=300, refresh_s=1.0))
        till = EvotorTill(0, Poster(session, stack.gateway_url), recorder, rng=random.Random("serial-e2e"),
                          token=TOKEN, cloud_token="", shift="1", customers=(), config=NO_CUSTOMER)
        stack.options = StackOptions(calc_budget_ms=300, refresh_s=1.0, extra_toml=toml(
            TILL, till.register_id, scanner.link, late.link, display.link))  # type: ignore[arg-type]
        async with stack:
            await stack.admin.register(PHONE, "Анна Петрова")
            await stack.admin.register(LATE_PHONE, "Борис")
            await wait_known(stack, PHONE, LATE_PHONE)
            await wait_open(scanner, late, display)
            screen = Screen(display, DisplayModel("cd5220", "cp866"), [])
            screen.start()
            try:
                yield stack, till, scanner, late, screen
            finally:
                assert screen.task is not None
                screen.task.cancel()
            assert recorder.errors == 0, recorder.error_messages
    finally:
        await session.close()
        for pty in (scanner, late, display):
            pty.close()


async def test_scan_binds_the_next_receipt_and_the_display_follows(
        lane: tuple[Stack, EvotorTill, DevicePty, DevicePty, Screen]) -> None:
    stack, till, scanner, late, screen = lane
    await screen.shows(("Добро пожаловать!", "Покажите QR-код"))

    # 1. online: scan, then a till's calculate and sale without a customer
    before = (await stack.admin.customer(PHONE)).balance
    await scan(scanner, PHONE)
    greeting = await screen.shows(first="Здравствуйте, Анна!")
    assert greeting[1] == f"Баланс: {before:,} б.".replace(",", " "), greeting
    mark = screen.mark()
    async with aiohttp.ClientSession() as session:
        answer = await native_till(session, stack, "1")
        assert answer["customer"] and not answer["offline"], answer
        earned = answer["points_to_accrue"]
        assert earned > 0 and answer["customer"]["balance"] == before, answer
        after_calc = await screen.shows(first="Начислим", since=mark)
        assert after_calc == (f"Начислим +{earned} б.", greeting[1]), after_calc
        await screen.shows(("Спасибо за покупку!", ""), since=mark)
        await screen.shows(("Добро пожаловать!", "Покажите QR-код"), since=mark)
        assert stored_customer(stack, TILL, "1") == CustomerId(IdKind.PHONE, PHONE)
        await stack.wait_drained(30.0)
        assert (await stack.admin.customer(PHONE)).balance == before + earned
        # the binding was consumed: the next receipt is nobody's
        assert (await native_till(session, stack, "2"))["customer"] is None
        assert stored_customer(stack, TILL, "2") is None

    # 2. an Evotor terminal's receipt without a customer, committed for the one scanned there
    await scan(late, LATE_PHONE)
    await asyncio.sleep(1.0)  # the scan is looked up and bound well within this
    await till.sell()
    assert stored_customer(stack, till.register_id, str(till._number)) == CustomerId(IdKind.PHONE, LATE_PHONE)
    assert await calc_answers(stack, "evotor") == {"online": 1}  # calculated for them at the till
    await till.sell()
    assert stored_customer(stack, till.register_id, str(till._number)) is None
    assert await calc_answers(stack, "evotor") == {"online": 1, "no_customer": 1}  # nobody bound any more

    # 3. after the fact: closed receipts only, arriving later; the close time decides
    evotor = till.register_id
    await asyncio.sleep(1.6)  # the same code again within debounce_s would be one scan
    async with aiohttp.ClientSession() as session:
        await native_sale(session, stack, evotor, "100", datetime.now(UTC) - timedelta(seconds=30))
        await scan(late, LATE_PHONE)
        scanned_at = datetime.now(UTC)
        await asyncio.sleep(1.0)
        await native_sale(session, stack, evotor, "99", scanned_at - timedelta(seconds=60))  # before
        await native_sale(session, stack, evotor, "101", scanned_at + timedelta(seconds=20))
        await native_sale(session, stack, evotor, "102", scanned_at + timedelta(seconds=25))
    assert stored_customer(stack, evotor, "99") is None
    assert stored_customer(stack, evotor, "100") is None
    assert stored_customer(stack, evotor, "101") == CustomerId(IdKind.PHONE, LATE_PHONE)
    assert stored_customer(stack, evotor, "102") is None

    # 3. the core down: the scan binds, the answer is offline, the balance unavailable
    await stack.core_outage()
    try:
        await scan(scanner, PHONE)
        await screen.shows(("Карта принята", "Баланс недоступен"))
        mark = screen.mark()
        async with aiohttp.ClientSession() as session:
            answer = await native_till(session, stack, "3")
        assert answer["offline"] and answer["customer"], answer
        offline = await screen.shows(first="Начислим", since=mark)
        assert offline[1] == "Баланс недоступен", offline
        assert stored_customer(stack, TILL, "3") == CustomerId(IdKind.PHONE, PHONE)
    finally:
        await stack.core_back()

    # 4. unplug both devices and plug them back under the same names: no restart
    await screen.shows(("Добро пожаловать!", "Покажите QR-код"))
    scanner.replug()
    screen.model = DisplayModel("cd5220", "cp866")  # a new display: it shows only what it is sent
    screen.history.append(screen.model.text())  # blank
    screen.pty.replug()
    mark = screen.mark()
    await wait_open(scanner, screen.pty)
    await screen.shows(("Добро пожаловать!", "Покажите QR-код"), since=mark)
    await scan(scanner, PHONE)
    await screen.shows(first="Здравствуйте, Анна!")
    async with aiohttp.ClientSession() as session:
        await native_till(session, stack, "4")
    assert stored_customer(stack, TILL, "4") == CustomerId(IdKind.PHONE, PHONE)
    assert screen.model.unknown == []
    health = await stack.health()
    assert "port:scanner" not in str(health.get("alarms", "")), health


FLOOD = """
import os, select, sys, time
fd, chunk = int(sys.argv[1]), sys.stdin.buffer.read()
os.set_blocking(fd, False)
while True:
    try:
        os.write(fd, chunk)
    except BlockingIOError:
        select.select([], [fd], [], 0.05)
    time.sleep(float(sys.argv[2]))
"""


async def test_a_flooding_scanner_does_not_block_the_event_loop(
        lane: tuple[Stack, EvotorTill, DevicePty, DevicePty, Screen]) -> None:
    stack, _, scanner, _, screen = lane
    await screen.shows(("Добро пожаловать!", "Покажите QR-код"))
    rounds, chunk, pause_s = 40, 4096, 0.002  # about 2 MB/s of noise: 170 times a 115200-baud scanner

    async def calc_ms(session: aiohttp.ClientSession, tag: str) -> list[float]:
        out = []
        for i in range(rounds):
            receipt = dict(native_receipt(TILL, f"{tag}{i}", datetime.now(UTC)),
                           customer={"phone": PHONE})
            started = time.perf_counter()
            answer = await native(session, stack, "calculate", receipt)
            out.append((time.perf_counter() - started) * 1000)
            assert answer["customer"] is not None, answer
        return out

    async with aiohttp.ClientSession() as session:
        await calc_ms(session, "warm")
        quiet = await calc_ms(session, "q")
        # the flood comes from another process: in this one it would take the GIL from the till
        flooder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOOD, str(scanner.master), str(pause_s), stdin=subprocess.PIPE,
            pass_fds=(scanner.master,))
        try:
            assert flooder.stdin is not None
            flooder.stdin.write(garbage(chunk, seed=7))
            flooder.stdin.close()
            await asyncio.sleep(0.5)
            flooded = await calc_ms(session, "f")
        finally:
            flooder.terminate()
            await asyncio.wait_for(flooder.wait(), 5)
    metrics = await stack.metrics()
    frames = metrics.get("posgw_driver_events_total{driver=serial,what=device_frame}", 0.0)
    bad = metrics.get("posgw_driver_events_total{driver=serial,what=bad_input}", 0.0)

    def p(values: list[float], q: float) -> float:
        return percentile(values, q)

    print(f"\nnative calculate at the till, {rounds} each: quiet p50={p(quiet, 50):.1f} ms "
          f"p95={p(quiet, 95):.1f} ms max={max(quiet):.1f} ms; flooded p50={p(flooded, 50):.1f} ms "
          f"p95={p(flooded, 95):.1f} ms max={max(flooded):.1f} ms; "
          f"ratio p50 {p(flooded, 50) / p(quiet, 50):.2f}; "
          f"{frames:.0f} scanner frames read, {bad:.0f} counted bad_input")
    assert len(flooded) == rounds and frames > 0 and bad > 0
    await asyncio.sleep(1.6)
    await scan(scanner, "\r" + PHONE)  # the scanner still works after the flood
    await screen.shows(first="Здравствуйте, Анна!")
