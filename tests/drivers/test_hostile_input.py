"""Hostile input for every wire parser: a value or :class:`gateway.errors.BadInput`, nothing else.

Every parser of every driver's ``wire.py`` (native, Evotor's plugin and cloud, Modul Kassa,
Poster) and :func:`gateway.xml_fields.parse` is fed:

- arbitrary bytes; invalid UTF-8 (a stray continuation byte, an overlong encoding, an encoded
  surrogate) inside a string of a real payload; lone surrogate escapes;
- 10^5 nested brackets (arrays, objects, and inside the JSON carried as a string: Poster's
  ``data``, Modul Kassa's ``extras.check``, Evotor's ``extra``);
- huge numbers (10^30, 2^63, 4,000 digits, ``1e999``), ``NaN`` / ``Infinity`` as JSON and as
  text, whole floats, negative zero;
- at EVERY path of a real payload (embedded JSON strings included), a value of every wrong
  type: null, booleans, numbers, strings (empty, blank, 10^5 characters, control and bidi
  characters, NUL), lists, objects, deep nesting;
- hypothesis: random JSON (with those leaves) as a whole body, as several replaced paths, and
  as the argument of each object-level parser.

The contract: the parser returns or raises BadInput (whose ``field`` is a string); any other
exception is a bug. Bounds a parser must enforce are tested in each driver's test_wire.py;
here only "never anything else".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.evotor import cloud_wire
from drivers.evotor import wire as evotor
from drivers.modulkassa import wire as modulkassa
from drivers.native import wire as native
from drivers.poster import wire as poster
from gateway import xml_fields
from gateway.errors import BadInput
from tests.drivers.evotor import payloads as evotor_payloads
from tests.drivers.modulkassa.test_wire import closed as mk_closed
from tests.drivers.modulkassa.test_wire import operation as mk_operation
from tests.drivers.poster import payloads as poster_payloads

NOW = datetime(2026, 1, 10, tzinfo=UTC)
DEEP = 100_000  # brackets


# ------------------------------------------------------------------ the parsers


def _native(parse: Callable[[native.Obj], object]) -> Callable[[bytes], object]:
    return lambda body: parse(native.parse_json(body))


BYTE_PARSERS: dict[str, Callable[[bytes], object]] = {
    "native.parse_json": native.parse_json,
    "native.parse_identify": _native(native.parse_identify),
    "native.parse_receipt": _native(lambda o: native.parse_receipt(o, NOW, store_id="S1")),
    "native.parse_sale": _native(lambda o: native.parse_sale(o, NOW, store_id="S1")),
    "native.parse_refund": _native(lambda o: native.parse_refund(o, NOW)),
    "native.parse_cancel": _native(lambda o: native.parse_cancel(o, NOW)),
    "native.parse_customer": _native(native.parse_customer),
    "native.parse_line": _native(lambda o: native.parse_line(o, "line")),
    "native.sale_ref_key": _native(lambda o: native.sale_ref_key(o, "R1")),
    "evotor.parse_plugin": evotor.parse_plugin,
    "evotor.loads": evotor.loads,
    "evotor.loads(lenient)": lambda body: evotor.loads(body, lenient=True),
    "evotor.cloud_wire.parse_receipts": cloud_wire.parse_receipts,
    "evotor.cloud_wire.parse_documents": cloud_wire.parse_documents,
    "evotor.cloud_wire.parse_user_verify": cloud_wire.parse_user_verify,
    "modulkassa.parse_operation": modulkassa.parse_operation,
    "modulkassa.parse_event": modulkassa.parse_event,
    "poster.root_object": poster.root_object,
    "poster.parse_webhook": poster.parse_webhook,
    "poster.parse_webhook+data": lambda body: poster.parse_data(poster.parse_webhook(body).data),
    "poster.parse_data": lambda body: poster.parse_data(body.decode("utf-8", "surrogateescape")),
    "poster.parse_pos_event": poster.parse_pos_event,
    "xml_fields.parse": xml_fields.parse,
}

# parsers of an already decoded JSON value (what the byte parsers call for a part of a payload)
VALUE_PARSERS: dict[str, Callable[[object], object]] = {
    "evotor.parse_loyalty": lambda v: evotor.parse_loyalty(v, "loyalty"),
    "evotor.parse_position": lambda v: evotor.parse_position(v, "position"),
    "evotor.parse_snapshot": lambda v: evotor.parse_snapshot(v, "receipt"),
    "modulkassa.parse_loyalty": modulkassa.parse_loyalty,
    "modulkassa.parse_check": lambda v: modulkassa.parse_check(v, "extras.check"),
    "poster.parse_products": lambda v: poster.parse_products(v, "data.order.products"),
    "poster.parse_order": poster.parse_order,
    "poster.parse_loyalty": poster.parse_loyalty,
}


def only_bad_input(name: str, parse: Callable[[Any], object], arg: Any, what: str = "") -> None:
    try:
        parse(arg)
    except BadInput as exc:
        assert isinstance(exc.field, str), (name, what, exc)
    except Exception as exc:  # the finding: anything else escaped
        shown = repr(arg)[:300]
        raise AssertionError(f"{name} raised {type(exc).__name__}: {exc!s:.200} for {what} {shown}") from exc


# ------------------------------------------------------------------ real payloads (the seeds)


@dataclass
class Embedded:
    """JSON carried as a string inside JSON; mutated as a tree, sent as a string."""

    value: Any


def _wrap(value: Any) -> Any:
    """A decoded payload with every string that holds a JSON object or list as Embedded."""
    if isinstance(value, dict):
        return {k: _wrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            return Embedded(_wrap(json.loads(value)))
        except ValueError:
            return value
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Embedded):
        return json.dumps(_plain(value.value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def encode(value: Any) -> bytes:
    return json.dumps(_plain(value)).encode("utf-8", "surrogatepass")


NATIVE_LINE = {
    "line_id": "1", "sku": "MILK", "name": "Milk", "price": 10000, "qty_milli": 1000, "amount": 10000,
    "category": "dairy", "discountable": True, "accruable": True, "min_unit_price": 100,
}
NATIVE_SALE = {
    "register_id": "R1", "receipt_number": "42", "shift": "7", "fiscal_sign": "FS", "document_id": "D",
    "occurred_at": "2026-01-10T12:00:00+03:00", "cashier": {"id": "c1", "name": "Ann"},
    "customer": {"phone": "+79001234567", "otp": "1234"}, "redeemed_points": 5, "redeem_points": 5,
    "redeem_max": True, "hold_id": "h1", "calc_token": "t", "lines": [NATIVE_LINE],
    "payments": [{"kind": "card", "amount": 9995}],
}
NATIVE_REFUND = {
    "register_id": "R1", "refund_id": "rf1", "occurred_at": "2026-01-10T12:00:00Z",
    "sale": {"receipt_number": "42", "shift": "7", "fiscal_sign": "FS", "document_id": "D"},
    "full": False, "lines": [{"line_id": "1", "qty_milli": 1000}], "cancel_id": "c1",
}
CLOUD_RECEIPT = {
    "id": "e1", "timestamp": 1767254400000, "userId": "u1", "type": "ReceiptCreated", "version": 2,
    "data": {
        "id": "r1", "type": "SELL", "deviceId": "d1", "storeId": "s1", "number": 7, "shiftId": "3",
        "dateTime": "2026-01-01T10:00:00.000+0000", "baseReceiptId": None, "extras": {"k": "v"},
        "items": [{"id": "i1", "code": "c", "name": "Milk", "price": 86.0, "quantity": 1.5,
                   "discount": 1.25}],
    },
}
CLOUD_DOCUMENT_V2 = {
    "type": "SELL", "id": "d1", "number": 9, "session_number": 3, "device_id": "dev", "store_id": "st",
    "close_date": "2026-01-01T10:00:00.000+0000",
    "body": {"positions": [{"product_id": "p", "code": "1", "product_name": "Milk", "price": 86,
                            "quantity": 1, "sum": 86, "result_sum": 80}]},
}
CLOUD_DOCUMENT_V1 = {
    "type": "SELL", "uuid": "d1", "deviceUuid": "dev", "storeUuid": "st",
    "closeDate": "2026-01-01T10:00:00.000+0000", "sessionNumber": 3,
    "transactions": [
        {"type": "DOCUMENT_OPEN", "baseDocumentUUID": None},
        {"type": "REGISTER_POSITION", "commodityUuid": "p", "commodityCode": "1", "commodityName": "Milk",
         "price": 86, "quantity": 1, "sum": 86, "resultSum": 80},
        {"type": "DOCUMENT_CLOSE_FPRINT", "receiptNumber": 9},
    ],
}


def seeds() -> dict[str, tuple[Any, tuple[str, ...]]]:
    """name -> (payload as a tree with Embedded strings, the byte parsers that read it)."""
    evo_plugin = ("evotor.parse_plugin",)
    mk = ("modulkassa.parse_operation", "modulkassa.parse_event")
    pos = ("poster.parse_pos_event",)
    native_all = ("native.parse_receipt", "native.parse_sale", "native.parse_identify")
    return {
        "native sale": (NATIVE_SALE, native_all),
        "native identify": ({"customer": {"card": "2000012345", "otp": "1"}}, ("native.parse_identify",)),
        "native refund/cancel": (NATIVE_REFUND, ("native.parse_refund", "native.parse_cancel")),
        "native line": (NATIVE_LINE, ("native.parse_line",)),
        "evotor calc": (_wrap(evotor_payloads.calc()), evo_plugin),
        "evotor close": (_wrap(evotor_payloads.close(extra={"posgw": "c1.x.y"})), evo_plugin),
        "evotor cloud receipt": (CLOUD_RECEIPT, ("evotor.cloud_wire.parse_receipts",)),
        "evotor cloud documents": ([CLOUD_DOCUMENT_V2, CLOUD_DOCUMENT_V1],
                                   ("evotor.cloud_wire.parse_documents",)),
        "evotor user verify": ({"userUuid": "u-1", "username": "a", "password": "b"},
                               ("evotor.cloud_wire.parse_user_verify",)),
        "modulkassa operation": (_wrap(mk_operation(card="2000012345", redeem="10")), mk[:1]),
        "modulkassa closed": (_wrap(mk_closed(card="2000012345")), mk[1:]),
        "poster before close": (_wrap(json.loads(poster_payloads.before_close())), pos),
        "poster after close": (_wrap(json.loads(poster_payloads.after_close(token="tok"))), pos),
        "poster webhook": (_wrap(poster_payloads.webhook(data='{"value": 1, "x": [1]}')),
                           ("poster.parse_webhook", "poster.parse_webhook+data")),
    }


SEEDS = seeds()


def paths(value: Any, prefix: tuple[object, ...] = ()) -> Iterator[tuple[object, ...]]:
    """Every path of a tree (into Embedded strings too), the root excluded."""
    if isinstance(value, Embedded):
        yield from paths(value.value, prefix)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield (*prefix, i)
            yield from paths(item, (*prefix, i))


def replaced(tree: Any, path: tuple[object, ...], new: Any) -> Any:
    if not path:
        return new
    if isinstance(tree, Embedded):
        return Embedded(replaced(tree.value, path, new))
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        return {k: replaced(v, rest, new) if k == head else v for k, v in tree.items()}
    return [replaced(v, rest, new) if i == head else v for i, v in enumerate(tree)]


def deep(n: int) -> Any:
    value: Any = []
    for _ in range(n):
        value = [value]
    return value


WRONG: list[Any] = [
    None, True, False, 0, -1, 1, 2**63, -(2**63) - 1, 10**30, -(10**30), int("9" * 4000), 1.5, -0.0, 1e308,
    float("nan"), float("inf"), float("-inf"),
    "", " ", "\x00", "a\x00b", "\u202eevil", "\u200b", "\r\n", "\ud800", "x" * 100_000, "9" * 4000, "1e999",
    "NaN", "Infinity", "-0", "0x10", "1_000", "٣", "max", "2026-13-45T99:99:99+25:00", "9999-12-31T23:59:59Z",
    [], {}, [None], {"": None}, deep(200), {"a": deep(100)},
]


def test_every_wire_parser_is_fuzzed_here() -> None:
    """A new public parse function in a wire module must be added to a table above."""
    covered = {name.split("(")[0].split("+")[0] for name in (*BYTE_PARSERS, *VALUE_PARSERS)}
    modules = {"native": native, "evotor": evotor, "evotor.cloud_wire": cloud_wire,
               "modulkassa": modulkassa, "poster": poster}
    for prefix, module in modules.items():
        for attr in dir(module):
            fn = getattr(module, attr)
            if (attr.startswith(("parse_", "root_", "loads", "sale_ref")) and callable(fn)
                    and getattr(fn, "__module__", "") == module.__name__):
                assert f"{prefix}.{attr}" in covered, f"{prefix}.{attr} is not fuzzed"
    for name, (_, readers) in SEEDS.items():
        assert set(readers) <= set(BYTE_PARSERS), name


@pytest.mark.parametrize("seed", list(SEEDS))
def test_seeds_are_accepted(seed: str) -> None:
    """The real payloads the mutations start from parse (so a mutation reaches every path)."""
    tree, readers = SEEDS[seed]
    for name in readers:
        BYTE_PARSERS[name](encode(tree))


@pytest.mark.parametrize("seed", list(SEEDS))
def test_a_wrong_value_at_every_path(seed: str) -> None:
    tree, readers = SEEDS[seed]
    for path in paths(tree):
        for value in WRONG:
            body = encode(replaced(tree, path, value))
            for name in readers:
                only_bad_input(name, BYTE_PARSERS[name], body, f"{seed} {path}=")


@pytest.mark.parametrize("seed", list(SEEDS))
def test_invalid_utf8_inside_every_string(seed: str) -> None:
    tree, readers = SEEDS[seed]
    marker = "\u2603HOSTILE\u2603"
    for path in paths(tree):
        body = encode(replaced(tree, path, marker))
        for bad in (b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\x80abc", b"\xf4\x90\x80\x80", b"\xe2\x82"):
            raw = body.replace(json.dumps(marker).encode()[1:-1], bad)
            for name in readers:
                only_bad_input(name, BYTE_PARSERS[name], raw, f"{seed} {path}={bad!r}")


HOSTILE_BODIES: dict[str, bytes] = {
    "empty": b"",
    "BOM + object": b"\xef\xbb\xbf{}",
    "UTF-16 object": '{"a": 1}'.encode("utf-16"),
    "10^5 [": b"[" * DEEP,
    "10^5 []": b"[" * DEEP + b"]" * DEEP,
    "10^5 {": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "10^5 [ in an object": b'{"data": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "10^5 [ in every string": b'{"data": "' + b"[" * DEEP + b'", "action": "x"}',
    "NaN": b'{"a": NaN}',
    "Infinity": b'{"a": [Infinity, -Infinity]}',
    "1e999": b'{"a": 1e999, "b": -1e999, "c": 1e-999}',
    "10^5 digits": b'{"a": 1' + b"0" * DEEP + b"}",
    "4300+ digit integer": b'{"a": ' + b"7" * 5000 + b"}",
    "lone surrogate": b'{"a": "\\ud800", "b": "\\udfff\\ud800"}',
    "NUL": b'{"a\\u0000": "\\u0000"}',
    "control characters raw": b'{"a": "\x01\x1f"}',
    "duplicate keys": b'{"a": 1, "a": {"a": 2}}',
    "trailing commas": b'{"a": [1,],}',
    "top-level scalar": b"42",
    "top-level string": b'"{\\"a\\": 1}"',
    "garbage after": b"{} {}",
    "XML billion laughs": (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                           b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><r>&b;</r>'),
    "XML external entity": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
    "XML 10^5 deep": b"<a>" * DEEP + b"</a>" * DEEP,
}


@pytest.mark.parametrize("what", list(HOSTILE_BODIES))
def test_hostile_bodies(what: str) -> None:
    body = HOSTILE_BODIES[what]
    for name, parse in BYTE_PARSERS.items():
        only_bad_input(name, parse, body, what)


@pytest.mark.parametrize("seed", list(SEEDS))
def test_deep_nesting_at_every_path(seed: str) -> None:
    """10^5 brackets in place of every value (in embedded JSON strings too): refused, no
    RecursionError and no stack overflow."""
    tree, readers = SEEDS[seed]
    marker = "\u2603DEEP\u2603"
    deep_json = b"[" * DEEP + b"]" * DEEP
    for path in list(paths(tree))[:60]:  # 10^5 brackets cost ~10 ms a parse: the first 60 paths
        body = encode(replaced(tree, path, marker))
        quoted = json.dumps(marker).encode()
        raw = body.replace(quoted, deep_json) if quoted in body else body.replace(
            json.dumps(quoted.decode()).encode()[1:-1], json.dumps(deep_json.decode()).encode()[1:-1])
        for name in readers:
            only_bad_input(name, BYTE_PARSERS[name], raw, f"{seed} {path}=10^5 brackets")


# ------------------------------------------------------------------ hypothesis

hostile_text = st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=40) | st.sampled_from(
    ["", " ", "\x00", "\u202e", "NaN", "Infinity", "-1", "1e999", "max", "x" * 5000, "9" * 400])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**62, max_value=2**80)
    | st.floats() | hostile_text | st.decimals(allow_nan=False, allow_infinity=False).map(str),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(hostile_text, kids, max_size=5),
    max_leaves=25,
)
FUZZ = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(body: bytes) -> None:
    for name, parse in BYTE_PARSERS.items():
        only_bad_input(name, parse, body)


@FUZZ
@given(json_values)
def test_fuzz_arbitrary_json(value: Any) -> None:
    body = json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")
    for name, parse in BYTE_PARSERS.items():
        only_bad_input(name, parse, body)
    for name, parse_value in VALUE_PARSERS.items():
        only_bad_input(name, parse_value, value)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_real_payloads(data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(sorted(SEEDS)))
    tree, readers = SEEDS[seed]
    for _ in range(data.draw(st.integers(1, 4))):
        every = list(paths(tree))
        if every:
            tree = replaced(tree, data.draw(st.sampled_from(every)), data.draw(json_values))
    body = encode(tree)
    for name in readers:
        only_bad_input(name, BYTE_PARSERS[name], body, seed)


@FUZZ
@given(st.sampled_from(sorted(VALUE_PARSERS)), st.data())
def test_fuzz_value_parsers_on_mutated_parts(name: str, data: st.DataObject) -> None:
    """The object-level parsers on a real part of a payload with some paths replaced."""
    parts = {
        "evotor.parse_loyalty": evotor_payloads.calc()["loyalty"],
        "evotor.parse_position": evotor_payloads.positions()[0],
        "evotor.parse_snapshot": evotor_payloads.close()["receipt"],
        "modulkassa.parse_loyalty": mk_operation(card="2000012345")["loyalty"],
        "modulkassa.parse_check": _plain(_wrap(mk_closed())["extras"]["check"]),
        "poster.parse_products": poster_payloads.order()["products"],
        "poster.parse_order": poster_payloads.order(),
        "poster.parse_loyalty": {"card": "2000012345", "redeem": 10},
    }
    tree = _wrap(parts[name])
    for _ in range(data.draw(st.integers(0, 3))):
        every = list(paths(tree))
        if every:
            tree = replaced(tree, data.draw(st.sampled_from(every)), data.draw(json_values))
    only_bad_input(name, VALUE_PARSERS[name], _plain(tree))
