"""The device compliance suite against the example receipt-QR scanner driver on a pty."""

from __future__ import annotations

from typing import ClassVar

from gateway.device import PortOptions
from gateway.driver import Driver
from tests.drivers.compliance_device import DeviceAdapter, DeviceComplianceSuite
from tests.drivers.examples.qr_scanner import NAME, QrScannerDriver, qr_event


class QrScannerAdapter(DeviceAdapter):
    name = NAME
    reply_end: ClassVar[bytes] = b"\r\n"

    def driver(self, url: str) -> Driver:
        return QrScannerDriver(PortOptions(url, reconnect_s=(0.02, 0.05)))

    def frames(self, n: int) -> list[bytes]:
        return [f"t=20250314T1502&s=749.{i:02d}&fn=7380440700112233&i={5120 + i}&fp=2871540093&n=1\r".encode()
                for i in range(1, n + 1)]

    def malformed(self) -> bytes:
        return b"4607001234567\r\n"  # a product EAN, not a receipt QR

    def key(self, frame: bytes) -> str:
        return qr_event(frame.strip()).key

    def check_reply(self, reply: bytes, *, stored: bool) -> None:
        assert reply in ((b"OK\r\n",) if stored else (b"BAD\r\n", b"RETRY\r\n")), reply


class TestQrScannerDeviceCompliance(DeviceComplianceSuite):
    adapter = QrScannerAdapter()
