"""drivers.sbis.wire: answers, wrappers, errors and listings as tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from drivers.sbis import wire

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("Fri, 14 Mar 2025 12:01:00 GMT", 60.0),
        ("Fri, 14 Mar 2025 11:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(header: str | None, seconds: float | None) -> None:
    assert wire.retry_after(header, NOW) == seconds


@pytest.mark.parametrize(
    ("status", "ctype", "body", "kind", "retry"),
    [
        (401, "application/json", b'{"error":"expired"}', "auth", True),
        (403, "application/json", b"{}", "rights", False),
        (429, "application/json", b"{}", "rate", True),
        (502, "text/html", b"<html>bad gateway</html>", "html", True),
        (500, "application/json", b'{"error":"x"}', "server", True),
        (404, "application/json", b"{}", "client", False),
        (200, "text/html; charset=utf-8", b"<!DOCTYPE html><html>maintenance</html>", "html", True),
        (200, "application/json", b"  <html>", "html", True),
    ],
)
def test_check_status_refuses_with_a_kind(
    status: int, ctype: str, body: bytes, kind: str, retry: bool
) -> None:
    with pytest.raises(wire.VendorError) as info:
        wire.check_status(status, ctype, body, None, NOW)
    assert (info.value.kind, info.value.retry, info.value.status) == (kind, retry, status)


def test_429_carries_retry_after_and_a_good_page_passes() -> None:
    with pytest.raises(wire.VendorError) as info:
        wire.check_status(429, "application/json", b"", "30", NOW)
    assert info.value.retry_after == 30.0
    wire.check_status(200, "application/json", b"[]", None, NOW)


def test_load_decodes_the_result_wrapper_and_reads_fractions_as_decimal() -> None:
    inner = json.dumps([{"receipt": {"items": [{"quantity": 0.35}]}}])
    data = wire.load(json.dumps({"Result": inner}).encode())
    assert data[0]["receipt"]["items"][0]["quantity"] == Decimal("0.35")
    assert wire.load(b'{"Result": "x", "other": 1}') == {"Result": "x", "other": 1}  # not the wrapper
    for bad in (b"", b"{", b"\xff\xfe", b'{"Result": "{"}'):
        with pytest.raises(wire.VendorError) as info:
            wire.load(bad)
        assert info.value.kind == "malformed"


def test_token_answer_both_names_and_refusals() -> None:
    assert wire.token_answer({"token": "t", "sid": "s"}) == ("t", "s")
    assert wire.token_answer({"access_token": "t"}) == ("t", "")
    for bad in ({}, {"token": ""}, {"token": 5}, []):
        with pytest.raises(wire.VendorError):
            wire.token_answer(bad)


def test_json_rpc_login_result_and_error() -> None:
    body = json.loads(wire.login_request("shop", "pw"))
    assert body["method"] == "СБИС.Аутентифицировать"
    assert body["params"] == {"Параметр": {"Логин": "shop", "Пароль": "pw"}}
    assert wire.session_answer({"jsonrpc": "2.0", "result": "sid-1", "id": 0}) == "sid-1"
    with pytest.raises(wire.VendorError) as info:
        wire.session_answer({"jsonrpc": "2.0", "error": {"code": -1, "message": "Неверный пароль"}, "id": 0})
    assert "Неверный пароль" in str(info.value) and not info.value.retry
    with pytest.raises(wire.VendorError):
        wire.session_answer({"jsonrpc": "2.0", "id": 0})


def test_registers_and_storages_are_read_defensively() -> None:
    regs = wire.registers([{"regId": "0006", "fsNumber": "7380", "address": "Москва"}, {"fsNumber": "x"}, 5])
    assert regs == [wire.Register("0006", "7380", "Москва")]
    assert wire.registers({"items": [{"regId": 6}]}) == [wire.Register("6", "", "")]
    with pytest.raises(wire.VendorError):
        wire.registers({"nothing": 1})
    stores = wire.storages(
        [
            {"fsNumber": "A", "effectiveFrom": "2025-03-01T10:00:00"},
            {"fsNumber": "B", "effectiveFrom": 100, "effectiveTo": "2025-03-02 00:00:00"},
            {"status": 2},
        ]
    )
    assert [s.fn for s in stores] == ["A", "B"]
    assert stores[0].effective_to is None and stores[1].effective_from == 100.0
    assert stores[0].effective_from == datetime(2025, 3, 1, 10, tzinfo=UTC).timestamp()


def test_documents_keep_kind_number_and_time_or_mark_the_row_unreadable() -> None:
    rows = wire.documents(
        [
            {"receipt": {"fiscalDocumentNumber": 5127, "fiscalDriveNumber": "FN0", "dateTime": 1741978931}},
            {"closeShift": {"fiscalDocumentNumber": 5128}},
            {"receipt": {"fiscalDocumentNumber": 7, "fiscalDriveNumber": "OTHER"}},
            {"receipt": {"fiscalDocumentNumber": "12"}},
            {"a": {}, "b": {}},
            "junk",
        ],
        "FN0",
    )
    assert [(r.kind, r.fn, r.fd, r.at) for r in rows] == [
        ("receipt", "FN0", 5127, 1741978931.0),
        ("closeShift", "FN0", 5128, None),
        ("receipt", "FN0", None, None),  # another drive's document: no number, refused
        ("receipt", "FN0", None, None),
        ("?", "FN0", None, None),
        ("?", "FN0", None, None),
    ]


@pytest.mark.parametrize(
    ("value", "raw"),
    [
        (1741978931, 1741978931.0),
        ("2025-03-14T10:00:00", 1741946400.0),
        ("2025-03-14 10:00:00", 1741946400.0),
        ("2025-03-14T10:00:00+03:00", 1741946400.0),
        ("yesterday", None),
        (True, None),
        (None, None),
        ("", None),
    ],
)
def test_parse_time_keeps_the_wall_clock(value: object, raw: float | None) -> None:
    assert wire.parse_time(value) == raw


def test_docs_query_and_paths() -> None:
    assert wire.docs_query(1741946400.0, 1741946400.9, 500) == {
        "dateFrom": "2025-03-14T10:00:00",
        "dateTo": "2025-03-14T10:00:00",
        "limit": "500",
    }
    assert wire.docs_path("77", "R", "F") == "/ofd/v1/orgs/77/kkts/R/storages/F/docs"
    assert wire.storages_path("77", "R") == "/ofd/v1/orgs/77/kkts/R/storages"
    assert wire.kkts_path("77") == "/ofd/v1/orgs/77/kkts"
