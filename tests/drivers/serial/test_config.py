"""drivers.serial.config through the real config loader: defaults, every device form, refusals."""

from __future__ import annotations

from pathlib import Path

from drivers.serial.config import Config
from tests.drivers.config_helpers import load_section, section_problems

SCANNER = '[[drivers.serial.devices]]\nname = "s1"\nrole = "scanner"\nregister_id = "r1"\n'
DISPLAY = '[[drivers.serial.devices]]\nname = "d1"\nrole = "display"\nregister_id = "r1"\n'
FISCAL = DISPLAY.replace('"display"', '"fiscal"')


def test_defaults(tmp_path: Path) -> None:
    config = load_section(tmp_path, "serial")
    assert isinstance(config, Config)
    assert config.devices == [] and config.bind_s == 180 and config.debounce_s == 1.5
    assert [p.kind for p in config.patterns] == ["app_code", "card", "phone", "ignore", "ignore", "ignore"]


def test_devices_by_port_and_by_usb_id(tmp_path: Path) -> None:
    display = 'usb = "0403:6001"\nusb_serial = "A5.0"\ncommand_set = "cd5220"\nencoding = "cp1251"\n'
    config = load_section(tmp_path, "serial", SCANNER + 'port = "/dev/ttyACM0"\n' + DISPLAY + display)
    assert isinstance(config, Config)
    scanner, display = config.devices
    assert scanner.url == "/dev/ttyACM0" and scanner.terminators == "\r\n"
    assert display.url == r"hwgrep://VID:PID=0403:6001 SER=A5\.0"
    assert (display.command_set, display.encoding) == ("cd5220", "cp1251")


def test_a_scanner_and_a_display_may_share_a_port(tmp_path: Path) -> None:
    shared = SCANNER + 'port = "/dev/ttyS0"\n' + DISPLAY + 'port = "/dev/ttyS0"\n'
    config = load_section(tmp_path, "serial", shared)
    assert isinstance(config, Config) and len(config.devices) == 2


def test_refusals_name_the_key(tmp_path: Path) -> None:
    cases = {
        SCANNER: "exactly one of port",
        SCANNER + 'port = "/dev/a"\nusb = "0403:6001"\n': "exactly one of port",
        SCANNER + 'usb = "403:6001"\n': "VID:PID",
        SCANNER + 'port = "/dev/a"\nusb_serial = "x"\n': "usb_serial needs usb",
        SCANNER.replace('"scanner"', '"printer"') + 'port = "/dev/a"\n': "",
        SCANNER + 'port = "/dev/a"\n' + SCANNER + 'port = "/dev/b"\n': "unique",
        SCANNER + 'port = "/dev/a"\n' + SCANNER.replace('"s1"', '"s2"') + 'port = "/dev/a"\n': "share",
        SCANNER + 'port = "/dev/a"\n' + FISCAL + 'port = "/dev/a"\n': "share",
        'patterns = [{ kind = "card", regex = "(" }]\n': "regular expression",
        'patterns = [{ kind = "bonus", regex = "x" }]\n': "",
        "bind_s = 1.0\n": "",
        'idle_text = ["one"]\n': "",
    }
    for options, words in cases.items():
        problems = section_problems(tmp_path, "serial", options)
        assert problems, options
        assert all(key.startswith("drivers.serial") for key, _, _ in problems), problems
        said = [f"{problem} {fix}".lower() for _, problem, fix in problems]
        assert any(words.lower() in text for text in said), (options, problems)
