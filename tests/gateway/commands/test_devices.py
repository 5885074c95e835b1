"""gateway.commands.devices (``posgw devices``): each port with its USB id, by-id link and a likely
role; the config line to paste; JSON; nothing found said so. Ports are pyserial ListPortInfo
objects (the real class) with the fields a USB port reports."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from serial.tools.list_ports_common import ListPortInfo

from gateway.commands import devices


def port(device: str, vid: int | None = None, pid: int | None = None, serial: str = "",
         manufacturer: str = "", product: str = "") -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.serial_number = vid, pid, serial or None
    info.manufacturer, info.product = manufacturer or None, product or None
    info.description = product or "n/a"
    return info


@pytest.mark.parametrize(("vid", "text", "role"), [
    (0x1EAB, "Newland NLS-FR40", "scanner"),
    (0x0403, "FTDI FT232R USB UART", "USB-serial adapter (FTDI): a display or an RS-232 scanner"),
    (0x0403, "Posiflex PD-2800 customer display", "customer display"),
    (0x1234, "Honeywell Imaging", "scanner"),
    (0x1234, "SHTRIH-M FR", "fiscal register (owned by the till: do not configure)"),
    (None, "n/a", "unknown"),
])
def test_likely_role(vid: int | None, text: str, role: str) -> None:
    assert devices.likely_role(vid, text) == role


def test_describe_uses_the_by_id_link(tmp_path: Path) -> None:
    tty = tmp_path / "ttyACM0"
    tty.write_text("")
    folder = tmp_path / "by-id"
    folder.mkdir()
    (folder / "usb-Newland_NLS-FR40_ABC-if00").symlink_to(tty)
    links = devices.by_id_links(folder)
    found = devices.describe(port(str(tty), 0x1EAB, 0x0D10, "ABC", "Newland", "NLS-FR40"), links)
    assert found.usb == "1eab:0d10" and found.by_id.endswith("usb-Newland_NLS-FR40_ABC-if00")
    assert found.role == "scanner" and found.serial_number == "ABC"
    text = devices.render([found])
    assert f"{tty}  usb 1eab:0d10 serial ABC  Newland NLS-FR40  -> likely scanner" in text
    assert f'config: port = "{found.by_id}"  (or usb = "1eab:0d10")' in text


def test_render_without_usb_and_without_ports() -> None:
    plain = devices.describe(port("/dev/ttyS0"), {})
    assert devices.render([plain]).splitlines() == [
        "/dev/ttyS0  no USB id  n/a  -> likely unknown", '    config: port = "/dev/ttyS0"']
    assert "no serial ports found" in devices.render([])


def test_run_lists_the_machines_ports_as_json(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("serial.tools.list_ports.comports",
                        lambda: [port("/dev/ttyUSB1", 0x0403, 0x6001, "A5", "FTDI", "FT232R")])
    parser = argparse.ArgumentParser()
    devices.add_arguments(parser)
    assert devices.run(parser.parse_args(["--json"])) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["device"], listed["usb"], listed["serial_number"]) == ("/dev/ttyUSB1", "0403:6001", "A5")
