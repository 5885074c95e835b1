"""simulators.devices.display: the three command sets into a 2×20 framebuffer, byte by byte,
unknown commands flagged; written independently of drivers.serial.wire (byte vectors here)."""

from __future__ import annotations

import pytest

from simulators.devices.display import DisplayModel


def feed_bytewise(model: DisplayModel, data: bytes) -> None:
    for i in range(len(data)):
        model.feed(data[i:i + 1])


NOTES_EXAMPLE = bytes.fromhex(
    "1B 40 1F 01 0C 1F 24 01 01 91 AA A8 A4 AA A0 20 35 25 3A 20 36 32 2E 35 30 20 20 20 20 1F 24 01 02 "
    "81 A0 AB A0 AD E1 3A 20 31 20 33 34 30 20 A1 2E 20 20 20 20")


@pytest.mark.parametrize("bytewise", [False, True])
def test_epson_first_paint(bytewise: bool) -> None:
    model = DisplayModel("epson", "cp866")
    (feed_bytewise if bytewise else DisplayModel.feed)(model, NOTES_EXAMPLE)
    assert model.text() == ("Скидка 5%: 62.50", "Баланс: 1 340 б.")
    assert model.resets == 1 and model.unknown == []


def test_cd5220_line_writes_replace_whole_lines() -> None:
    model = DisplayModel("cd5220", "cp1251")
    model.feed(b"\x1b@\x0c\x1bQA" + "Привет".encode("cp1251") + b"\r\x1bQBsecond line\r")
    assert model.text() == ("Привет", "second line")
    model.feed(b"\x1bQAx\r")
    assert model.text() == ("x", "second line")
    model.feed(b"\x1bl\x03\x02Z")  # cursor to column 3, row 2
    assert model.text() == ("x", "seZond line")


def test_ansi_cursor_clear_and_table() -> None:
    model = DisplayModel("ansi", "cp866")
    model.feed(b"\x1bR\x35\x1b[2J\x1b[2;5Hab\x1b[1;1Hcd")
    assert model.text() == ("cd", "    ab") and model.table == 0x35
    model.feed(b"\x1b[2;1H\x1b[0K")
    assert model.text() == ("cd", "")


def test_wrap_overwrite_and_clear_line() -> None:
    model = DisplayModel("epson", "cp866")
    model.feed(b"\x0c" + b"a" * 25)
    assert model.text() == ("a" * 20, "a" * 5)
    model.feed(b"\x18")  # clear the cursor's line
    assert model.text() == ("a" * 20, "")


def test_unknown_commands_are_flagged_and_skipped() -> None:
    model = DisplayModel("epson", "cp866")
    model.feed(b"\x1bZ\x1f\x7fok\x01\x1f$\x09\x09")
    assert model.unknown == [b"\x1bZ", b"\x1f\x7f", b"\x01", b"cursor 9,9 off screen"]
    assert model.text() == ("ok", "")
