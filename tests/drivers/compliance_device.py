"""The compliance suite of the device shape: every serial device driver on a real pty pair.

A device driver's ``test_compliance.py`` subclasses :class:`DeviceComplianceSuite` with a
:class:`DeviceAdapter` (build the driver on a port path with short reconnect delays; valid and
malformed frames; what the device gets back). The port is a pty pair reached through a stable
symlink in ``tmp_path`` (as ``/dev/serial/by-id`` names are); commits and state go to a real
outbox file (:class:`~tests.drivers.outbox_context.OutboxContext`). Checks:

- nothing acknowledged to the device (no success reply) while the durable write is held;
- a StorageError is never answered as success and stores nothing; the driver keeps reading;
- frames are stored once each, in order; a repeated frame is stored once;
- a malformed frame stores nothing, counts ``bad_input``, and the next frame is read;
- a port absent at start counts ``device_absent`` and the driver works once it appears;
- clean stop within 1 s, no port thread and no task left behind.

"Stored" is what the adapter says (:meth:`DeviceAdapter.stored`: the outbox rows by default; a
scanner that binds customers lists its durable bindings), and "the durable write" the outbox
method named by :attr:`DeviceAdapter.durable` (``append``; ``put_state`` for bindings). The
context is a :class:`DeviceContext`: an OutboxContext whose ``bind_customer`` is the gateway's
own :class:`gateway.bindings.Bindings` on the same file (``fail_from`` counts binds as submits).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

import pytest

from gateway.bindings import Bindings, Watchers
from gateway.driver import CustomerInfo, Driver, RegisterNews
from gateway.errors import StorageError
from gateway.outbox import Outbox
from gateway.receipt import CustomerId
from tests.drivers.outbox_context import OutboxContext, until
from tests.gateway.pty_pair import PtyPair, link

HELD_S = 0.3
STOP_WITHIN_S = 1.0


class DeviceContext(OutboxContext):
    """OutboxContext plus the device side of the pipeline: bindings (durable, on the same outbox
    file) and register news (:meth:`tell` plays the pipeline's)."""

    def __init__(self, name: str, outbox: Outbox) -> None:
        super().__init__(name, outbox)
        self.bindings = Bindings(outbox)
        self.watchers = Watchers()
        self.bound: list[str] = []  # "<register>:<kind>:<value>" of every durable bind, in order
        self.alarms: dict[str, str] = {}

    async def bind_customer(self, register_id: str, customer: CustomerId, *, keep_s: float) -> None:
        self.submitted += 1
        if self.fail_from is not None and self.submitted >= self.fail_from:
            raise StorageError("disk full (compliance test)")
        await self.bindings.bind(register_id, customer, keep_s=keep_s, source=self.name)
        self.bound.append(f"{register_id}:{customer.kind.value}:{customer.value}")

    def watch_register(self, register_id: str,
                       listener: Callable[[RegisterNews], None]) -> Callable[[], None]:
        return self.watchers.watch(register_id, listener)

    def tell(self, news: RegisterNews) -> None:
        self.watchers.tell(news)

    async def identify(self, customer: CustomerId) -> CustomerInfo | None:
        """No core here: every customer is answered as the offline policy would (balance unknown)."""
        return CustomerInfo(customer.value, "", "", None, offline=True)

    def alarm(self, key: str, message: str | None) -> None:
        if message is None:
            self.alarms.pop(key, None)
        else:
            self.alarms[key] = message


class DeviceAdapter:
    """How the suite drives one device driver. Subclass and fill in every method."""

    name: ClassVar[str] = ""
    reply_end: ClassVar[bytes] = b"\n"  # how a reply to the device ends
    durable: ClassVar[str] = "append"  # the outbox method that makes a frame durable

    def stored(self, ctx: DeviceContext) -> list[str]:
        """What is durably stored, in order (keys as :meth:`key` gives them)."""
        return ctx.rows()

    async def settle(self, pty: PtyPair) -> None:
        """Called once the driver opened the port: consume what the driver sends by itself on
        open (a display's first paint), so the next read is the reply to a frame."""

    def driver(self, url: str) -> Driver:
        """The driver on the port ``url``, reconnecting after a few ms."""
        raise NotImplementedError

    def frames(self, n: int) -> list[bytes]:
        """``n`` valid, distinct frames as the device sends them (terminator included)."""
        raise NotImplementedError

    def malformed(self) -> bytes:
        raise NotImplementedError

    def key(self, frame: bytes) -> str:
        """The outbox key a valid frame is stored under."""
        raise NotImplementedError

    def check_reply(self, reply: bytes, *, stored: bool) -> None:
        """Assert ``reply`` is what the device gets when the frame was (not) stored."""
        raise NotImplementedError


def port_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("port-")]


class Rig:
    def __init__(self, adapter: DeviceAdapter, ctx: OutboxContext, path: Path) -> None:
        self.adapter, self.ctx, self.path = adapter, ctx, path
        self.pty: PtyPair | None = None

    def plug(self) -> PtyPair:
        self.pty = PtyPair()
        link(self.path, self.pty)
        return self.pty

    async def reply(self) -> bytes:
        assert self.pty is not None
        got = b""
        end = time.monotonic() + 3
        while not got.endswith(self.adapter.reply_end) and time.monotonic() < end:
            got += await self.pty.read(1, timeout=0.05)
        return got

    async def send(self, frame: bytes, *, stored: bool) -> None:
        assert self.pty is not None
        self.pty.send(frame)
        self.adapter.check_reply(await self.reply(), stored=stored)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Task[None]]:
        ctx = self.ctx
        driver = self.adapter.driver(str(self.path))
        task = asyncio.create_task(driver.run(ctx), name=f"{self.adapter.name}-run")
        try:
            if self.pty is not None:  # pyserial flushes input on open: send only once it is open
                await until(self.pty.opened_elsewhere)
                await self.adapter.settle(self.pty)
            yield task
        finally:
            ctx.stopping.set()
            started = time.monotonic()
            await asyncio.wait_for(task, STOP_WITHIN_S * 2)
            assert time.monotonic() - started < STOP_WITHIN_S, "the driver did not stop promptly"
            assert port_threads() == [], port_threads()


@pytest.mark.skipif(sys.platform != "linux", reason="pty pairs and /proc/self/fd")
class DeviceComplianceSuite:
    """Inherit in ``TestXxxDeviceCompliance`` and set ``adapter``."""

    adapter: ClassVar[DeviceAdapter]

    @pytest.fixture
    async def rig(self, tmp_path: Path) -> AsyncIterator[Rig]:
        ctx = DeviceContext(self.adapter.name, await Outbox.open(tmp_path / "outbox.db"))
        rig = Rig(self.adapter, ctx, tmp_path / "by-id-device")
        try:
            yield rig
        finally:
            if rig.pty is not None:
                rig.pty.close()
            await ctx.outbox.close()

    def keys(self, frames: list[bytes]) -> list[str]:
        return [self.adapter.key(f) for f in frames]

    async def test_frames_are_stored_once_each_in_order(self, rig: Rig) -> None:
        frames = self.adapter.frames(3)
        rig.plug()
        async with rig.running():
            for frame in frames:
                await rig.send(frame, stored=True)
        assert self.adapter.stored(rig.ctx) == self.keys(frames)

    async def test_no_ack_before_the_durable_write(self, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
        (frame,) = self.adapter.frames(1)
        original = getattr(rig.ctx.outbox, self.adapter.durable)
        entered, release = asyncio.Event(), asyncio.Event()

        async def held(*args: object, **kwargs: object) -> object:
            entered.set()
            await release.wait()
            return await original(*args, **kwargs)

        monkeypatch.setattr(rig.ctx.outbox, self.adapter.durable, held)
        pty = rig.plug()
        async with rig.running():
            pty.send(frame)
            await asyncio.wait_for(entered.wait(), 5)
            assert await pty.read(1, timeout=HELD_S) == b"", "the device was answered before the write"
            assert self.adapter.stored(rig.ctx) == []
            release.set()
            self.adapter.check_reply(await rig.reply(), stored=True)
        assert self.adapter.stored(rig.ctx) == self.keys([frame])

    async def test_storage_failure_is_never_acknowledged(self, rig: Rig) -> None:
        first, second = self.adapter.frames(2)
        rig.plug()
        rig.ctx.fail_from = 1
        async with rig.running():
            await rig.send(first, stored=False)
            assert self.adapter.stored(rig.ctx) == [] and rig.ctx.counts["storage_error"] == 1
            rig.ctx.fail_from = None
            await rig.send(second, stored=True)
        assert self.adapter.stored(rig.ctx) == self.keys([second])

    async def test_a_repeated_frame_is_stored_once(self, rig: Rig) -> None:
        (frame,) = self.adapter.frames(1)
        rig.plug()
        async with rig.running():
            await rig.send(frame, stored=True)
            await rig.send(frame, stored=True)
        assert self.adapter.stored(rig.ctx) == self.keys([frame])

    async def test_a_malformed_frame_stores_nothing_and_reading_goes_on(self, rig: Rig) -> None:
        (frame,) = self.adapter.frames(1)
        rig.plug()
        async with rig.running():
            await rig.send(self.adapter.malformed(), stored=False)
            await rig.send(frame, stored=True)
        assert self.adapter.stored(rig.ctx) == self.keys([frame])
        assert rig.ctx.counts["bad_input"] == 1

    async def test_an_absent_port_is_counted_and_used_once_it_appears(self, rig: Rig) -> None:
        (frame,) = self.adapter.frames(1)
        async with rig.running():
            await until(lambda: rig.ctx.counts["device_absent"] >= 1)
            assert self.adapter.stored(rig.ctx) == []
            pty = rig.plug()
            await until(pty.opened_elsewhere)
            await self.adapter.settle(pty)
            await rig.send(frame, stored=True)
        assert self.adapter.stored(rig.ctx) == self.keys([frame])

    async def test_clean_stop_while_waiting_for_frames(self, rig: Rig) -> None:
        rig.plug()
        before = asyncio.all_tasks()
        async with rig.running() as task:
            await asyncio.sleep(0.05)
        assert task.done() and task.exception() is None
        left = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()]
        assert left == [], left
