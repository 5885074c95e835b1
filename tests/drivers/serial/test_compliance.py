"""The device compliance suite against the serial driver: a scanner and a CD5220 display on one pty
(the display's repaint is the device's reply; a scan is stored as a durable binding)."""

from __future__ import annotations

from typing import ClassVar

from drivers.serial.config import Config, Device
from drivers.serial.driver import SerialDriver
from gateway.driver import Driver
from simulators.devices.display import DisplayModel
from tests.drivers.compliance_device import DeviceAdapter, DeviceComplianceSuite, DeviceContext
from tests.gateway.pty_pair import PtyPair

IDLE = ["Добро пожаловать!", "Покажите QR-код"]


def decoded(reply: bytes) -> tuple[str, str]:
    model = DisplayModel("cd5220", "cp866")
    model.feed(reply)
    assert model.unknown == [], model.unknown
    return model.text()


class SerialAdapter(DeviceAdapter):
    name = "serial"
    reply_end: ClassVar[bytes] = b"\r"  # a CD5220 repaint ends with the lower line's CR
    durable: ClassVar[str] = "put_state"  # a binding is driver state in the outbox file

    def driver(self, url: str) -> Driver:
        devices = [Device(name="scan", role="scanner", register_id="r1", port=url),
                   Device(name="show", role="display", register_id="r1", port=url, command_set="cd5220")]
        return SerialDriver(Config(devices=devices, idle_text=IDLE), reconnect_s=(0.02, 0.05))

    def frames(self, n: int) -> list[bytes]:
        return [f"+7903555{i:04d}\r\n".encode() for i in range(1, n + 1)]

    def malformed(self) -> bytes:
        return b"LQ1:not a code!\r"

    def key(self, frame: bytes) -> str:
        return f"r1:phone:{frame.strip().decode()}"

    def stored(self, ctx: DeviceContext) -> list[str]:
        return ctx.bound

    async def settle(self, pty: PtyPair) -> None:
        got = b""
        for _ in range(60):  # the first paint after open: the idle text
            got += await pty.read(1, timeout=0.05)
            if got.count(b"\r") >= 2:
                break
        assert decoded(got) == tuple(IDLE), got

    def check_reply(self, reply: bytes, *, stored: bool) -> None:
        screen = decoded(reply)
        if stored:
            assert screen == ("Карта принята", "Баланс недоступен"), screen
        else:
            refusals = (("Код не распознан", "Покажите QR-код"), ("Ошибка, повторите", "сканирование"))
            assert screen in refusals, screen


class TestSerialDeviceCompliance(DeviceComplianceSuite):
    adapter = SerialAdapter()
