"""The serial devices driver: scanners bind customers, displays show them what happened.

One :class:`gateway.device.PortWorker` per configured port (a scanner and a display may share
one). Invariants:

- a scan is classified (:func:`drivers.serial.wire.classify`); a customer identifier is looked
  up (``ctx.identify``, within the gateway's calc budget; the offline snapshot when the core is
  away), then bound to the scanner's register (``ctx.bind_customer``: durable before anything
  is shown) and the customer greeted on the display of the same register. An identifier nobody
  has (or that the offline snapshot does not know) is not bound: a sale for it would only be
  refused by the core. A scan not stored shows "repeat", never the acceptance;
- the same scan on the same port within ``debounce_s`` is one scan (shown again, bound once);
- ignored scans (product and marking codes) change nothing; unknown and malformed ones count
  ``bad_input``, are logged at most once per :data:`LOG_EVERY_S` per port, and show a message;
  beyond :data:`MAX_SCANS_PER_S` frames a second a port is flooding: the rest of that second's
  frames are skipped unclassified (counted ``device_frame`` only, logged once per 10 s);
- a display repaints both lines whole, at most :data:`REPAINTS_PER_S` times a second (the last
  screen wins; a calc screen stays :data:`CALC_DWELL_S` before the thank-you replaces it),
  sends its opening commands after every (re)open and repaints then; a display
  that is absent loses nothing but the screens in between;
- a port that cannot be opened ``absent_after`` times in a row raises the alarm
  ``port:<device>`` (cleared when it opens); every failed open counts ``device_absent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping
from typing import Any

import serial
from aiohttp import web
from pydantic import ValidationError
from serial.tools import list_ports

from drivers.serial import NAME, mapping, shtrih, wire
from drivers.serial.config import Config, Device
from gateway.device import PortAbsent, PortOptions, PortWorker
from gateway.driver import CustomerInfo, DriverContext, Finding, RegisterNews
from gateway.errors import BadInput, StorageError
from gateway.receipt import CustomerId

REPAINTS_PER_S = 5
CALC_DWELL_S = 2.0  # a calc screen stays at least this long before the thank-you replaces it
LOG_EVERY_S = 10.0
MAX_SCANS_PER_S = 20  # a person scans a few codes a second; beyond this a port is flooding
PARITY = {"none": serial.PARITY_NONE, "odd": serial.PARITY_ODD, "even": serial.PARITY_EVEN}


def port_options(devices: list[Device], reconnect_s: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)) -> PortOptions:
    """The worker options of one port (its devices agree on speed and parity, see Config)."""
    first = devices[0]
    scanner = next((d for d in devices if d.role == "scanner"), None)
    return PortOptions(
        first.url, baudrate=first.baudrate, parity=PARITY[first.parity],
        terminators=(scanner.terminators if scanner else "\r\n").encode("latin-1"),
        idle_flush_s=(scanner.idle_flush_ms / 1000 or None) if scanner else None,
        reconnect_s=reconnect_s, listen=first.role != "fiscal",
    )


class Fiscal:
    """A Shtrih-M register's status, read every ``status_s`` (read-only commands only): the alarm
    ``fiscal:<device>`` is raised while there is no link or the status needs the operator (an
    error, a shift open over 24 hours, blocked), cleared when it is fine."""

    def __init__(self, device: Device, worker: PortWorker, ctx: DriverContext) -> None:
        self.device = device
        self.worker = worker
        self.ctx = ctx
        self.last: shtrih.ShortStatus | None = None
        self.key = f"fiscal:{device.name}"

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            if self.worker.present:
                await self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.device.status_s)

    async def check(self) -> None:
        password = self.device.password
        try:
            status = await self.worker.exchange(lambda port: shtrih.short_status(port, password))
        except PortAbsent:
            return  # the port's own alarm says so
        except (shtrih.LinkError, ValueError) as exc:
            self.ctx.alarm(self.key, f"fiscal register {self.device.name}: {exc}: check its cable, "
                                     "power and baudrate")
            return
        self.last = status
        problem = status.problem
        self.ctx.alarm(self.key, f"fiscal register {self.device.name}: {problem}" if problem else None)


class Display:
    """The screens of one display: ``show`` sets what it should say, :meth:`run` paints it."""

    def __init__(self, device: Device, worker: PortWorker, config: Config) -> None:
        self.device = device
        self.worker = worker
        self.config = config
        self.idle = mapping.texts(config.idle_text)
        self.base: mapping.Screen = self.idle  # what it says until something happens
        self.flash: mapping.Screen | None = None  # a message shown until flash_until
        self.flash_until = 0.0
        self.base_until: float | None = None  # when the base screen returns to idle
        self.after: tuple[mapping.Screen, float] | None = None  # the next base screen, once sticky ends
        self.sticky_until = 0.0  # the base screen (a calc) is not replaced by ``after`` before this
        self.calc_unpainted = False
        self.shown: mapping.Screen | None = None
        self.opened_seen = 0
        self.force = False
        self.changed = asyncio.Event()
        self.painted = 0  # repaints written (for tests and the status page)

    def show(self, screen: mapping.Screen, *, for_s: float | None = None) -> None:
        """Say ``screen`` (until ``for_s`` seconds have passed, then the idle text)."""
        self.base = screen
        self.base_until = None if for_s is None else time.monotonic() + for_s
        self.flash = None
        self.after, self.sticky_until, self.calc_unpainted = None, 0.0, False
        self.force = True
        self.changed.set()

    def message(self, screen: mapping.Screen, for_s: float) -> None:
        """Say ``screen`` for ``for_s`` seconds, then what it said before."""
        self.flash = screen
        self.flash_until = time.monotonic() + for_s
        self.force = True
        self.changed.set()

    def news(self, news: RegisterNews) -> None:
        """The pipeline's news of this display's register (called on the loop)."""
        if news.kind == "calc" and news.result is not None:
            screen = mapping.calculated(news.result)
            if screen is not None:
                self.show(screen, for_s=self.config.bind_s)
                self.sticky_until, self.calc_unpainted = float("inf"), True  # until painted + dwell
        elif news.kind == "closed":  # the thank-you, once the customer has seen the calc
            self.after = (mapping.texts(self.config.thanks_text), self.config.thanks_s)
            self.changed.set()

    def wanted(self, now: float) -> mapping.Screen:
        if self.flash is not None and now < self.flash_until:
            return self.flash
        self.flash = None
        if self.after is not None and now >= self.sticky_until:
            (self.base, for_s), self.after = self.after, None
            self.base_until = now + for_s
        if self.base_until is not None and now >= self.base_until:
            self.base, self.base_until = self.idle, None
        return self.base

    async def run(self, stopping: asyncio.Event) -> None:
        last = 0.0
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.25)
            self.changed.clear()
            if not self.worker.present:
                self.shown = None
                self.sticky_until, self.calc_unpainted = 0.0, False  # nobody can see it anyway
                continue
            reopened = self.worker.opened != self.opened_seen
            now = time.monotonic()
            screen = self.wanted(now)
            if screen == self.shown and not reopened and not self.force:
                continue
            wait = last + 1 / REPAINTS_PER_S - now
            if wait > 0:  # coalesce: the newest screen wins
                await asyncio.sleep(wait)
                screen = self.wanted(time.monotonic())
            self.force = False
            data = wire.screen_bytes(self.device.command_set, self.device.encoding, screen)
            opened = self.worker.opened
            if reopened:
                data = wire.opening(self.device.command_set, self.device.code_table) + data
            try:
                await self.worker.write(data)
            except (PortAbsent, TimeoutError):
                self.shown = None
                continue
            last = time.monotonic()
            self.opened_seen, self.shown = opened, screen
            self.painted += 1
            if self.calc_unpainted and screen == self.base:
                self.sticky_until, self.calc_unpainted = last + CALC_DWELL_S, False


class Scanner:
    """The scans of one scanner port: classify, bind, look up, tell the display."""

    def __init__(self, device: Device, worker: PortWorker, config: Config, ctx: DriverContext,
                 display: Display | None) -> None:
        self.device = device
        self.worker = worker
        self.config = config
        self.ctx = ctx
        self.display = display
        self.rules = wire.compile_patterns([(p.kind, p.regex, p.check) for p in config.patterns])
        self.last: tuple[bytes, float] = (b"", float("-inf"))
        self.bad = 0  # unknown/malformed scans not yet logged
        self.bad_logged = float("-inf")
        self.window = (float("-inf"), 0)  # (start, frames) of the current second
        self.flooded = 0  # frames skipped unread beyond MAX_SCANS_PER_S (not yet logged)
        self.flood_logged = float("-inf")

    async def run(self, stopping: asyncio.Event) -> None:
        async for frame in self.worker.frames(stopping):
            if self._flooding():
                continue
            await self.scan(frame)

    def _flooding(self) -> bool:
        """True for a frame beyond MAX_SCANS_PER_S in this second: skipped unclassified (a
        flood costs the event loop a counter, not a classification and a repaint per frame)."""
        now = time.monotonic()
        start, seen = self.window
        if now - start >= 1.0:
            start, seen = now, 0
        self.window = (start, seen + 1)
        if seen < MAX_SCANS_PER_S:
            return False
        self.flooded += 1
        if now - self.flood_logged >= LOG_EVERY_S:
            self.ctx.log.warning("scanner flooding, frames skipped", extra={
                "driver": self.ctx.name, "device": self.device.name, "skipped": self.flooded,
                "max_per_s": MAX_SCANS_PER_S, "action": "check the scanner's mode and cable"})
            self.flooded, self.flood_logged = 0, now
        return True

    async def scan(self, frame: bytes) -> None:
        now = time.monotonic()
        previous, at = self.last
        if frame == previous and now - at < self.config.debounce_s:
            self.last = (frame, now)
            if self.display is not None:
                self.display.force = True  # the customer sees the scan was taken
                self.display.changed.set()
            return
        found = wire.classify(frame, self.rules, strip_aim=self.device.strip_aim)
        if found.outcome == "ignored":
            self.ctx.count("ignored")
            return
        if found.customer is None:
            self._bad(found)
            return
        info = await self._identify(found.customer)
        if info is None:  # nobody has this identifier (or the offline snapshot does not know it)
            self._say(mapping.NOT_FOUND)
            return
        try:
            await self.ctx.bind_customer(self.device.register_id, found.customer, keep_s=self.config.bind_s)
        except StorageError as exc:
            self.ctx.count("storage_error")
            self.ctx.log.error("scan not bound", extra={"driver": self.ctx.name, "device": self.device.name,
                                                        "error": str(exc), "action": "scan again"})
            self._say(mapping.NOT_STORED)
            return
        self.last = (frame, now)
        self.ctx.count("committed")
        if self.display is not None:
            self.display.show(mapping.scanned(info, offline=info.offline), for_s=self.config.bind_s)

    async def _identify(self, customer: CustomerId) -> CustomerInfo | None:
        """The customer as the core (or the offline snapshot) knows them, within the calc budget."""
        try:
            info = await self.ctx.identify(customer)
        except BadInput as exc:
            self.ctx.log.warning("scanned customer refused", extra={"device": self.device.name,
                                                                    "error": str(exc)})
            return None
        self.ctx.count("identify")
        return info

    def _bad(self, found: wire.Scan) -> None:
        self.ctx.count("bad_input")
        self.bad += 1
        now = time.monotonic()
        if now - self.bad_logged >= LOG_EVERY_S:
            self.ctx.log.warning("scan not recognised", extra={
                "driver": self.ctx.name, "device": self.device.name, "reason": found.reason,
                "scans": self.bad, "sample": found.text[:24]})
            self.bad, self.bad_logged = 0, now
        self._say(mapping.MALFORMED if found.outcome == "malformed" else mapping.NOT_RECOGNISED)

    def _say(self, screen: mapping.Screen) -> None:
        if self.display is not None:
            self.display.message(screen, self.config.message_s)


class SerialDriver:
    name = NAME
    edge = None

    def __init__(self, config: Config, *, reconnect_s: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)) -> None:
        self.config = config
        self.reconnect_s = reconnect_s
        self.displays: dict[str, Display] = {}  # device name -> its display (for tests)
        self.fiscals: dict[str, Fiscal] = {}

    def routes(self, ctx: DriverContext) -> list[web.RouteDef]:
        return []

    def ports(self) -> dict[str, list[Device]]:
        """The devices by the port they are on (the config's order)."""
        ports: dict[str, list[Device]] = {}
        for device in self.config.devices:
            ports.setdefault(device.url, []).append(device)
        return ports

    async def run(self, ctx: DriverContext) -> None:
        workers: list[PortWorker] = []
        jobs = []
        unwatch = []
        scanners: list[tuple[Device, PortWorker]] = []
        displays: dict[str, Display] = {}
        for url, devices in self.ports().items():
            names = "+".join(d.name for d in devices)
            worker = PortWorker(port_options(devices, self.reconnect_s), name=f"{ctx.name}:{names}",
                                count=ctx.count, logger=ctx.log, on_state=self._alarm(ctx, devices, url))
            workers.append(worker)
            for device in devices:
                if device.role == "fiscal":
                    fiscal = self.fiscals[device.name] = Fiscal(device, worker, ctx)
                    jobs.append(fiscal.run(ctx.stopping))
                elif device.role == "display":
                    display = self.displays[device.name] = Display(device, worker, self.config)
                    displays.setdefault(device.register_id, display)
                    unwatch.append(ctx.watch_register(device.register_id, display.news))
                    jobs.append(display.run(ctx.stopping))
                else:
                    scanners.append((device, worker))
        for device, worker in scanners:
            scanner = Scanner(device, worker, self.config, ctx, displays.get(device.register_id))
            jobs.append(scanner.run(ctx.stopping))
        try:
            for worker in workers:
                await worker.start()
            await asyncio.gather(*jobs, ctx.stopping.wait())
        finally:
            for stop in unwatch:
                stop()
            await asyncio.gather(*(worker.stop() for worker in workers))

    @staticmethod
    def _alarm(ctx: DriverContext, devices: list[Device], url: str) -> Any:
        roles = " and ".join(f"{d.role} {d.name}" for d in devices)

        def on_state(state: str) -> None:
            for device in devices:
                key = f"port:{device.name}"
                if state == "absent":
                    ctx.alarm(key, f"{roles} on {url} cannot be opened: plug it in, or fix "
                                   f"[drivers.serial] port/usb of {device.name} (posgw devices lists ports)")
                elif state == "open":
                    ctx.alarm(key, None)

        return on_state


def create(options: Mapping[str, Any]) -> SerialDriver:
    return SerialDriver(Config.model_validate(dict(options)))


def check(options: Mapping[str, Any]) -> list[Finding]:
    """check-config / doctor: every configured port that does not exist now (a device path that
    is missing, or no USB device with that id plugged in)."""
    try:
        config = Config.model_validate(dict(options))
    except ValidationError as exc:
        return [Finding("FAIL", "devices", f"invalid: {exc.errors()[0]['msg']}",
                        "see drivers/serial/sample.toml")]
    findings = []
    plugged = None
    for i, device in enumerate(config.devices):
        if device.port and "://" not in device.port:
            if not os.path.exists(device.port):
                findings.append(Finding(  # WARN: the driver waits for it and opens it when it appears
                    "WARN", f"devices[{i}].port", f"{device.name}: {device.port} does not exist",
                    "plug the device in, or run posgw devices and use the path it lists"))
        elif device.usb:
            if plugged is None:
                plugged = [(p.vid, p.pid, p.serial_number or "") for p in list_ports.comports()]
            vid, pid = (int(x, 16) for x in device.usb.split(":"))
            if not any(v == vid and p == pid and (not device.usb_serial or s == device.usb_serial)
                       for v, p, s in plugged):
                findings.append(Finding(
                    "WARN", f"devices[{i}].usb", f"{device.name}: no USB serial device {device.usb} is "
                    "plugged in now", "plug it in; posgw devices lists ports"))
    return findings
