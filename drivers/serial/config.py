"""Typed options of the serial devices driver (``[drivers.serial]``); each documented once.

Every ``[[drivers.serial.devices]]`` entry is one device on one port; two entries naming the same
port (a display with a built-in scanner) share one port worker. Validated by
:func:`gateway.config.load_config` through the registry and again by
:func:`drivers.serial.driver.create` (the same model).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config import Model

ROLES = ("scanner", "display", "fiscal")
COMMAND_SETS = ("epson", "cd5220", "ansi")
ENCODINGS = ("cp866", "cp1251", "cp437")
KINDS = ("app_code", "qr_payload", "card", "phone", "customer_id", "ignore")
_USB = re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}$")


class Pattern(Model):
    """One scanner payload pattern; the first that matches a scan decides its kind."""

    kind: Literal["app_code", "qr_payload", "card", "phone", "customer_id", "ignore"] = Field(
        description="what a matching scan is: a customer identifier of that kind, or ignore (product codes)")
    regex: str = Field(min_length=1, max_length=500, description=(
        "Python regular expression searched in the scan (anchor it with ^...$); a group named id, "
        "when present, is the identifier (else the whole scan)"))
    check: Literal["", "ean13"] = Field(default="", description=(
        "ean13: the identifier must carry a valid EAN-13 check digit (else the scan is malformed)"))

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


DEFAULT_PATTERNS = (
    Pattern(kind="app_code", regex=r"^LQ1:[0-9A-Z]{10,40}$"),
    Pattern(kind="card", regex=r"^2770\d{9}$", check="ean13"),
    Pattern(kind="phone", regex=r"^(?:\+7|7|8)(?P<id>\d{10})$"),
    Pattern(kind="ignore", regex=r"\x1d"),  # marking codes (DataMatrix with GS)
    Pattern(kind="ignore", regex=r"^01\d{14}21"),  # marking codes whose GS was lost
    Pattern(kind="ignore", regex=r"^(?:\d{8}|\d{12,14})$"),  # product EAN-8 / UPC / EAN-13 / GTIN-14
)


class Device(Model):
    """One serial device."""

    name: str = Field(pattern=r"^[a-z0-9_-]{1,32}$", description="a short name (alarms: port:<name>)")
    role: Literal["scanner", "display", "fiscal"] = Field(description=(
        "scanner (reads scans), display (shows text) or fiscal (a Shtrih-M register whose status is "
        "read, only when the gateway owns its port)"))
    register_id: str = Field(min_length=1, max_length=256, description=(
        "the register (as the till driver reports it) whose next receipt a scan binds / whose news it shows"))
    port: str = Field(default="", max_length=500, description=(
        "a stable device path (/dev/serial/by-id/..., COM3) or a pyserial URL; empty: use usb"))
    usb: str = Field(default="", description="VID:PID in hex (e.g. 1eab:0d10): the port is found by USB id")
    usb_serial: str = Field(default="", max_length=64, description="with usb: the device's serial number too")
    baudrate: int = Field(default=9600, ge=50, le=4_000_000,
                          description="bits per second (USB CDC ignores it)")
    parity: Literal["none", "odd", "even"] = Field(default="none", description="odd for BA63-style displays")
    # scanner
    terminators: str = Field(default="\r\n", min_length=0, max_length=4,
                             description="bytes that end a scan (any of them); empty: use idle_flush_ms")
    idle_flush_ms: int = Field(default=150, ge=0, le=5000,
                               description="a scan without terminator ends after this much silence; 0: never")
    strip_aim: bool = Field(default=True, description="drop an AIM symbology prefix (]Q1, ]d2, ]E0) first")
    # display
    command_set: Literal["epson", "cd5220", "ansi"] = Field(
        default="epson", description="the display's command set: epson (ESC/POS-like), cd5220 or ansi")
    encoding: Literal["cp866", "cp1251", "cp437"] = Field(
        default="cp866", description="the display's character table; characters it lacks are replaced")
    code_table: int | None = Field(default=None, ge=0, le=255, description=(
        "send 'select character table n' on open (ESC t n; ESC R n for ansi); none: the display's default"))
    # fiscal
    password: int = Field(default=30, ge=0, le=99_999_999,
                          description="fiscal: the operator password of the status command (30: admin)")
    status_s: float = Field(default=60.0, ge=1, le=3600, description="fiscal: read the status this often")

    @model_validator(mode="after")
    def _located(self) -> Device:
        if bool(self.port) == bool(self.usb):
            raise ValueError("give exactly one of port (a device path) and usb (VID:PID)")
        if self.usb and not _USB.match(self.usb):
            raise ValueError(f"usb must be VID:PID in hex, like 1eab:0d10, not {self.usb!r}")
        if self.usb_serial and not self.usb:
            raise ValueError("usb_serial needs usb")
        return self

    @property
    def url(self) -> str:
        """What pyserial opens: the port, or a hwgrep:// search by USB id (resolved at each open)."""
        if self.port:
            return self.port
        vid, pid = self.usb.upper().split(":")
        serial = f" SER={re.escape(self.usb_serial)}" if self.usb_serial else ""
        return f"hwgrep://VID:PID={vid}:{pid}{serial}"


class Config(Model):
    devices: list[Device] = Field(default=[], max_length=64, description="the devices, one table each")
    patterns: list[Pattern] = Field(default=list(DEFAULT_PATTERNS), max_length=64, description=(
        "how scans are classified, first match wins; a scan matching none is shown as not recognised"))
    bind_s: float = Field(default=180.0, ge=5, le=3600, description=(
        "a scanned customer is bound to the register's next receipt for this long"))
    debounce_s: float = Field(default=1.5, ge=0, le=60,
                              description="the same scan on the same port within this time counts once")
    thanks_s: float = Field(default=5.0, ge=0, le=600,
                            description="the display shows the thank-you this long after a receipt closes")
    message_s: float = Field(default=4.0, ge=0.5, le=600,
                             description="a scan problem (not recognised, not stored) is shown this long")
    idle_text: list[str] = Field(default=["Добро пожаловать!", "Покажите QR-код"], min_length=2, max_length=2,
                                 description="the two lines the display shows between customers")
    thanks_text: list[str] = Field(default=["Спасибо за покупку!", ""], min_length=2, max_length=2,
                                   description="the two lines shown after a receipt closed")

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        names = [d.name for d in self.devices]
        if len(set(names)) != len(names):
            raise ValueError("device names must be unique")
        seen: dict[str, Device] = {}
        for d in self.devices:
            other = seen.setdefault(d.url, d)
            clash = (other.role == d.role or "fiscal" in (other.role, d.role)
                     or (other.baudrate, other.parity) != (d.baudrate, d.parity))
            if other is not d and clash:
                raise ValueError(f"devices {other.name} and {d.name} share {d.url}: only a scanner and a "
                                 "display may share a port, with the same baudrate and parity")
        return self
