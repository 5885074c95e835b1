"""gateway.fields: the payload readers, as tables (values in, typed values or BadInput out)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import fields
from gateway.errors import BadInput
from gateway.receipt import CustomerId, IdKind

MSK = timezone(timedelta(hours=3))


@pytest.mark.parametrize(
    ("raw", "kop"), [("199.90", 19990), (Decimal("0.005"), 1), (12, 1200), ("-0.05", -5)]
)
def test_kopecks(raw: object, kop: int) -> None:
    assert fields.kopecks(raw, "x") == kop
    assert fields.kopecks(fields.rubles(kop), "x") == kop


@pytest.mark.parametrize("raw", [1.5, True, "abc", "NaN", "1e12", None, [1]])
def test_kopecks_refuses(raw: object) -> None:
    with pytest.raises(BadInput) as err:
        fields.kopecks(raw, "lines[0].price")
    assert err.value.field == "lines[0].price"


def test_kopecks_default_only_for_none() -> None:
    assert fields.kopecks(None, "x", default=0) == 0
    with pytest.raises(BadInput):
        fields.kopecks("", "x", default=0)


def test_text_and_shapes() -> None:
    assert fields.text(123, "id") == "123"
    assert fields.text(None, "id") == ""
    with pytest.raises(BadInput, match="is required"):
        fields.text("", "id", required=True)
    with pytest.raises(BadInput, match="at most 3"):
        fields.text("abcd", "id", limit=3)
    assert fields.opt_obj(None, "o") == {} and fields.opt_lst(None, "l") == []
    for call in (lambda: fields.obj([], "o"), lambda: fields.lst({}, "l"), lambda: fields.text(True, "t")):
        with pytest.raises(BadInput):
            call()


@pytest.mark.parametrize(
    ("raw", "when"),
    [
        ("2026-01-01T10:05:10.000+0300", datetime(2026, 1, 1, 10, 5, 10, tzinfo=MSK)),
        ("2026-01-01T07:05:10Z", datetime(2026, 1, 1, 7, 5, 10, tzinfo=UTC)),
        (None, None),
    ],
)
def test_timestamp(raw: object, when: datetime | None) -> None:
    assert fields.timestamp(raw, "t") == when


@pytest.mark.parametrize("raw", ["2026-01-01T07:05:10", "yesterday", "2026-01-01T07:05:10Z" + " " * 60])
def test_timestamp_refuses(raw: str) -> None:
    with pytest.raises(BadInput):
        fields.timestamp(raw, "t", limit=64)


# ------------------------------------------------------------------ JSON text


def test_loads_numbers_are_decimal_or_int() -> None:
    assert fields.loads(b'{"p": 199.90, "q": 2, "e": 1e2, "n": [0.1]}') == {
        "p": Decimal("199.90"), "q": 2, "e": Decimal("1E+2"), "n": [Decimal("0.1")]}


@pytest.mark.parametrize(
    ("body", "message"),
    [(b'{"a": NaN}', "not a number JSON allows"), (b"[Infinity]", "not a number JSON allows"),
     (b"[-Infinity]", "not a number JSON allows"), (b"{", "malformed JSON"), (b"\xff{}", "malformed JSON"),
     (b'\xef\xbb\xbf{"a": 1}', "malformed JSON"), (b"[" * 65 + b"]" * 65, "deeper than 64"),
     (b"[" * 100_000, ""), (b'{"a": 1} x', "malformed JSON")],
)
def test_loads_refuses(body: bytes, message: str) -> None:
    for fast in (False, True):
        with pytest.raises(BadInput) as info:
            fields.loads(body, "body", fast=fast)
        assert info.value.field == "body" and message in str(info.value)


def test_loads_depth_limit_is_exact() -> None:
    assert fields.loads(b"[" * 64 + b"]" * 64) == fields.loads(b"[" * 64 + b"]" * 64, fast=True)
    deep_in_wide = b'{"a": [' + b"[]," * 100 + b"[" * 63 + b"]" * 63 + b"]}"
    with pytest.raises(BadInput, match="deeper than 64"):
        fields.loads(deep_in_wide)


def test_loads_encodings_and_leniency() -> None:
    utf16 = json.dumps({"b": "Молоко"}, ensure_ascii=False).encode("utf-16")
    with pytest.raises(BadInput):
        fields.loads(utf16)
    assert fields.loads(utf16, any_encoding=True) == {"b": "Молоко"}
    assert fields.loads(b'\xef\xbb\xbf{"a": 1}', any_encoding=True) == {"a": 1}
    assert fields.loads(b'{"a": [1, 2,], "b": "x,]",}', trailing_commas=True) == {"a": [1, 2], "b": "x,]"}
    with pytest.raises(BadInput):
        fields.loads(b'{"a": [1, 2,]}')


def test_load_object_and_embedded() -> None:
    assert fields.load_object(b'"{\\"a\\": 1}"', unwrap=True) == {"a": 1}
    for body in (b"[1]", b'"x"', b'"{\\"a\\": 1}"'):
        with pytest.raises(BadInput, match="JSON object"):
            fields.load_object(body)
    assert fields.embedded('"{\\"a\\": 1.5}"', "d", times=3) == {"a": Decimal("1.5")}
    assert fields.embedded(" ", "d") is None and fields.embedded({"a": 1}, "d") == {"a": 1}
    with pytest.raises(BadInput) as info:
        fields.embedded("{", "extras.check")
    assert info.value.field == "extras.check"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=8)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fast_path_equals_stdlib_path(value: object) -> None:
    """orjson first or not: equal values, but for what :func:`fields.loads` says comes back as a
    float on the fast path (a fraction, an integer beyond 64 bits)."""
    body = _dump(value)
    slow, fast = fields.loads(body), fields.loads(body, fast=True)
    assert _as_fast(slow) == fast
    assert not _floats(slow)  # the stdlib path never gives a float


def _as_fast(value: object) -> object:
    if isinstance(value, dict):
        return {k: _as_fast(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_fast(v) for v in value]
    if isinstance(value, Decimal) or (type(value) is int and not -(2**63) <= value < 2**64):
        return float(value)
    return value


def _floats(value: object) -> bool:
    if isinstance(value, dict):
        return any(_floats(v) for v in value.values())
    if isinstance(value, list):
        return any(_floats(v) for v in value)
    return isinstance(value, float)


def _dump(value: object) -> bytes:
    return json.dumps(value, default=lambda d: float(d) if d != d.to_integral_value() else int(d)).encode()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.text(max_size=40).map(str.encode))
def test_fast_path_refuses_what_the_stdlib_path_refuses(body: bytes) -> None:
    outcomes = []
    for fast in (False, True):
        try:
            outcomes.append(("ok", fields.loads(body, fast=fast)))
        except BadInput as exc:
            outcomes.append(("bad", str(exc)))
    assert outcomes[0][0] == outcomes[1][0]
    if outcomes[0][0] == "bad":
        assert outcomes[0] == outcomes[1]  # the same message: the stdlib path decides


# ------------------------------------------------------------------ readers with vendor settings


def test_text_strict_and_whole() -> None:
    assert fields.text(Decimal("1.50"), "id") == "1.50"
    assert fields.text(Decimal("15.0"), "id", whole=True) == "15" and fields.text(7, "id", whole=True) == "7"
    with pytest.raises(BadInput, match="whole number"):
        fields.text(Decimal("1.5"), "id", whole=True)
    with pytest.raises(BadInput, match="must be a string"):
        fields.text(7, "id", strict=True)
    assert fields.ident("x", "id") == "x"
    with pytest.raises(BadInput, match="is required"):
        fields.ident(None, "id")


@pytest.mark.parametrize(
    ("raw", "kwargs", "out"),
    [(5, {}, 5), ("5", {}, 5), (Decimal("5.0"), {}, 5), ("1 000", {}, 1000), (None, {"default": 7}, 7),
     ("", {}, 0), (5, {"strict": True}, 5), (None, {"strict": True}, 0)],
)
def test_integer(raw: object, kwargs: dict[str, object], out: int) -> None:
    assert fields.integer(raw, "n", **kwargs) == out  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "kwargs", "message"),
    [("5", {"strict": True}, "got str"), (Decimal("1.5"), {"strict": True}, "got a fraction"),
     (1.5, {"strict": True}, "got a fraction"), (True, {"strict": True}, "got bool"),
     (2.0**64, {"strict": True, "hi": 10}, "must not exceed 10"), ("", {"strict": True}, "got str"),
     (Decimal("1.5"), {}, "whole number"), (-1, {"lo": 0}, "less than 0"),
     (None, {"required": True}, "required"),
     (True, {}, "decimal number")],
)
def test_integer_refuses(raw: object, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(BadInput, match=message) as info:
        fields.integer(raw, "lines[0].amount", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == "lines[0].amount"


def test_signed_and_spaced_amounts() -> None:
    assert fields.kopecks(" 1 000.505 ", "p", spaces=True) == 100051
    with pytest.raises(BadInput):
        fields.kopecks("1 000", "p")
    with pytest.raises(BadInput, match="negative"):
        fields.kopecks("-0.01", "p", signed=False)
    with pytest.raises(BadInput, match="negative"):
        fields.milli("-1", "q", signed=False)
    assert fields.milli("0.0005", "q") == 1 and fields.milli(2, "q") == 2000


@pytest.mark.parametrize(
    ("raw", "kwargs", "out"),
    [("max", {}, (0, True)), (" MAX ", {}, (0, True)), (None, {}, (0, False)), ("12", {}, (12, False)),
     (Decimal("3.0"), {}, (3, False)), (-5, {"negative_as_zero": True}, (0, False))],
)
def test_redeem(raw: object, kwargs: dict[str, bool], out: tuple[int, bool]) -> None:
    assert fields.redeem(raw, "loyalty.redeem", **kwargs) == out


@pytest.mark.parametrize("raw", [-1, "1.5", "all", True])
def test_redeem_refuses(raw: object) -> None:
    with pytest.raises(BadInput) as info:
        fields.redeem(raw, "loyalty.redeem")
    assert info.value.field == "loyalty.redeem"


def test_boolean_and_objs() -> None:
    assert fields.boolean(None, "b", default=True) is True and fields.boolean(False, "b") is False
    with pytest.raises(BadInput, match="true or false"):
        fields.boolean(1, "b")
    assert fields.objs(None, "lines") == [] and fields.objs([{}], "lines") == [{}]
    for raw, where, kwargs in (([1], "lines[0]", {}), (None, "lines", {"required": True}),
                               ([{}] * 3, "lines", {"limit": 2})):
        with pytest.raises(BadInput) as info:
            fields.objs(raw, "lines", **kwargs)
        assert info.value.field == where
    assert fields.obj('{"a": 1}', "o", encoded=True) == {"a": 1}
    with pytest.raises(BadInput, match="is required"):
        fields.obj(None, "o")
    with pytest.raises(BadInput, match="must be an object"):
        fields.obj('{"a": 1}', "o")


def test_timestamp_strict_refuses_numbers() -> None:
    with pytest.raises(BadInput, match="must be a string"):
        fields.timestamp(1714550400, "t", strict=True)
    with pytest.raises(BadInput, match="UTC offset"):
        fields.timestamp("2024-05-01T12:00:00", "t")


@pytest.mark.parametrize(("price", "qty", "amount"), [(19990, 1000, 19990), (12345, 350, 4321), (1, 500, 1),
                                                      (1, 499, 0), (0, 5000, 0), (10**13, 10**6, 10**16)])
def test_line_amount_half_up(price: int, qty: int, amount: int) -> None:
    assert fields.line_amount(price, qty) == amount
    exact = (Decimal(price) * qty / 1000).quantize(Decimal(1), "ROUND_HALF_UP")
    assert fields.line_amount(price, qty) == int(exact)


# ------------------------------------------------------------------ customers


@pytest.mark.parametrize(
    ("kind", "value"),
    [(IdKind.PHONE, "+7 (900) 123-45-67"), (IdKind.PHONE, "89001234567"), (IdKind.CARD, "2000012345"),
     (IdKind.APP_CODE, "A1-b2"), (IdKind.QR, "https://x.example/c?id=1\nline 2"), (IdKind.CUSTOMER_ID, 42)],
)
def test_customer(kind: IdKind, value: object) -> None:
    assert fields.customer(kind, value, "c") == CustomerId(kind, str(value))


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [(IdKind.PHONE, "+7 900 CALL ME", "phone number"), (IdKind.PHONE, "1" * 16, "phone number"),
     (IdKind.PHONE, "+-()", "phone number"), (IdKind.PHONE, "٣٣٣", "phone number"),
     (IdKind.CARD, "12\x0034", "printable"), (IdKind.CARD, "12\n34", "printable"),
     (IdKind.QR, "a\x1b[31m", "printable"), (IdKind.CARD, "   ", "required"), (IdKind.CARD, None, "required"),
     (IdKind.CARD, "1" * 257, "at most 256"), (IdKind.QR, "q" * 2049, "at most 2048"),
     (IdKind.CARD, True, "must be a string")],
)
def test_customer_refuses(kind: IdKind, value: object, message: str) -> None:
    with pytest.raises(BadInput, match=message) as info:
        fields.customer(kind, value, "loyalty.card")
    assert info.value.field == "loyalty.card"


def test_customer_strict_and_first() -> None:
    with pytest.raises(BadInput, match="must be a string"):
        fields.customer(IdKind.CARD, 777, "customer.card", strict=True)
    assert fields.customer(IdKind.PHONE, "+79001234567", "c", otp="1234").otp == "1234"
    given_phone = [(IdKind.CARD, "", "l.card"), (IdKind.PHONE, "+7900", "l.phone")]
    assert fields.first_customer(given_phone) == CustomerId(IdKind.PHONE, "+7900")
    assert fields.first_customer([(IdKind.CARD, None, "l.card")]) is None
    with pytest.raises(BadInput) as info:
        fields.first_customer([(IdKind.CARD, "", "l.card"), (IdKind.PHONE, "call me", "l.phone")])
    assert info.value.field == "l.phone"


def test_a_contact_is_marked_and_checked_like_any_phone() -> None:
    assert fields.customer(IdKind.PHONE, "+7 (495) 123-45-67", "buyer", contact=True).if_known
    assert not fields.customer(IdKind.PHONE, "+74951234567", "buyer").if_known
    with pytest.raises(BadInput):
        fields.customer(IdKind.PHONE, "call me", "buyer", contact=True)
