"""``posgw devices``: the serial ports of this machine, with their USB ids and a likely role, to
help an installer fill ``[[drivers.serial.devices]]``.

One line per port: the device path, its stable ``/dev/serial/by-id`` link when there is one, the
USB ``VID:PID`` and serial number, manufacturer and product, and a guess of what it is (from
words in its description and a few well-known USB vendor ids; "unknown" when nothing says). A
guess is only a hint: scanners in virtual-COM mode and displays behind a USB-serial adapter look
alike. ``--json`` prints the same as a list of objects. Exit 0 (also with no port: that is said).
Invariant: only reads (``serial.tools.list_ports``); never opens a port.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BY_ID = Path("/dev/serial/by-id")

# (words in manufacturer/product/description, role); first match wins
WORDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("scanner", "barcode", "honeywell", "metrologic", "zebra", "symbol", "datalogic", "newland", "mertech",
      "atol sb", "imager"), "scanner"),
    (("display", "vfd", "pole", "cd5220", "bcd-", "dm-d", "customer"), "customer display"),
    (("shtrih", "штрих", "fiscal", "fptr", "ккт", "atol"),
     "fiscal register (owned by the till: do not configure)"),
)
# USB vendor id -> role (scanner makers, and chips of USB-serial adapters that may carry anything)
VENDORS: dict[int, str] = {
    0x0C2E: "scanner",  # Honeywell / Metrologic
    0x05E0: "scanner",  # Symbol / Zebra
    0x05F9: "scanner",  # Datalogic
    0x1EAB: "scanner",  # Newland
    0x0403: "USB-serial adapter (FTDI): a display or an RS-232 scanner",
    0x067B: "USB-serial adapter (Prolific): a display or an RS-232 scanner",
    0x1A86: "USB-serial adapter (CH340): a display or an RS-232 scanner",
    0x10C4: "USB-serial adapter (CP210x): a display or an RS-232 scanner",
}


@dataclass(frozen=True, slots=True)
class Port:
    device: str
    by_id: str
    usb: str
    serial_number: str
    manufacturer: str
    product: str
    description: str
    role: str


def likely_role(vid: int | None, text: str) -> str:
    low = text.lower()
    for words, role in WORDS:
        if any(word in low for word in words):
            return role
    if vid is not None and vid in VENDORS:
        return VENDORS[vid]
    return "unknown"


def by_id_links(folder: Path = BY_ID) -> dict[str, str]:
    """Resolved device path -> its stable by-id link."""
    links: dict[str, str] = {}
    if folder.is_dir():
        for link in sorted(folder.iterdir()):
            links[os.path.realpath(link)] = str(link)
    return links


def describe(info: Any, links: dict[str, str]) -> Port:
    vid, pid = info.vid, info.pid
    usb = f"{vid:04x}:{pid:04x}" if vid is not None and pid is not None else ""
    text = " ".join(str(x or "") for x in (info.manufacturer, info.product, info.description))
    return Port(device=info.device, by_id=links.get(os.path.realpath(info.device), ""), usb=usb,
                serial_number=info.serial_number or "", manufacturer=info.manufacturer or "",
                product=info.product or "", description=info.description or "", role=likely_role(vid, text))


def ports() -> list[Port]:
    from serial.tools import list_ports

    links = by_id_links()
    return [describe(info, links) for info in sorted(list_ports.comports(), key=lambda i: i.device)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of lines")


def render(found: list[Port]) -> str:
    if not found:
        return ("no serial ports found (plug the scanner or display in; a scanner must be in its "
                "virtual-COM mode, not keyboard mode)")
    out = []
    for p in found:
        where = p.by_id or p.device
        ids = "no USB id"
        if p.usb:
            ids = f"usb {p.usb}" + (f" serial {p.serial_number}" if p.serial_number else "")
        name = " ".join(x for x in (p.manufacturer, p.product) if x) or p.description
        out.append(f"{p.device}  {ids}  {name}  -> likely {p.role}")
        hint = f'usb = "{p.usb}"' if p.usb else f'port = "{where}"'
        if p.by_id:
            hint = f'port = "{p.by_id}"  (or {hint})'
        out.append(f"    config: {hint}")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    found = ports()
    if args.json:
        print(json.dumps([asdict(p) for p in found], ensure_ascii=False, indent=2))
    else:
        print(render(found))
    return 0
