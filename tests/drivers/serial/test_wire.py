"""drivers.serial.wire: scans classified (tables of real and hostile frames), display bytes exact:
every command set, Cyrillic in every table and the characters each table lacks."""

from __future__ import annotations

import pytest

from drivers.serial import wire
from drivers.serial.config import DEFAULT_PATTERNS
from gateway.receipt import CustomerId, IdKind

RULES = wire.compile_patterns([(p.kind, p.regex, p.check) for p in DEFAULT_PATTERNS])


@pytest.mark.parametrize(("frame", "outcome", "customer"), [
    (b"LQ1:K7M2P9XQ4T", "customer", CustomerId(IdKind.APP_CODE, "LQ1:K7M2P9XQ4T")),
    (b"]Q1LQ1:K7M2P9XQ4T", "customer", CustomerId(IdKind.APP_CODE, "LQ1:K7M2P9XQ4T")),  # AIM prefix
    (b"2770012345601", "customer", CustomerId(IdKind.CARD, "2770012345601")),
    (b"2770012345602", "malformed", None),  # wrong check digit
    (b"+79035550142", "customer", CustomerId(IdKind.PHONE, "+79035550142")),
    (b"89035550142", "customer", CustomerId(IdKind.PHONE, "+79035550142")),
    (b"79035550142", "customer", CustomerId(IdKind.PHONE, "+79035550142")),
    (b" +79035550142 ", "customer", CustomerId(IdKind.PHONE, "+79035550142")),
    (b"4607001234567", "ignored", None),  # a product EAN-13
    (b"46070012", "ignored", None),  # EAN-8
    (b"010460123456789021abc\x1d93Ab12", "ignored", None),  # a marking code with GS
    (b"0104601234567890215Ab", "ignored", None),  # a marking code that lost its GS
    (b"LQ1:k7m2", "unknown", None),
    (b"\xd0\x9f\xd1\x80\xd0\xb8", "unknown", None),  # UTF-8 text
    (b"\xff\x00\x01", "unknown", None),
    (b"", "unknown", None),
    (b"]E0", "unknown", None),
    (b"+7903555014", "unknown", None),  # ten digits only
    (b"A" * 600, "unknown", None),
])
def test_classify(frame: bytes, outcome: str, customer: CustomerId | None) -> None:
    scan = wire.classify(frame, RULES)
    assert (scan.outcome, scan.customer) == (outcome, customer)
    assert scan.reason or outcome in ("customer", "ignored")


def test_classify_without_aim_stripping_and_with_an_id_group() -> None:
    assert wire.classify(b"]Q1LQ1:K7M2P9XQ4T", RULES, strip_aim=False).outcome == "unknown"
    rules = wire.compile_patterns([("customer_id", r"^C(?P<id>\d+)$", "")])
    assert wire.classify(b"C42", rules).customer == CustomerId(IdKind.CUSTOMER_ID, "42")


@pytest.mark.parametrize(("digits", "ok"), [
    ("2770012345601", True), ("4607001234567", False), ("4006381333931", True), ("400638133393", False),
    ("400638133393x", False),
])
def test_ean13(digits: str, ok: bool) -> None:
    assert wire.ean13_ok(digits) is ok


# ------------------------------------------------------------------ display bytes


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


def test_first_paint_epson_cp866_is_the_notes_example() -> None:
    screen = ("Скидка 5%: 62.50", "Баланс: 1 340 б.")
    data = wire.opening("epson") + wire.screen_bytes("epson", "cp866", screen)
    assert data == hx(
        "1B 40 1F 01 0C 1F 24 01 01 91 AA A8 A4 AA A0 20 35 25 3A 20 36 32 2E 35 30 20 20 20 20 1F 24 01 02 "
        "81 A0 AB A0 AD E1 3A 20 31 20 33 34 30 20 A1 2E 20 20 20 20")
    assert len(data) == 53


LINE1 = wire.fit("Привет", "cp866")
LINE2 = wire.fit("", "cp866")


@pytest.mark.parametrize(("command_set", "expected"), [
    ("epson", hx("1F 24 01 01") + LINE1 + hx("1F 24 01 02") + LINE2),
    ("cd5220", hx("1B 51 41") + LINE1 + hx("0D 1B 51 42") + LINE2 + hx("0D")),
    ("ansi", hx("1B 5B 31 3B 31 48") + LINE1 + hx("1B 5B 32 3B 31 48") + LINE2),
])
def test_paint_per_command_set(command_set: str, expected: bytes) -> None:
    assert wire.paint(command_set, LINE1, LINE2) == expected


@pytest.mark.parametrize(("command_set", "table", "expected"), [
    ("epson", None, "1B 40 1F 01 0C"),
    ("epson", 17, "1B 40 1B 74 11 1F 01 0C"),
    ("cd5220", None, "1B 40 0C"),
    ("cd5220", 6, "1B 40 1B 74 06 0C"),
    ("ansi", None, "1B 5B 32 4A"),
    ("ansi", 0x35, "1B 52 35 1B 5B 32 4A"),
])
def test_opening(command_set: str, table: int | None, expected: str) -> None:
    assert wire.opening(command_set, table) == hx(expected)


def test_unknown_command_set_and_bad_line_length_are_refused() -> None:
    with pytest.raises(ValueError):
        wire.opening("star")
    with pytest.raises(ValueError):
        wire.paint("epson", b"short", LINE2)


@pytest.mark.parametrize(("encoding", "text", "expected"), [
    # Cyrillic in each table
    ("cp866", "Ёжик ёж", "F0 A6 A8 AA 20 F1 A6"),
    ("cp1251", "Ёжик ёж", "A8 E6 E8 EA 20 B8 E6"),
    ("cp437", "Ёжик", "45 7A 68 69 6B"),  # no Cyrillic: transliterated (Ё first becomes Е)
    # what each table lacks
    ("cp866", "100 ₽", "31 30 30 20 E0 2E"),
    ("cp1251", "100 ₽", "31 30 30 20 F0 2E"),
    ("cp437", "100 ₽", "31 30 30 20 72 2E"),
    ("cp866", "«Кофе» — 1…", "22 8A AE E4 A5 22 20 2D 20 31 2E 2E 2E"),
    ("cp1251", "«Кофе» — 1…", "AB CA EE F4 E5 BB 20 97 20 31 85"),  # cp1251 has them
    ("cp866", "„a“ ‘b’ –", "22 61 22 20 27 62 27 20 2D"),
    ("cp866", "№5", "FC 35"),
    ("cp437", "№5", "4E 35"),
    ("cp866", "☃", "3F"),  # nothing to replace it with
])
def test_encode(encoding: str, text: str, expected: str) -> None:
    assert wire.encode(text, encoding) == hx(expected)


def test_fit_pads_cuts_and_blanks_control_characters() -> None:
    assert wire.fit("abc", "cp866") == b"abc" + b" " * 17
    assert wire.fit("x" * 30, "cp866") == b"x" * 20
    assert wire.fit("1 000 ₽" * 3, "cp866") == "1 000 р.1 000 р.1 00".encode("cp866")  # cut after replacing
    assert wire.fit("a\x1b@b\r\n\x7f", "cp866") == b"a @b   " + b" " * 13
